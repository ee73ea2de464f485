import type { Command } from 'commander';
import { openStorage } from '../storage/index.js';
import type { RepositoryInfo } from '../info/index.js';
import { commandContext, printJson, withCommonOptions } from './common.js';

type Flags = Record<string, unknown> & { json?: boolean };

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

function render(info: RepositoryInfo): string {
  const lines = [
    `repository ${info.location}: cluster ${info.systemIdentifier}, PostgreSQL ${info.pgMajor}`,
    `size ${mib(info.sizes.repositoryBytes)} (WAL ${mib(info.sizes.walBytes)}), backups hold ${mib(info.sizes.logicalBytes)} logically, dedup ratio ${info.sizes.dedupRatio}`,
    `recoverable from ${info.recoverable.earliest ?? '-'} to ${info.recoverable.latest ?? '-'}`,
    `newest WAL ${info.archive.newestSegment ?? '-'}${info.archive.ageSeconds !== undefined ? ` (${info.archive.ageSeconds} s ago)` : ''}`,
    '',
    'backups:',
    ...info.backups.map(
      (b) =>
        `  ${b.id}  ${b.detection.padEnd(4)} tl ${b.timeline}  ${b.startLsn} - ${b.stopLsn}  read ${mib(b.bytesRead)}, new ${mib(b.bytesNew)}, stored ${mib(b.bytesStored)}${b.permanent ? '  permanent' : ''}${b.label ? `  "${b.label}"` : ''}`,
    ),
    'WAL:',
    ...info.wal.map((w) => `  timeline ${w.timeline}: ${w.first} - ${w.last} (${w.segments} segments)`),
    ...(info.walGaps.length > 0 ? ['WAL gaps:', ...info.walGaps.map((g) => `  ${g}`)] : []),
  ];
  return `${lines.join('\n')}\n`;
}

export function registerInfoCommands(program: Command): void {
  withCommonOptions(program.command('info').description('backups, WAL ranges per timeline, recoverable window, repository size and dedup ratio'), { json: true }).action(
    async (flags: Flags) => {
      const { settings, json } = commandContext(flags);
      const storage = await openStorage(settings.repo, settings.s3);
      try {
        const [{ Repository }, { repositoryInfo }] = await Promise.all([import('../repo/index.js'), import('../info/index.js')]);
        const info = await repositoryInfo(await Repository.open(storage));
        if (json) printJson(info);
        else process.stdout.write(render(info));
      } finally {
        await storage.close();
      }
    },
  );
}
