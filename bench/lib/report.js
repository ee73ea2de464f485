// Markdown for bench/RESULTS.md. The run owns one top-level section ("pgforever vs pgBackRest"); within
// it each figure has its own subsection, replaced when that figure is measured again and kept
// otherwise, so a run of a few figures does not erase the others. Every other section of the file
// (other benchmarks) is left as it is.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { TOOLS, TOOL_LABEL } from '../figures/backups.js';
import { DRAIN_COMMANDS, DRAIN_LABEL } from '../figures/archive.js';
import { MONTH_LABEL, MONTH_STRATEGIES, RETAIN_BACKUPS } from '../figures/month.js';

export const SECTION = '## pgforever vs pgBackRest (issue 8)';
export const SUBSECTIONS = {
  machine: '### Machine and versions',
  limits: '### Physical limits',
  full: '### Full backup',
  incr: '### Incremental backup after each workload',
  archive: '### Archive drain',
  restore: '### Restore',
  month: '### Storage after a simulated month',
};

const sec = (x) => (x === undefined || Number.isNaN(x) ? '' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const mb = (bytes) => (bytes === undefined || Number.isNaN(bytes) ? '' : bytes / 1e6 >= 100 ? (bytes / 1e6).toFixed(0) : (bytes / 1e6).toFixed(1));
const mib = (kib) => (kib === undefined ? '' : (kib / 1024).toFixed(0));
const ratio = (a, b) => (a === undefined || b === undefined || !b ? '' : (a / b).toFixed(2));
const memory = (m) => `${mib(m.peakTreeRssKiB)} (${mib(m.maxRssKiB)})`;

/** A row whose figures are missing: the reason in the first figure column, the rest empty. */
function reasonRow(cells, reason, width) {
  return `| ${[...cells, reason, ...Array(width - cells.length - 1).fill('')].join(' | ')} |`;
}

const cache = (meta) => (meta.cachesDropped ? 'with the page cache dropped' : 'with the page cache NOT dropped (DROP_CACHES=0 or not root: data read from memory)');

const medians = (rounds, what) => (rounds > 1 ? `medians of ${rounds} rounds; ${what} range in parentheses` : 'single runs');

function stamp(meta, what) {
  const v = meta.versions;
  return `Measured ${meta.date} at SCALE=${meta.cfg.scale}, REPEAT=${meta.cfg.repeat} (${what}); pgforever ${v.pgforever}, pgBackRest ${v.pgbackrest}, PostgreSQL ${v.postgresql}, machine as in "Machine and versions". Command: \`${meta.command}\``;
}

export function renderMachine(meta) {
  const v = meta.versions;
  const m = meta.machine;
  return [
    SUBSECTIONS.machine,
    '',
    '| | |',
    '|---|---|',
    `| CPU | ${m.cpus} × ${m.cpuModel} |`,
    `| memory | ${m.memoryGiB} GiB |`,
    `| disk | ${m.disk} |`,
    `| OS | ${m.os} |`,
    `| PostgreSQL | ${v.postgresql} (Debian binaries, data checksums on) |`,
    `| pgBackRest | ${v.pgbackrest} (Debian package) |`,
    `| pgforever | ${v.pgforever} |`,
    `| Node.js | ${v.node} |`,
    `| zstd | ${v.zstd} |`,
    '',
    `Last run: ${meta.date}, ${meta.command}, took ${(meta.runSeconds / 60).toFixed(1)} min. Load on the machine from other processes during the run: ${meta.loadNote}.`,
  ].join('\n');
}

export function renderLimits(r, meta, drain) {
  const names = Object.keys(r.datasets);
  const head = `| measurement | ${names.map((n) => `${n} data`).join(' | ')} |`;
  const line = `|---|${names.map(() => '---|').join('')}`;
  const row = (label, f) => `| ${label} | ${names.map((n) => f(r.datasets[n])).join(' | ')} |`;
  const gbs = (x) => `${(x.bytesPerSecond / 1e9).toFixed(2)} GB/s (${mb(x.bytes)} MB${x.dropped ? ', page cache dropped' : ', page cache NOT dropped'})`;
  const z = (level, field) => (d) => (d.zstd[level] ? `${d.zstd[level][field].toFixed(0)} MB/s (ratio ${d.zstd[level].ratio.toFixed(2)})` : '');
  const out = [
    SUBSECTIONS.limits,
    '',
    stamp(meta, 'single runs'),
    '',
    head,
    line,
    row('sequential read of the relation files, 1 stream', (d) => gbs(d.read1)),
    row('sequential read of the relation files, 2 streams', (d) => gbs(d.read2)),
    row('zstd level 1 compress, 1 core (`zstd -b1`)', z('1', 'compressMBs')),
    row('zstd level 3 compress, 1 core (`zstd -b3`)', z('3', 'compressMBs')),
    row('zstd level 1 decompress, 1 core', z('1', 'decompressMBs')),
    '',
    '| process start (median of 20, fork + exec + exit) | ms |',
    '|---|---|',
    `| \`/bin/true\` | ${r.startMs.true.toFixed(1)} |`,
    `| \`node -e 0\` (any Node.js archive_command pays this per call) | ${r.startMs.node.toFixed(1)} |`,
    `| \`pgbackrest version\` | ${r.startMs.pgbackrest.toFixed(1)} |`,
  ];
  if (drain?.true?.perSecond) {
    out.push('', `The archiver's own loop (archive_command \`/bin/true\`, see the archive drain): ${drain.true.perSecond.toFixed(0)} segments/s.`);
  }
  out.push('', `zstd sample: the first ${mb(Object.values(r.datasets)[0]?.sampleBytes)} MB of the largest relation files.`);
  if (Object.values(r.datasets).some((d) => !d.read1.dropped)) {
    out.push('The page cache was not dropped (DROP_CACHES=0, or not root): those reads came from memory, not from the disk.');
  }
  return out.join('\n');
}

function backupRows(label, row, meta) {
  const p = row.pgforever;
  const lines = [];
  for (const tool of TOOLS) {
    const m = row[tool];
    // The row label once per group of tools: the table reads as one group per data set or workload.
    const cells = [lines.length === 0 ? label : '', TOOL_LABEL[tool] + (tool === 'pgforever' && m?.detection ? ` (${m.detection})` : '')];
    if (!m || m.reason) {
      lines.push(reasonRow(cells, m?.reason ?? 'not measured', 12));
      continue;
    }
    const vs = tool === 'pgforever' || p.reason ? ['', '', '', ''] : [ratio(p.wallS, m.wallS), ratio(p.cpuS, m.cpuS), meta.cachesDropped ? ratio(p.readBytes, m.readBytes) : '', ratio(p.storedBytes, m.storedBytes)];
    const range = m.samples > 1 ? ` (${sec(m.wallMin)}–${sec(m.wallMax)})` : '';
    lines.push(`| ${cells.join(' | ')} | ${sec(m.wallS)}${range} | ${sec(m.cpuS)} | ${memory(m)} | ${mb(m.readBytes)} | ${mb(m.rcharBytes)} | ${mb(m.storedBytes)} | ${vs.join(' | ')} |`);
  }
  return lines;
}

const BACKUP_HEAD = [
  '| data | tool | wall s | CPU s | peak RSS MiB, all processes (largest) | read from disk MB | read() MB | stored MB | pgforever / this: wall | CPU | disk read | stored |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
];

export function renderFull(r, meta) {
  const out = [SUBSECTIONS.full, '', stamp(meta, `${medians(meta.cfg.repeat, 'wall')}; every round backs up into fresh repositories`), '', ...BACKUP_HEAD];
  for (const [name, row] of Object.entries(r)) out.push(...backupRows(`${name} (${mb(row.databaseBytes)} MB)`, row, meta));
  out.push(
    '',
    `Each backup starts after the archiver is idle, a CHECKPOINT and ${cache(meta)}; the tool measured pushes WAL first in the`,
    'shared archive_command. CPU time and the largest process\'s peak RSS come from GNU time (children included); "all processes" is the',
    'RSS summed over the process tree, sampled every 100 ms; read from disk is read_bytes and read() is rchar of /proc/<pid>/io for the',
    'whole tree; stored is the growth of the repository without its WAL. Ratios below 1 mean pgforever is faster / smaller (disk read',
    'ratios only when the page cache was dropped). The two pgBackRest rows are full backups into its two repositories, named by the',
    'incrementals that follow them there (the block one also bundles small files).',
  );
  return out.join('\n');
}

export function renderIncr(r, meta) {
  const out = [SUBSECTIONS.incr, '', stamp(meta, 'single runs'), '', ...BACKUP_HEAD];
  const describe = {
    hot: 'pgbench: ~1% hot set (updates to the first 1% of accounts + appends to history)',
    pgbench: 'pgbench: default TPC-B-like (random updates over every account)',
    timeseries: 'realistic: append-only time series (batches of 100 rows)',
    'delta-change': 'pgbench: 1% of the accounts updated in one key range (before the --delta restore)',
  };
  for (const [name, byWorkload] of Object.entries(r)) {
    for (const [workload, row] of Object.entries(byWorkload)) {
      const w = row.workload ? `, ${row.workload.seconds} s, 2 clients, ${row.workload.transactions} transactions` : '';
      out.push(...backupRows(`${describe[workload] ?? `${name}: ${workload}`}${w}`, row, meta));
    }
  }
  out.push(
    '',
    'Each incremental is taken after the workload stops, against the previous backup of the same tool; measured as the full backups.',
    "In parentheses, pgforever's change detection: `lsn` reads every relation file and hashes only extents with a page LSN at or after",
    "the parent's start; `hash` hashes every extent; `full` is a first backup.",
  );
  return out.join('\n');
}

export function renderArchive(r, meta) {
  const p = r.pgforever;
  const out = [
    SUBSECTIONS.archive,
    '',
    stamp(meta, medians(r.rounds, 'segments/s')),
    '',
    `WAL source: ${r.source === 'realistic' ? 'INSERTs copying rows of the realistic docs table' : 'INSERTs copying pgbench_accounts rows'}; 16 MiB segments; backlog of about ${r.segmentsWanted} segments.`,
    '',
    '| archive_command | backlog (segments) | seconds | segments/s | pgforever / this (segments/s) | CPU ms a segment, whole machine |',
    '|---|---|---|---|---|---|',
  ];
  for (const name of DRAIN_COMMANDS) {
    const m = r[name];
    if (!m || m.reason) {
      out.push(reasonRow([DRAIN_LABEL[name]], m?.reason ?? 'not measured', 6));
      continue;
    }
    const range = m.samples > 1 ? ` (${m.min.toFixed(1)}–${m.max.toFixed(1)})` : '';
    out.push(`| ${DRAIN_LABEL[name]} | ${m.backlog} | ${sec(m.seconds)} | ${m.perSecond.toFixed(1)}${range} | ${name === 'pgforever' || p.reason ? '' : ratio(p.perSecond, m.perSecond)} | ${m.cpuMsPerSegment.toFixed(1)} |`);
  }
  out.push(
    '',
    'The backlog piles up while archive_command is `/bin/false`; then ALTER SYSTEM sets the command, pg_reload_conf() wakes the archiver, and',
    'the time until pg_stat_archiver.archived_count has advanced by the backlog is taken from one connection polling every 10 ms. pgBackRest',
    'pushes to one repository (zstd, level 3 default); `zstd -1` and `/bin/true` are the scale: no fsync, no checks. The commands take',
    'turns going first, round by round. Ratios above 1 mean pgforever drains faster. CPU a segment: the busy CPU time of the whole machine',
    '(user, system and interrupts from /proc/stat, not idle, I/O wait or steal) from the reload until the backlog is archived, over the',
    'backlog: the command with its daemons, PostgreSQL\'s archiver and this polling (the last two alike for every command); median of the rounds.',
  );
  const later = r.pgforever?.summaries;
  if (later) {
    out.push(
      '',
      `pgforever's daemon stores the segments it pushes beside others without their WAL summary and summarises them once the backlog is gone: ${later.deferred}`,
      `of ${later.segments} segments here, all summarised ${sec(later.seconds)} s after the drain, ${later.cpuMsPerDeferred.toFixed(1)} ms of machine CPU each (medians; not in the figures above).`,
    );
  }
  return out.join('\n');
}

export function renderRestore(r, meta) {
  const head = [
    '| restore | tool | wall s | CPU s | peak RSS MiB, all processes (largest) | read from disk MB | pgforever / this: wall |',
    '|---|---|---|---|---|---|---|',
  ];
  const out = [SUBSECTIONS.restore, '', stamp(meta, medians(r.rounds, 'wall')), '', ...head];
  const kinds = {
    full: `full restore of the same backup into an empty directory (pgbench, ${mb(r.databaseBytes)} MB)`,
    delta: '`--delta` restore over that directory after 1% of the accounts changed and a new backup',
  };
  for (const kind of ['full', 'delta']) {
    const p = r.pgforever[kind];
    for (const tool of TOOLS) {
      const m = r[tool][kind];
      const label = tool === TOOLS[0] ? kinds[kind] : '';
      if (m.reason) {
        out.push(reasonRow([label, TOOL_LABEL[tool]], m.reason, 7));
        continue;
      }
      const range = m.samples > 1 ? ` (${sec(m.wallMin)}–${sec(m.wallMax)})` : '';
      out.push(`| ${label} | ${TOOL_LABEL[tool]} | ${sec(m.wallS)}${range} | ${sec(m.cpuS)} | ${memory(m)} | ${mb(m.readBytes)} | ${tool === 'pgforever' || p.reason ? '' : ratio(p.wallS, m.wallS)} |`);
    }
  }
  out.push(
    '',
    `Time to usable data, point-in-time restore: restore with a time target inside the WAL of ${r.pitrSeconds} s of the hot-set workload written after the`,
    'newest backup, start PostgreSQL (archiving off), recover to the target, promote, until `SELECT sum(bbalance) FROM pgbench_branches` answers.',
    'Each restored server is then checked to have stopped at the target (its newest pgbench_history row at most 2 s before it, none after).',
    '',
    '| tool | restore s | start + recovery + promotion s | WAL from the backup\'s start to the target, MiB | time to usable data s | pgforever / this |',
    '|---|---|---|---|---|---|',
  );
  const p = r.pgforever.pitr;
  for (const tool of TOOLS) {
    const m = r[tool].pitr;
    if (m.reason) {
      out.push(reasonRow([TOOL_LABEL[tool]], m.reason, 6));
      continue;
    }
    const replayed = m.replayedBytes === undefined ? '' : (m.replayedBytes / 1048576).toFixed(1);
    out.push(`| ${TOOL_LABEL[tool]} | ${sec(m.restoreS)} | ${sec(m.startS)} | ${replayed} | ${sec(m.wallS)} | ${tool === 'pgforever' || p.reason ? '' : ratio(p.wallS, m.wallS)} |`);
  }
  out.push(
    '',
    `Each restore starts ${cache(meta)}; the pgBackRest rows restore from the repository with that incremental type. The tools take`,
    'turns going first, round by round. Ratios below 1 mean pgforever is faster. Each tool recovers from its newest backup, and the tools',
    'took those backups one after the other, pgforever first: the WAL column (LSN distance, measured after promotion) shows how much more',
    'WAL that leaves it to replay. Each backup between them adds a checkpoint and a segment switch (the rest of that 16 MiB segment unused).',
  );
  if (r.backups !== undefined) {
    out.push('', `Backups in each repository when the PITR restores ran: ${TOOLS.map((tool) => `${TOOL_LABEL[tool]} ${r.backups[tool]}`).join(', ')}.`);
  }
  return out.join('\n');
}

export function renderMonth(r, meta) {
  const p = r.pgforever;
  const out = [
    SUBSECTIONS.month,
    '',
    stamp(meta, 'single run'),
    '',
    `Realistic data, ${mb(r.databaseBytesStart)} MB at the start, ${mb(r.databaseBytesEnd)} MB after ${r.days} days. Each day: 0.5% of the docs updated`,
    '(one contiguous id range), 0.5% new docs, 1% new events (percentages of the rows loaded at SCALE); then one backup per strategy.',
    '',
    '| strategy | backups (fulls) | stored MB, backups | WAL stored MB | stored / database | pgforever / this | backup wall s, whole month | CPU s |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const s of MONTH_STRATEGIES) {
    const m = r[s];
    if (m.reason) {
      out.push(reasonRow([MONTH_LABEL[s]], m.reason, 8));
      continue;
    }
    const backups = s.startsWith('pgforever') ? `${m.backups} (1)${m.kept === undefined ? '' : `, ${m.kept} kept`}` : `${m.backups} (${m.fulls})`;
    const vs = s.startsWith('pgforever') || p.reason ? '' : ratio(p.storedBytes, m.storedBytes);
    out.push(`| ${MONTH_LABEL[s]} | ${backups} | ${mb(m.storedBytes)} | ${mb(m.walBytes)} | ${ratio(m.storedBytes, r.databaseBytesEnd)} | ${vs} | ${sec(m.wallS)} | ${sec(m.cpuS)} |`);
  }
  out.push(
    '',
    'Every repository is written by the same archive_command (WAL of the whole month) and nothing is expired, except in the `expire` row:',
    `there, after each day's backup, \`pgforever expire\` keeps the newest ${RETAIN_BACKUPS} backups (a week of daily backups; the simulated days are`,
    'minutes apart, so `--retain-days` would keep them all) and the WAL they need, and deletes garbage at once; its wall and CPU include',
    'the expire runs. The ratio column compares pgforever keeping everything with each pgBackRest strategy, which keeps everything too.',
  );
  return out.join('\n');
}

/** Writes `subsections` ({ key: markdown }) into the run's section of `path`, keeping the rest. */
export function writeResults(path, preamble, subsections) {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n';
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === SECTION);
  let before = lines;
  let after = [];
  let old = [];
  if (start >= 0) {
    const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
    before = lines.slice(0, start);
    old = lines.slice(start + 1, end < 0 ? lines.length : end);
    after = end < 0 ? [] : lines.slice(end);
  }
  const kept = {};
  let current = null;
  for (const line of old) {
    const key = Object.keys(SUBSECTIONS).find((k) => SUBSECTIONS[k] === line.trim());
    if (key) current = key;
    if (current) kept[current] = (kept[current] ? kept[current] + '\n' : '') + line;
  }
  const merged = { ...kept, ...subsections };
  const body = Object.keys(SUBSECTIONS)
    .filter((k) => merged[k])
    .map((k) => merged[k].trimEnd());
  while (before.length > 0 && before.at(-1).trim() === '') before.pop();
  const section = [SECTION, '', preamble, '', body.join('\n\n'), ''];
  writeFileSync(path, [...before, '', ...section, ...(after.length ? [...after] : [])].join('\n').replace(/\n{3,}/g, '\n\n'));
}
