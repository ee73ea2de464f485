// `npm run bench`: pgforever next to pgBackRest on the same clusters, in the same run; writes the
// "pgforever vs pgBackRest" section of bench/RESULTS.md. Run as root after `bash bench/setup.sh` and
// `npm run build` (servers and tools then run as the pgforever-test user). Settings (environment):
//   SCALE=50            pgbench scale; the realistic dataset is sized to match (about 13 MB per unit)
//   BENCH=all           or a comma list of: limits,full,incr,restore,month,archive
//   REPEAT=3            rounds of the noisy figures (full backup, restore, archive drain); medians
//   WORKLOAD_SECONDS=60 length of each workload before an incremental
//   PITR_SECONDS=10     workload written after the newest backup, recovered by the PITR restore
//   RESTORE_BACKUPS=0   more small incremental backups each tool takes before the restores (a repository with many)
//   DRAIN_SEGMENTS=100  archive drain backlog;  DRAIN_WAL=realistic (or pgbench): what the WAL holds
//   DRAIN_COMMANDS=...  a comma list of the archive commands drained (default all: true,zstd,pgbackrest-sync,pgbackrest-async,pgforever)
//   MONTH_DAYS=30       simulated days;  PROCESS_MAX=2 processes for both tools
//   DROP_CACHES=1       drop the page cache before each measured backup/restore (root only)
//   KEEP=0              1 keeps the work directory;  RESULTS=bench/RESULTS.md  where to write
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stopAllClusters } from './lib/cluster.js';
import { InterferenceMonitor, machineInfo, versions } from './lib/machine.js';
import { pgbackrestVersion } from './lib/pgbackrest.js';
import { CHECKOUT, availableCommands } from './lib/pgforever.js';
import { chownToServer, killChildren, killProcessesUnder, serverUser } from './lib/proc.js';
import {
  renderArchive,
  renderFull,
  renderIncr,
  renderLimits,
  renderMachine,
  renderMonth,
  renderRestore,
  writeResults,
} from './lib/report.js';
import { cachesDropped, log } from './lib/util.js';
import { fullBackups, incrementals } from './figures/backups.js';
import { DRAIN_COMMANDS, archiveDrain } from './figures/archive.js';
import { limitsOn, processStartCosts } from './figures/limits.js';
import { month } from './figures/month.js';
import { restores } from './figures/restore.js';

const FIGURES = ['limits', 'full', 'incr', 'restore', 'month', 'archive'];

