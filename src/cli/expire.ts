import type { Command } from 'commander';
import { openStorage } from '../storage/index.js';
import type { ExpireSummary } from '../retention/expire.js';
import { PgfError } from '../errors/index.js';
import { commandContext, printJson, withCommonOptions } from './common.js';

type Flags = Record<string, unknown> & { json?: boolean; dryRun?: boolean; gcGraceMinutes?: string; repackBelow?: string };

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

function wholeNumber(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new PgfError('USAGE', `${name} must be a whole number from 0 to ${max}, got ${value}`);
  return n;
}

function render(s: ExpireSummary): string {
  const lines = [
    `${s.dryRun ? 'would keep' : 'kept'} ${s.backups.keep.length} backup(s):`,
    ...s.backups.keep.map((k) => `  ${k.id}  ${k.reasons.join('; ')}`),
    `${s.dryRun ? 'would expire' : 'expired'} ${s.backups.expire.length} backup(s)${s.backups.expire.length > 0 ? `: ${s.backups.expire.join(', ')}` : ''}`,
    ...(s.backups.pitrWindowStart !== undefined ? [`point-in-time recovery kept from ${s.backups.pitrWindowStart}`] : []),
    `${s.dryRun ? 'would remove' : 'removed'} ${s.wal.segmentsRemoved} WAL file(s), ${mib(s.wal.bytesRemoved)}${s.wal.first !== undefined ? ` (${s.wal.first} .. ${s.wal.last})` : ''}`,
  ];
  if (s.mark !== undefined) {
    lines.push(
      `garbage marked: ${s.mark.packsCondemned} pack(s) ${mib(s.mark.bytesCondemned)}, ${s.mark.packsRepacked} repacked keeping ${mib(s.mark.bytesRepacked)}, ${s.mark.listsCondemned} extent list(s)`,
    );
  }
  if (s.sweep !== undefined) {
    lines.push(
      s.sweep.deferred !== undefined
        ? `garbage sweep deferred: ${s.sweep.deferred}`
        : `garbage swept: ${s.sweep.marksSwept} mark(s), ${s.sweep.packsDeleted} pack(s), ${s.sweep.listsDeleted} list(s), ${mib(s.sweep.bytesFreed)} freed` +
            (s.sweep.packsRescued + s.sweep.listsRescued > 0 ? `; ${s.sweep.packsRescued} pack(s) and ${s.sweep.listsRescued} list(s) rescued for backups taken meanwhile` : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

export function registerExpireCommands(program: Command): void {
  withCommonOptions(program.command('expire').description('apply retention to backups and WAL, then collect garbage'), { json: true })
    .option('--retain-full <n>', 'keep the newest N backups (env PGFOREVER_RETAIN_FULL)')
    .option('--retain-days <d>', 'keep backups that finished within D days (env PGFOREVER_RETAIN_DAYS)')
    .option('--retain-pitr-days <d>', 'keep point-in-time recovery to any moment of the last D days (env PGFOREVER_RETAIN_PITR_DAYS)')
    .option('--dry-run', 'print what would be removed and remove nothing')
    .option('--gc-grace-minutes <m>', 'delete garbage only once it was marked this long ago, so readers that started before see it whole', '60')
    .option('--repack-below <percent>', 'rewrite packs whose live bytes are below this share of their size', '50')
    .action(async (flags: Flags) => {
      const { settings, log, json } = commandContext(flags);
      const graceMs = wholeNumber('--gc-grace-minutes', flags.gcGraceMinutes, 60, 100_000) * 60_000;
      const repackBelow = wholeNumber('--repack-below', flags.repackBelow, 50, 100) / 100;
      const storage = await openStorage(settings.repo, settings.s3);
      try {
        const [{ Repository }, { runExpire }] = await Promise.all([import('../repo/index.js'), import('../retention/expire.js')]);
        const repo = await Repository.open(storage);
        const summary = await runExpire(repo, log, {
          rules: settings.retention,
          dryRun: flags.dryRun === true,
          graceMs,
          repackBelow,
          parallel: settings.processMax,
        });
        if (json) printJson(summary);
        else process.stdout.write(render(summary));
      } finally {
        await storage.close();
      }
    });
}
