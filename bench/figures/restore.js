// Restores on the pgbench cluster: a full restore of the same backup by each tool, a --delta restore
// over that directory after ~1% of the data changed (and a new backup), and time-to-usable-data for a
// point-in-time restore: restore + start + recovery to the target + promotion, until a query succeeds.
// RESTORE_BACKUPS adds that many small incremental backups by each tool first, so that every restore
// finds a repository with many backups (each backup it does not restore is one it may still read).
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, freePort, waitFor } from '../lib/cluster.js';
import { changePgbench, runWorkload } from '../lib/data.js';
import { killProcessesUnder, measure, processesUnder } from '../lib/proc.js';
import { dropCaches, log, medianOf, rotated } from '../lib/util.js';
import { reasonOf, useCluster } from '../lib/world.js';
import { TOOLS, ensureBackups, measureBackup, scratchDir } from './backups.js';

function restoreArgv(world, tool, pgdata, { set, delta = false, targetTime } = {}) {
  if (tool === 'pgforever') {
    const extra = [];
    if (set) extra.push('--set', set);
    if (delta) extra.push('--delta');
    if (targetTime) extra.push('--target-time', targetTime, '--target-action', 'promote');
    return world.pgforever.restoreArgv(pgdata, ...extra);
  }
  const extra = [];
  if (set) extra.push(`--set=${set}`);
  if (delta) extra.push('--delta');
  if (targetTime) extra.push('--type=time', `--target=${targetTime}`, '--target-action=promote');
  return world.pgbackrest.restoreArgv(tool, pgdata, extra);
}

/**
 * A pgforever restore ends by starting, in the background, the archive daemon recovery will use
 * and having it fetch the first segment (`pgforever-archive prefetch` waits for that). With no
 * recovery to serve, it would only load the machine during the next tool's restore: it is let
 * finish its start and then stopped, between measurements.
 */
async function stopRecoveryPrefetch(pgdata) {
  const prefetch = (p) => p.cmdline.includes('pgforever-archive prefetch');
  // Background work, not the restore: one that hangs is logged and stopped, the measurement kept.
  await waitFor(() => !processesUnder(pgdata).some(prefetch), { deadlineMs: 60_000, intervalMs: 20, what: 'the recovery prefetch to end' }).catch((error) =>
    log(`${error.message}; stopping it`),
  );
  await killProcessesUnder(pgdata, { select: (p) => prefetch(p) || p.cmdline.includes(' archive-daemon ') });
}

async function measureRestore(world, tool, pgdata, options) {
  if (tool === 'pgforever' && world.pgforeverReason) return { reason: world.pgforeverReason };
  if (!options.delta) rmSync(pgdata, { recursive: true, force: true });
  dropCaches(world.cfg.dropCaches);
  const [file, ...args] = restoreArgv(world, tool, pgdata, options);
  try {
    const m = await measure(file, args, { scratch: scratchDir(world), env: tool === 'pgforever' ? world.pgforever.env : world.cluster.env });
    if (tool === 'pgforever' && options.targetTime === undefined) await stopRecoveryPrefetch(pgdata);
    delete m.stdout;
    delete m.stderr;
    log(`${options.delta ? 'delta ' : ''}restore ${tool}: ${m.wallS.toFixed(2)} s`);
    return m;
  } catch (error) {
    if (tool !== 'pgforever') throw error;
    log(`pgforever restore: ${error.message}`);
    return { reason: reasonOf(error) };
  }
}

/**
 * Starts a restored directory on a free port (archiving off), waits until it is promoted and answers,
 * then checks that recovery stopped at `target`: the newest pgbench_history row (stamped with its
 * transaction's start) is not after it, and within 2 s before it (the workload commits hundreds of
 * times a second), so a stop at the end of the backup or of the WAL is caught.
 */
