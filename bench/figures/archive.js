// Archive drain: PostgreSQL's own archiver drives each archive_command. WAL piles up while the
// archive_command fails ('/bin/false'); then it is switched (ALTER SYSTEM + pg_reload_conf) to the
// command measured, and the time until pg_stat_archiver.archived_count has advanced by the backlog is
// taken on the server's connection, polled every 10 ms.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { quoteLiteral } from '../lib/cluster.js';
import { PgBackRest } from '../lib/pgbackrest.js';
import { Pgforever } from '../lib/pgforever.js';
import { busyCpuSeconds } from '../lib/machine.js';
import { chownToServer, killProcessesUnder } from '../lib/proc.js';
import { median, log, rotated } from '../lib/util.js';
import { reasonOf, useCluster } from '../lib/world.js';

export const DRAIN_COMMANDS = ['true', 'zstd', 'pgbackrest-sync', 'pgbackrest-async', 'pgforever'];
export const DRAIN_LABEL = {
  true: '`/bin/true` (the archiver\'s own loop)',
  zstd: '`zstd -1` into a directory (no fsync)',
  'pgbackrest-sync': 'pgBackRest archive-push, synchronous',
  'pgbackrest-async': 'pgBackRest archive-push, asynchronous (process-max 2)',
  pgforever: 'pgforever: what `pgforever archive-command` prints',
};

/**
 * Stops the cluster's pgforever archive daemons. A live one watches archive_status and pushes every
 * .ready file as it appears, so it would archive the backlog while archiving is meant to be down
 * (and load the machine during the other commands' drains).
 */
async function stopArchiveDaemons(world) {
  const left = await killProcessesUnder(world.dir, { select: (p) => p.cmdline.includes(' archive-daemon ') });
  if (left.length > 0) log(`killed ${left.length} archive daemons that ignored SIGTERM`);
}

/** Segment objects (`<timeline dir>/<name>.zst`) in a directory repository. */
function storedSegments(repoDir) {
  const wal = join(repoDir, 'wal');
  if (!existsSync(wal)) return new Set();
  return new Set(
    readdirSync(wal)
      .filter((timeline) => statSync(join(wal, timeline)).isDirectory())
      .flatMap((timeline) => readdirSync(join(wal, timeline)).filter((f) => /^[0-9A-F]{24}\.zst$/.test(f)).map((f) => join(timeline, f))),
  );
}

/**
 * After a pgforever drain: the segments it stored without a summary (the daemon defers them while a
 * backlog drains) and the seconds and machine CPU until the daemon has stored all of theirs. Polls
 * for the summary objects every 20 ms.
 */
async function summariesRecorded(repoDir, before, deadlineMs) {
  const cpu0 = busyCpuSeconds();
  const t0 = process.hrtime.bigint();
  const { loadWalDescription } = await import('../../dist/wal/repository.js');
  const { Repository } = await import('../../dist/repo/index.js');
  const { PosixStorage } = await import('../../dist/storage/posix.js');
  const repo = await Repository.open(new PosixStorage(repoDir));
  const drained = [...storedSegments(repoDir)].filter((key) => !before.has(key));
  const deferred = [];
  for (const key of drained) {
    const description = await loadWalDescription(repo, `wal/${key}`, statSync(join(repoDir, 'wal', key)).size);
    if (description.summary === undefined) deferred.push(join(repoDir, 'wal', key.replace(/\.zst$/, '.summary.zst')));
  }
  const deadline = Date.now() + deadlineMs;
  while (!deferred.every((path) => existsSync(path))) {
    if (Date.now() > deadline) throw new Error(`summaries of ${deferred.filter((p) => !existsSync(p)).length} segments not recorded in ${deadlineMs / 1000} s`);
    await delay(20);
  }
  return { segments: drained.length, deferred: deferred.length, seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuSeconds: busyCpuSeconds() - cpu0 };
}

