// Storage after a simulated month on the realistic dataset: one backup a day for MONTH_DAYS days, about
// 1% of the data changed between two days. pgforever (incremental forever) next to pgBackRest with
// daily fulls, and with a weekly full plus daily incrementals (file-level and block).
import { realisticDay } from '../lib/data.js';
import { measure } from '../lib/proc.js';
import { dirBytes, log } from '../lib/util.js';
import { reasonOf, useCluster } from '../lib/world.js';
import { scratchDir } from './backups.js';

export const MONTH_STRATEGIES = ['pgforever', 'daily', 'weekly-file', 'weekly-block'];
export const MONTH_LABEL = {
  pgforever: 'pgforever, one backup a day',
  daily: 'pgBackRest, daily full',
  'weekly-file': 'pgBackRest, weekly full + daily file-level incr',
  'weekly-block': 'pgBackRest, weekly full + daily block incr (bundle + block)',
};

export async function month(ctx) {
  const world = await useCluster('realistic', ctx);
  const mainTools = { pgbackrest: world.pgbackrest, pgforever: world.pgforever, reason: world.pgforeverReason, archive: world.pgforeverArchive };
  await world.attachTools('month', [
    { name: 'daily', block: false },
    { name: 'weekly-file', block: false },
    { name: 'weekly-block', block: true },
  ]);
  const totals = Object.fromEntries(MONTH_STRATEGIES.map((s) => [s, { wallS: 0, cpuS: 0, backups: 0, fulls: 0 }]));
  const reasons = {};
  const storedAfter = (strategy) =>
    strategy === 'pgforever' ? dirBytes(world.pgforever.repo) - dirBytes(world.pgforever.walPath) : dirBytes(world.pgbackrest.repoBackupPath(strategy));
  const perDay = [];
  for (let day = 0; day < ctx.cfg.monthDays; day++) {
    if (day > 0) {
      await world.archiveTo('pgbackrest');
      await realisticDay(world.cluster, ctx.cfg.scale, day);
    }
    const row = { day };
    for (const strategy of MONTH_STRATEGIES) {
      if (strategy === 'pgforever' && (world.pgforeverReason || reasons.pgforever)) continue;
      const type = strategy === 'daily' || day % 7 === 0 ? 'full' : 'incr';
      await world.archiveTo(strategy === 'pgforever' ? 'pgforever' : 'pgbackrest');
      await world.cluster.waitArchiveIdle();
      await world.cluster.query('CHECKPOINT');
      const [file, ...args] = strategy === 'pgforever' ? world.pgforever.backupArgv() : world.pgbackrest.backupArgv(strategy, type);
      try {
        const m = await measure(file, args, { scratch: scratchDir(world), env: strategy === 'pgforever' ? world.pgforever.env : world.cluster.env });
        totals[strategy].wallS += m.wallS;
        totals[strategy].cpuS += m.cpuS;
        totals[strategy].backups += 1;
        if (type === 'full' && strategy !== 'pgforever') totals[strategy].fulls += 1;
      } catch (error) {
        if (strategy !== 'pgforever') throw error;
        reasons.pgforever = reasonOf(error);
        log(`month, pgforever: ${error.message}`);
      }
      row[strategy] = storedAfter(strategy);
    }
    perDay.push(row);
    log(`month day ${day + 1}/${ctx.cfg.monthDays}: ${MONTH_STRATEGIES.map((s) => `${s} ${((row[s] ?? 0) / 1e6).toFixed(0)} MB`).join(', ')}`);
  }
  const [{ size }] = await world.cluster.query('SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database');
  const result = { days: ctx.cfg.monthDays, databaseBytesStart: world.databaseBytes, databaseBytesEnd: Number(size), perDay };
  for (const strategy of MONTH_STRATEGIES) {
    const reason = strategy === 'pgforever' ? world.pgforeverReason ?? reasons.pgforever : null;
    result[strategy] = reason
      ? { reason }
      : {
          storedBytes: storedAfter(strategy),
          walBytes: strategy === 'pgforever' ? dirBytes(world.pgforever.walPath) : dirBytes(world.pgbackrest.repoArchivePath(strategy)),
          ...totals[strategy],
        };
  }
  // The cluster's main repositories archive again from here on.
  Object.assign(world, { pgbackrest: mainTools.pgbackrest, pgforever: mainTools.pgforever, pgforeverReason: mainTools.reason, pgforeverArchive: mainTools.archive });
  await world.archiveTo('pgbackrest');
  return result;
}