async function startAndQuery(world, pgdata, target) {
  // Where recovery starts: the tools back up one after the other, so the first one's newest backup
  // leaves it the most WAL to replay.
  const redoFrom = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(readFileSync(join(pgdata, 'backup_label'), 'utf8'))?.[1];
  if (redoFrom === undefined) throw new Error(`no START WAL LOCATION in ${join(pgdata, 'backup_label')}`);
  const restored = new Cluster(join(pgdata, '..'), { pgdata, port: await freePort() });
  restored.socketDir = join(world.dir, 'sock-restored');
  restored.logFile = join(world.dir, 'restored.log');
  const t0 = process.hrtime.bigint();
  await restored.start({ options: { archive_mode: 'off' }, wait: false });
  try {
    await waitFor(
      async () => {
        const client = await restored.connect();
        try {
          const [{ recovery }] = (await client.query('SELECT pg_is_in_recovery() AS recovery')).rows;
          if (recovery) return false;
          await client.query('SELECT sum(bbalance) FROM pgbench_branches');
          return true;
        } finally {
          await client.end();
        }
      },
      { deadlineMs: 30 * 60_000, intervalMs: 20, what: 'the restored server to answer' },
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const [{ before }] = await restored.query('SELECT extract(epoch FROM $1::timestamptz - max(mtime)::timestamptz)::float8 AS before FROM pgbench_history', [target]);
    if (!(before >= 0 && before < 2)) throw new Error(`recovery did not stop at the target ${target}: the newest history row is ${before} s before it`);
    // The end-of-recovery checkpoint a promotion writes lies a few hundred bytes past the target.
    const [{ replayed }] = await restored.query('SELECT (pg_current_wal_lsn() - $1::pg_lsn)::float8 AS replayed', [redoFrom]);
    return { seconds, replayedBytes: replayed };
  } finally {
    await restored.stop('immediate');
  }
}

export async function restores(ctx) {
  const world = await useCluster('pgbench', ctx);
  await ensureBackups(world);
  const target = (tool) => join(world.dir, `restore-${tool}`);
  if (ctx.cfg.restoreBackups > 0) {
    log(`restore: ${ctx.cfg.restoreBackups} more small backups by each tool`);
    await world.archiveTo('pgbackrest');
    for (let i = 0; i < ctx.cfg.restoreBackups; i++) {
      await world.cluster.query('INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, 0, now() FROM generate_series(1, 1000) g');
      for (const tool of TOOLS) await measureBackup(world, tool, 'incr');
    }
  }
  const from = Object.fromEntries(TOOLS.map((t) => [t, world.backups[t].at(-1)]));

  // ~1% of the data changed and a new backup by each tool: what --delta brings a directory to.
  log('restore: 1% change and a new backup by each tool');
  await world.archiveTo('pgbackrest');
  await changePgbench(world.cluster, ctx.cfg.scale, 0.37);
  const deltaBackup = {};
  for (const tool of TOOLS) deltaBackup[tool] = await measureBackup(world, tool, 'incr');

  const full = Object.fromEntries(TOOLS.map((t) => [t, []]));
  const delta = Object.fromEntries(TOOLS.map((t) => [t, []]));
  const reasons = {};
  for (let round = 1; round <= ctx.cfg.repeat; round++) {
    for (const tool of rotated(TOOLS, round - 1)) {
      const m = await measureRestore(world, tool, target(tool), { set: from[tool] });
      if (m.reason) {
        reasons[tool] = m.reason;
        continue;
      }
      full[tool].push(m);
      if (deltaBackup[tool].reason) continue;
      const d = await measureRestore(world, tool, target(tool), { set: deltaBackup[tool].id, delta: true });
      if (d.reason) reasons[`delta-${tool}`] = d.reason;
      else delta[tool].push(d);
    }
  }

  // PITR: a target inside WAL written after the newest backup.
  log('restore: PITR workload');
  await world.archiveTo('pgbackrest');
  await runWorkload(world.cluster, 'hot', ctx.cfg.pitrSeconds, world.scripts);
  const [{ t }] = await world.cluster.query("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t");
  await runWorkload(world.cluster, 'hot', 5, world.scripts);
  await world.cluster.waitArchiveIdle();
  const pitr = Object.fromEntries(TOOLS.map((tl) => [tl, []]));
  for (let round = 1; round <= ctx.cfg.repeat; round++) {
    for (const tool of rotated(TOOLS, round - 1)) {
      if (reasons[`pitr-${tool}`]) continue;
      const pgdata = target(tool);
      const r = await measureRestore(world, tool, pgdata, { targetTime: t });
      if (r.reason) {
        reasons[`pitr-${tool}`] = r.reason;
        continue;
      }
      try {
        const { seconds: startS, replayedBytes } = await startAndQuery(world, pgdata, t);
        pitr[tool].push({ restoreS: r.wallS, startS, wallS: r.wallS + startS, replayedBytes });
        log(`PITR ${tool}: restore ${r.wallS.toFixed(2)} s + recovery ${startS.toFixed(2)} s (${(replayedBytes / 1048576).toFixed(1)} MiB of WAL from the backup's start)`);
      } catch (error) {
        if (tool !== 'pgforever') throw error;
        reasons[`pitr-${tool}`] = reasonOf(error);
      }
    }
  }
  for (const tool of TOOLS) rmSync(target(tool), { recursive: true, force: true });

  const pick = (samples, reason) => (samples.length > 0 ? medianOf(samples) : { reason: reason ?? 'not measured' });
  const result = { rounds: ctx.cfg.repeat, databaseBytes: world.databaseBytes, pitrSeconds: ctx.cfg.pitrSeconds, deltaBackup, backups: Object.fromEntries(TOOLS.map((t) => [t, world.backups[t].length])) };
  for (const tool of TOOLS) {
    result[tool] = {
      full: pick(full[tool], reasons[tool]),
      delta: pick(delta[tool], reasons[`delta-${tool}`] ?? deltaBackup[tool].reason ?? reasons[tool]),
      pitr: pick(pitr[tool], reasons[`pitr-${tool}`]),
    };
  }
  return result;
}