/** Fills the backlog: WAL written while archiving fails, until `segments` are waiting. */
async function fillBacklog(world, segments, source) {
  const cluster = world.cluster;
  await cluster.setArchiveCommand('/bin/false');
  await stopArchiveDaemons(world);
  if (source === 'realistic') {
    await cluster.query('CREATE TABLE IF NOT EXISTS walfill (LIKE docs)');
    const [{ max }] = await cluster.query('SELECT max(id)::bigint AS max FROM docs');
    let next = 1;
    while (cluster.readyCount() < segments) {
      const last = Math.min(Number(max), next + 20000 - 1);
      await cluster.query(`INSERT INTO walfill SELECT * FROM docs WHERE id BETWEEN ${next} AND ${last}`);
      next = last >= Number(max) ? 1 : last + 1;
    }
  } else {
    await cluster.query('CREATE TABLE IF NOT EXISTS walfill (LIKE pgbench_accounts)');
    while (cluster.readyCount() < segments) {
      await cluster.query('INSERT INTO walfill SELECT * FROM pgbench_accounts WHERE aid <= 500000');
    }
  }
  await cluster.query('SELECT pg_switch_wal()');
  // Again: one the archiver started before it read the new archive_command would push the backlog.
  await stopArchiveDaemons(world);
  return cluster.readyCount();
}

/**
 * Switches archive_command and returns the seconds until `count` more files are archived, with the
 * CPU-seconds the whole machine used meanwhile (the archiver, the command, this polling included).
 */
async function drain(world, command, count, deadlineMs) {
  const client = await world.cluster.connect();
  try {
    await client.query(`ALTER SYSTEM SET archive_command = ${quoteLiteral(command)}`);
    const [{ archived }] = (await client.query('SELECT archived_count AS archived FROM pg_stat_archiver')).rows;
    const target = Number(archived) + count;
    const cpu0 = busyCpuSeconds();
    const t0 = process.hrtime.bigint();
    await client.query('SELECT pg_reload_conf()');
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const [{ now }] = (await client.query('SELECT archived_count AS now FROM pg_stat_archiver')).rows;
      if (Number(now) >= target) return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuSeconds: busyCpuSeconds() - cpu0 };
      if (Date.now() > deadline) throw new Error(`archive drain with ${command} did not finish in ${deadlineMs / 1000} s (${Number(now) - Number(archived)} of ${count})`);
      await delay(10);
    }
  } finally {
    await client.end();
  }
}