function settings() {
  const env = process.env;
  const int = (name, fallback) => {
    const value = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${env[name]}`);
    return value;
  };
  const bench = (env.BENCH ?? 'all').split(',').map((s) => s.trim()).filter(Boolean);
  const figures = bench.includes('all') ? FIGURES : bench;
  for (const f of figures) if (!FIGURES.includes(f)) throw new Error(`BENCH: unknown figure ${f} (known: all, ${FIGURES.join(', ')})`);
  const drainWal = env.DRAIN_WAL ?? 'realistic';
  if (!['realistic', 'pgbench'].includes(drainWal)) throw new Error('DRAIN_WAL must be realistic or pgbench');
  const drainCommands = (env.DRAIN_COMMANDS ?? DRAIN_COMMANDS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const c of drainCommands) if (!DRAIN_COMMANDS.includes(c)) throw new Error(`DRAIN_COMMANDS: unknown command ${c} (known: ${DRAIN_COMMANDS.join(', ')})`);
  return {
    scale: Math.max(1, int('SCALE', 50)),
    figures,
    repeat: Math.max(1, int('REPEAT', 3)),
    workloadSeconds: Math.max(1, int('WORKLOAD_SECONDS', 60)),
    pitrSeconds: Math.max(1, int('PITR_SECONDS', 10)),
    restoreBackups: int('RESTORE_BACKUPS', 0),
    drainSegments: Math.max(1, int('DRAIN_SEGMENTS', 100)),
    drainWal,
    drainCommands,
    monthDays: Math.max(2, int('MONTH_DAYS', 30)),
    processMax: Math.max(1, int('PROCESS_MAX', 2)),
    dropCaches: int('DROP_CACHES', 1) === 1,
    keep: int('KEEP', 0) === 1,
    results: resolve(CHECKOUT, env.RESULTS ?? 'bench/RESULTS.md'),
  };
}

/** The command line that reproduces this run. */
function commandLine(cfg) {
  const env = [`SCALE=${cfg.scale}`, `BENCH=${cfg.figures.length === FIGURES.length ? 'all' : cfg.figures.join(',')}`, `REPEAT=${cfg.repeat}`];
  if (cfg.workloadSeconds !== 60) env.push(`WORKLOAD_SECONDS=${cfg.workloadSeconds}`);
  if (cfg.pitrSeconds !== 10) env.push(`PITR_SECONDS=${cfg.pitrSeconds}`);
  if (cfg.restoreBackups !== 0) env.push(`RESTORE_BACKUPS=${cfg.restoreBackups}`);
  if (cfg.drainSegments !== 100) env.push(`DRAIN_SEGMENTS=${cfg.drainSegments}`);
  if (cfg.drainWal !== 'realistic') env.push(`DRAIN_WAL=${cfg.drainWal}`);
  if (cfg.drainCommands.length !== DRAIN_COMMANDS.length) env.push(`DRAIN_COMMANDS=${cfg.drainCommands.join(',')}`);
  if (cfg.monthDays !== 30) env.push(`MONTH_DAYS=${cfg.monthDays}`);
  if (cfg.processMax !== 2) env.push(`PROCESS_MAX=${cfg.processMax}`);
  if (!cfg.dropCaches) env.push('DROP_CACHES=0');
  return `bash bench/setup.sh && npm run build && ${env.join(' ')} npm run bench`;
}

async function main(ctx) {
  const { cfg } = ctx;
  const want = (f) => cfg.figures.includes(f);
  const results = {};
  const sections = {};
  const failures = [];
  // A figure that fails is reported as such; the others still run.
  const step = async (name, fn) => {
    const t0 = Date.now();
    try {
      const result = await fn();
      log(`${name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      return result;
    } catch (error) {
      log(`${name} failed: ${error.stack ?? error}`);
      failures.push(`${name}: ${String(error.message ?? error).split('\n')[0]}`);
      return undefined;
    }
  };

  const { names, reason } = await availableCommands();
  log(`pgforever commands: ${reason ?? [...names].join(', ')}`);

  const pgbenchPhase = ['limits', 'full', 'incr', 'restore'].some(want) || (want('archive') && cfg.drainWal === 'pgbench');
  const realisticPhase = ['limits', 'full', 'incr', 'month'].some(want) || (want('archive') && cfg.drainWal === 'realistic');
  const limits = { datasets: {} };
  if (pgbenchPhase) {
    if (want('limits')) limits.datasets.pgbench = await step('limits (pgbench)', () => limitsOn(ctx, 'pgbench'));
    if (want('full')) (results.full ??= {}).pgbench = await step('full (pgbench)', () => fullBackups(ctx, 'pgbench'));
    if (want('incr')) (results.incr ??= {}).pgbench = await step('incr (pgbench)', () => incrementals(ctx, 'pgbench', ['hot', 'pgbench']));
    if (want('restore')) results.restore = await step('restore', () => restores(ctx));
    if (want('archive') && cfg.drainWal === 'pgbench') results.archive = await step('archive drain', () => archiveDrain(ctx));
  }
  if (realisticPhase) {
    if (want('limits')) limits.datasets.realistic = await step('limits (realistic)', () => limitsOn(ctx, 'realistic'));
    if (want('full')) (results.full ??= {}).realistic = await step('full (realistic)', () => fullBackups(ctx, 'realistic'));
    if (want('incr')) (results.incr ??= {}).realistic = await step('incr (realistic)', () => incrementals(ctx, 'realistic', ['timeseries']));
    if (want('month')) results.month = await step('month', () => month(ctx));
    if (want('archive') && cfg.drainWal === 'realistic') results.archive = await step('archive drain', () => archiveDrain(ctx));
  }
  if (want('limits')) {
    limits.startMs = await step('process start costs', () => processStartCosts());
    limits.datasets = clean(limits.datasets) ?? {};
    results.limits = limits;
  }
  // The incremental each tool took before the --delta restore is an incremental figure too (only
  // when the incremental figure is measured: its subsection is replaced as a whole).
  if (want('incr') && results.restore?.deltaBackup) ((results.incr ??= {}).pgbench ??= {})['delta-change'] = results.restore.deltaBackup;
  await stopAllClusters();

  const meta = {
    cfg,
    date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
    command: commandLine(cfg),
    versions: versions(await pgbackrestVersion()),
    machine: machineInfo(),
    runSeconds: (Date.now() - ctx.started) / 1000,
    loadNote: ctx.monitor.summary(),
    cachesDropped: cachesDropped(),
  };
  const render = (key, fn, ...args) => {
    try {
      if (args[0]) sections[key] = fn(...args);
    } catch (error) {
      failures.push(`rendering ${key}: ${error.message}`);
    }
  };
  sections.machine = renderMachine(meta);
  if (results.limits?.startMs) render('limits', renderLimits, results.limits, meta, results.archive);
  render('full', renderFull, clean(results.full), meta);
  render('incr', renderIncr, clean(results.incr), meta);
  render('archive', renderArchive, results.archive, meta);
  render('restore', renderRestore, results.restore, meta);
  render('month', renderMonth, results.month, meta);
  const preamble = [
    'pgforever and pgBackRest measured side by side on the same clusters in the same run by `npm run bench` (bench/run.js; settings',
    'at the top of that file). Clusters are built by the run: PostgreSQL 15 with data checksums, `pgbench -i` at SCALE, and a',
    '"realistic" dataset of about the same size (documents: Zipf-distributed words and JSON attributes with ids, hashes, numbers and',
    'timestamps; a time series with JSON labels; generated from a seeded PRNG; zstd compresses it about 3x, pgbench\'s tables about 20x).',
    'pgBackRest runs at its best settings: `compress-type=zst` (level 3, as pgforever), `process-max` equal to pgforever\'s, `start-fast`,',
    'file-level incremental in one repository and block incremental (`repo-bundle=y`, `repo-block=y`, `beta=y` on 2.45) in another.',
    'pgforever runs as `node bin/pgforever.js <command> --repo DIR` with PGHOST/PGPORT/PGUSER, and archives with exactly what',
    '`pgforever archive-command` prints. Every tool runs without `NODE_EXTRA_CA_CERTS`: this sandbox sets it for its own HTTPS proxy,',
    'and Node then parses the whole CA bundle at each start (`node -e 0` took 0.14 s with it, 0.07 s without, warm). A figure',
    'pgforever cannot give yet says why instead of a number. Each subsection below',
    'says when and how it was measured, and the command that reproduces it (run as root in the checkout; servers and tools then run as',
    'the pgforever-test user that bench/setup.sh creates); a run of a few figures replaces only those.',
  ].join('\n');
  writeResults(cfg.results, preamble, sections);
  log(`wrote ${cfg.results} in ${(meta.runSeconds / 60).toFixed(1)} min`);
  if (failures.length > 0) {
    log(`figures that failed:\n  ${failures.join('\n  ')}`);
    process.exitCode = 1;
  }
}

