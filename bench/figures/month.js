// Storage after a simulated month on the realistic dataset: one backup a day for MONTH_DAYS days, about
// 1% of the data changed between two days. pgforever (incremental forever), keeping everything and with
// a week's retention, next to pgBackRest with daily fulls, and with a weekly full plus daily
// incrementals (file-level and block).
import { realisticDay } from '../lib/data.js';
import { measure } from '../lib/proc.js';
import { dirBytes, log } from '../lib/util.js';
import { reasonOf, useCluster } from '../lib/world.js';
import { scratchDir } from './backups.js';

export const MONTH_STRATEGIES = ['pgforever', 'pgforever-expire', 'daily', 'weekly-file', 'weekly-block'];
// Simulated days are minutes apart, so a week is counted in backups (one a day), not with --retain-days.
export const RETAIN_BACKUPS = 7;
export const MONTH_LABEL = {
  pgforever: 'pgforever, one backup a day',
  'pgforever-expire': `pgforever, one backup a day, then \`expire --retain-full ${RETAIN_BACKUPS} --gc-grace-minutes 0\``,
  daily: 'pgBackRest, daily full',
  'weekly-file': 'pgBackRest, weekly full + daily file-level incr',
  'weekly-block': 'pgBackRest, weekly full + daily block incr (bundle + block)',
};
const PGFOREVER = new Set(['pgforever', 'pgforever-expire']);

export async function month(ctx) {
  const world = await useCluster('realistic', ctx);
  // Earlier figures (the incremental's workload) may have grown the database since it was loaded.
  const databaseBytesStart = await databaseBytes(world);
  const mainTools = {
    pgbackrest: world.pgbackrest,
    pgforever: world.pgforever,
    pgforeverReason: world.pgforeverReason,
    pgforeverArchive: world.pgforeverArchive,
    extraArchives: world.extraArchives,
  };
  await world.attachTools('month', [
    { name: 'daily', block: false },
    { name: 'weekly-file', block: false },
    { name: 'weekly-block', block: true },
  ]);
  const reasons = {};
  if (world.pgforeverReason) reasons.pgforever = world.pgforeverReason;
  let expiring = null;
  try {
    if (!world.pgforeverReason) expiring = await world.attachExtraPgforever('month-expire');
  } catch (error) {
    reasons['pgforever-expire'] = reasonOf(error);
  }
  reasons['pgforever-expire'] ??= reasons.pgforever;
  const pgforeverOf = (strategy) => (strategy === 'pgforever' ? world.pgforever : expiring);
  const totals = Object.fromEntries(MONTH_STRATEGIES.map((s) => [s, { wallS: 0, cpuS: 0, backups: 0, fulls: 0 }]));
  const storedAfter = (strategy) =>
    PGFOREVER.has(strategy) ? dirBytes(pgforeverOf(strategy).repo) - dirBytes(pgforeverOf(strategy).walPath) : dirBytes(world.pgbackrest.repoBackupPath(strategy));
  const walAfter = (strategy) => (PGFOREVER.has(strategy) ? dirBytes(pgforeverOf(strategy).walPath) : dirBytes(world.pgbackrest.repoArchivePath(strategy)));
  const perDay = [];
  for (let day = 0; day < ctx.cfg.monthDays; day++) {
    if (day > 0) {
      await world.archiveTo('pgbackrest');
      await realisticDay(world.cluster, ctx.cfg.scale, day);
    }
    const row = { day };
    for (const strategy of MONTH_STRATEGIES) {
      if (reasons[strategy]) continue;
      const type = strategy === 'daily' || day % 7 === 0 ? 'full' : 'incr';
      await world.archiveTo(PGFOREVER.has(strategy) ? 'pgforever' : 'pgbackrest');
      await world.cluster.waitArchiveIdle();
      await world.cluster.query('CHECKPOINT');
      const env = PGFOREVER.has(strategy) ? world.pgforever.env : world.cluster.env;
      const commands = [PGFOREVER.has(strategy) ? pgforeverOf(strategy).backupArgv() : world.pgbackrest.backupArgv(strategy, type)];
      if (strategy === 'pgforever-expire') {
        commands.push(expiring.argv('expire', '--retain-full', String(RETAIN_BACKUPS), '--gc-grace-minutes', '0', '--log-level', 'warn'));
      }
      try {
        for (const [file, ...args] of commands) {
          const m = await measure(file, args, { scratch: scratchDir(world), env });
          totals[strategy].wallS += m.wallS;
          totals[strategy].cpuS += m.cpuS;
        }
        totals[strategy].backups += 1;
        if (type === 'full' && !PGFOREVER.has(strategy)) totals[strategy].fulls += 1;
      } catch (error) {
        if (!PGFOREVER.has(strategy)) throw error;
        reasons[strategy] = reasonOf(error);
        log(`month, ${strategy}: ${error.message}`);
      }
      row[strategy] = storedAfter(strategy);
    }
    perDay.push(row);
    log(`month day ${day + 1}/${ctx.cfg.monthDays}: ${MONTH_STRATEGIES.map((s) => `${s} ${((row[s] ?? 0) / 1e6).toFixed(0)} MB`).join(', ')}`);
  }
  const result = { days: ctx.cfg.monthDays, databaseBytesStart, databaseBytesEnd: await databaseBytes(world), perDay };
  for (const strategy of MONTH_STRATEGIES) {
    result[strategy] = reasons[strategy] ? { reason: reasons[strategy] } : { storedBytes: storedAfter(strategy), walBytes: walAfter(strategy), ...totals[strategy] };
  }
  if (!reasons['pgforever-expire']) result['pgforever-expire'].kept = await keptBackups(expiring);
  // The cluster's main repositories (if any) archive again from here on; else WAL is let go.
  Object.assign(world, mainTools);
  if (world.pgbackrest) await world.archiveTo('pgbackrest');
  else await world.cluster.setArchiveCommand('/bin/true');
  return result;
}

async function databaseBytes(world) {
  const [{ size }] = await world.cluster.query('SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database');
  return Number(size);
}

/** How many backups a pgforever repository holds (`info --json`). */
async function keptBackups(pgforever) {
  const { stdout } = await pgforever.run('info', '--json', '--log-level', 'warn');
  return JSON.parse(stdout).backups.length;
}