export async function archiveDrain(ctx) {
  const source = ctx.cfg.drainWal;
  const world = await useCluster(source === 'realistic' ? 'realistic' : 'pgbench', ctx);
  const dir = join(world.dir, 'drain');
  const zstdDir = join(dir, 'zstd');
  mkdirSync(zstdDir, { recursive: true });
  chownToServer(dir);
  // One repository per tool, so each segment is pushed once.
  const pgbackrest = new PgBackRest(join(dir, 'pgbackrest'), world.cluster, { repos: [{ name: 'drain', block: false }], processMax: ctx.cfg.processMax });
  await world.cluster.setArchiveCommand(pgbackrest.archiveCommand());
  await pgbackrest.stanzaCreate();
  const pgforever = new Pgforever(join(dir, 'pgforever'), world.cluster, { processMax: ctx.cfg.processMax });
  let pgforeverCommand = null;
  let pgforeverReason = null;
  try {
    await pgforever.init();
    pgforeverCommand = await pgforever.archiveCommand();
  } catch (error) {
    pgforeverReason = reasonOf(error);
  }
  const commands = {
    true: '/bin/true',
    zstd: `zstd -1 -q -f %p -o ${zstdDir}/%f.zst`,
    'pgbackrest-sync': pgbackrest.archiveCommand(),
    'pgbackrest-async': pgbackrest.archiveCommand({ async: true }),
    pgforever: pgforeverCommand,
  };
  const samples = Object.fromEntries(DRAIN_COMMANDS.map((c) => [c, []]));
  const reasons = pgforeverReason ? { pgforever: pgforeverReason } : {};
  for (let round = 1; round <= ctx.cfg.repeat; round++) {
    for (const name of rotated(ctx.cfg.drainCommands, round - 1)) {
      if (!commands[name] || reasons[name]) continue;
      const backlog = await fillBacklog(world, ctx.cfg.drainSegments, source);
      // The previous zstd drain's output goes now, while archive_command fails: once a drain is over,
      // the archiver may still be writing there (the TRUNCATE below fills a segment).
      rmSync(zstdDir, { recursive: true, force: true });
      mkdirSync(zstdDir);
      chownToServer(zstdDir);
      // Dirty pages of the filling (and of the previous command's output) are not this command's cost.
      await world.cluster.query('CHECKPOINT');
      try {
        const before = name === 'pgforever' ? storedSegments(pgforever.repo) : undefined;
        const { seconds, cpuSeconds } = await drain(world, commands[name], backlog, 30 * 60_000);
        const cpuMsPerSegment = (cpuSeconds * 1000) / backlog;
        const sample = { backlog, seconds, perSecond: backlog / seconds, cpuMsPerSegment };
        log(`drain ${name}: ${backlog} segments in ${seconds.toFixed(2)} s (${(backlog / seconds).toFixed(1)}/s), ${cpuMsPerSegment.toFixed(1)} ms of CPU a segment`);
        if (before) {
          const later = await summariesRecorded(pgforever.repo, before, 10 * 60_000);
          sample.summaries = { ...later, cpuMsPerDeferred: later.deferred > 0 ? (later.cpuSeconds * 1000) / later.deferred : 0 };
          log(`drain pgforever: ${later.deferred} of ${later.segments} segments stored without a summary, all summarised ${later.seconds.toFixed(2)} s after the drain (${sample.summaries.cpuMsPerDeferred.toFixed(1)} ms of CPU each)`);
        }
        samples[name].push(sample);
      } catch (error) {
        if (name !== 'pgforever') throw error;
        reasons[name] = reasonOf(error);
        log(`drain pgforever: ${error.message}`);
        // Whatever it left waiting is drained by pgBackRest, so the next round starts clean.
        await world.cluster.setArchiveCommand(commands['pgbackrest-sync']);
        await world.cluster.waitArchiveIdle({ deadlineMs: 30 * 60_000 });
      }
      await world.cluster.query('TRUNCATE walfill');
    }
  }
  await world.cluster.query('DROP TABLE IF EXISTS walfill');
  await world.cluster.query('CHECKPOINT');
  // The cluster's main tools (if any) archive from here on again; else WAL is let go.
  if (world.pgbackrest) await world.archiveTo('pgbackrest');
  else await world.cluster.setArchiveCommand('/bin/true');
  const result = { source, segmentsWanted: ctx.cfg.drainSegments, rounds: ctx.cfg.repeat };
  for (const name of DRAIN_COMMANDS) {
    const s = samples[name];
    result[name] = s.length > 0
      ? {
          backlog: median(s.map((x) => x.backlog)),
          seconds: median(s.map((x) => x.seconds)),
          perSecond: median(s.map((x) => x.perSecond)),
          min: Math.min(...s.map((x) => x.perSecond)),
          max: Math.max(...s.map((x) => x.perSecond)),
          cpuMsPerSegment: median(s.map((x) => x.cpuMsPerSegment)),
          samples: s.length,
          ...(s[0].summaries
            ? {
                summaries: {
                  deferred: median(s.map((x) => x.summaries.deferred)),
                  segments: median(s.map((x) => x.summaries.segments)),
                  seconds: median(s.map((x) => x.summaries.seconds)),
                  cpuMsPerDeferred: median(s.map((x) => x.summaries.cpuMsPerDeferred)),
                },
              }
            : {}),
        }
      : { reason: reasons[name] ?? 'not measured' };
  }
  return result;
}