/** Drops datasets whose figure failed (undefined), or the whole figure when none is left. */
function clean(byDataset) {
  if (!byDataset) return undefined;
  const kept = Object.fromEntries(Object.entries(byDataset).filter(([, v]) => v));
  return Object.keys(kept).length > 0 ? kept : undefined;
}

async function cleanup(ctx) {
  await stopAllClusters();
  killChildren();
  const left = await killProcessesUnder(ctx.work);
  if (left.length > 0) log(`killed ${left.length} leftover processes: ${left.map((p) => p.pid).join(' ')}`);
  if (!ctx.cfg.keep) rmSync(ctx.work, { recursive: true, force: true });
  else log(`work directory kept: ${ctx.work}`);
}

// This sandbox sets NODE_EXTRA_CA_CERTS for its own HTTPS proxy, and Node parses the whole bundle at
// every start: a cost of this machine, not of a database host, that pgBackRest does not pay.
delete process.env.NODE_EXTRA_CA_CERTS;
const cfg = settings();
serverUser();
const work = mkdtempSync(join(tmpdir(), 'pgforever-bench-'));
chmodSync(work, 0o755);
chownToServer(work);
const ctx = { cfg, work, started: Date.now(), monitor: new InterferenceMonitor(work) };
log(`work directory ${work}; figures: ${cfg.figures.join(', ')}; SCALE=${cfg.scale} REPEAT=${cfg.repeat}`);
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping what the run started`);
    cleanup(ctx).finally(() => process.exit(130));
  });
}
try {
  await main(ctx);
} catch (error) {
  log(`failed: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  if (!interrupted) await cleanup(ctx);
}
