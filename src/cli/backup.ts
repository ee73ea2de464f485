import type { Command } from 'commander';
import { openStorage } from '../storage/index.js';
import type { BackupProgress, BackupSummary } from '../backup/run.js';
import { commandContext, printJson, withCommonOptions } from './common.js';
import { archiveCommands } from './archive.js';

type Flags = Record<string, unknown> & { config?: string; json?: boolean };

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function describe(summary: BackupSummary): string {
  return [
    `backup ${summary.id} done (${summary.detection}: ${summary.detectionReason})`,
    `  files ${summary.files}, read ${mib(summary.bytesRead)}, new ${mib(summary.bytesNew)}, stored ${mib(summary.bytesStored)}, dedup ratio ${summary.dedupRatio.toFixed(1)}`,
    `  extents reused ${summary.extentsReused}, new ${summary.extentsNew}; ${(summary.durationMs / 1000).toFixed(1)} s`,
    `  LSN ${summary.startLsn} - ${summary.stopLsn} on timeline ${summary.timeline} (WAL ${summary.walStart} - ${summary.walStop})`,
    ...(summary.checksumFailures.length > 0
      ? [`  ${summary.checksumFailures.length} page checksum failure(s): ${summary.checksumFailures.slice(0, 5).map((f) => `${f.path} block ${f.block}`).join(', ')}`]
      : []),
  ].join('\n');
}

export function registerBackupCommands(program: Command): void {
  withCommonOptions(program.command('init').description('create the repository for this cluster'), { json: true }).action(async (flags: Flags) => {
    const { settings, json } = commandContext(flags);
    const [{ ServerConnection }, { Repository }] = await Promise.all([import('../pg/server.js'), import('../repo/index.js')]);
    const server = await ServerConnection.connect(settings.pgUrl);
    try {
      const info = await server.info();
      const repo = await Repository.init(await openStorage(settings.repo, settings.s3), {
        systemIdentifier: info.systemIdentifier,
        pgMajor: info.major,
        walSegmentSize: info.walSegmentSize,
        blockSize: info.blockSize,
        compressLevel: settings.compressLevel,
      });
      const commands = archiveCommands(settings, flags.config);
      if (json) {
        printJson({ repo: repo.location, ...repo.config, ...commands });
      } else {
        process.stdout.write(
          `repository created at ${repo.location} for cluster ${info.systemIdentifier} (PostgreSQL ${info.major})\n` +
            `set in postgresql.conf (archive_mode = on needs a restart):\n  archive_mode = on\n  archive_command = '${commands.archive_command.replace(/'/g, "''")}'\n`,
        );
      }
    } finally {
      await server.close();
    }
  });

  withCommonOptions(
    program
      .command('backup')
      .description('take a backup: the first is full, later ones incremental')
      .option('--full', 'read and hash every extent instead of trusting page LSNs')
      .option('--label <text>', 'label stored with the backup')
      .option('--permanent', 'never expire this backup')
      .option('--verify-unchanged', 'hash every extent, reuse none by LSN')
      .option('--wal-wait <seconds>', 'how long to wait for the last WAL segment to be archived', '300'),
    { json: true },
  ).action(async (flags: Flags) => {
    const { settings, log, json } = commandContext(flags);
    let lastDrawn = 0;
    const progress = process.stderr.isTTY
      ? (p: BackupProgress) => {
          const now = Date.now();
          if (now - lastDrawn < 250 && p.filesDone < p.files) return;
          lastDrawn = now;
          const percent = p.bytes > 0 ? Math.floor((100 * p.bytesDone) / p.bytes) : 100;
          process.stderr.write(`\r${percent}%  ${p.filesDone}/${p.files} files  ${mib(p.bytesDone)} of ${mib(p.bytes)} read, ${mib(p.bytesStored)} stored   `);
          if (p.filesDone === p.files) process.stderr.write('\n');
        }
      : undefined;
    const { runBackup } = await import('../backup/run.js');
    const summary = await runBackup(settings, log, {
      full: flags.full === true,
      ...(typeof flags.label === 'string' ? { label: flags.label } : {}),
      permanent: flags.permanent === true,
      verifyUnchanged: flags.verifyUnchanged === true,
      walWaitMs: Number(flags.walWait) * 1000,
    }, progress);
    if (json) printJson(summary);
    else process.stdout.write(`${describe(summary)}\n`);
  });
}
