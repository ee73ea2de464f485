import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { openStorage } from '../storage/index.js';
import { PgfError, errorLine } from '../errors/index.js';
import type { Settings } from '../config/index.js';
import { archiveCommands as commandsFor, postgresqlConfLines, type ArchiveCommands } from '../wal/archive-command.js';
import { spoolBeside } from '../wal/spool.js';
import { commandContext, printJson, withCommonOptions } from './common.js';

type Flags = Record<string, unknown> & { config?: string; json?: boolean; spool?: string; timeout?: number; prefetch?: number; idleExit?: number };

const DEFAULT_TIMEOUT_S = 60;
const DEFAULT_IDLE_EXIT_S = 60;

/**
 * PostgreSQL waits for archive and restore commands to exit: once the answer is known, a request
 * still hanging on a stalled store (the S3 client cannot cancel one) must not keep the process
 * alive. The timer is unref'd, so it only fires when something else still holds the process.
 */
function exitSoonAfter(): void {
  setTimeout(() => process.exit(), 1000).unref();
}

/**
 * archive-get's exit status for a failure (not a missing file) while PostgreSQL runs archive
 * recovery towards a target or the end of the archive: PostgreSQL takes any status up to 125 for
 * "not in the archive" and would end recovery there, promoting early with the rest of the WAL left
 * out; above 125 it stops recovery with an error, which a restart resumes once the repository is
 * readable. The same as pgforever-archive's (crates/archive-client/src/main.rs).
 */
const RECOVERY_FAILED = 200;

/** recovery.signal without standby.signal where PostgreSQL runs restore_command (the data directory); a standby retries failed calls. */
function inArchiveRecovery(): boolean {
  return existsSync('recovery.signal') && !existsSync('standby.signal');
}

function wholeNumber(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
}

/** The archive and restore commands for this repository, as postgresql.conf should hold them. */
export function archiveCommands(settings: Settings, configPath?: string): ArchiveCommands {
  return commandsFor(settings.repo, { config: configPath });
}

export function registerArchiveCommands(program: Command): void {
  const spoolOption = ['--spool <dir>', 'spool directory shared with pgforever-archive (default: pg_wal/pgforever/<repository key> when the file is in a server\'s pg_wal)'] as const;
  const timeoutOption = ['--timeout <seconds>', `give up after this long, so PostgreSQL retries (default ${DEFAULT_TIMEOUT_S})`, wholeNumber('--timeout', 1, 86_400)] as const;

  withCommonOptions(
    program
      .command('archive-push')
      .description('archive one WAL segment or history file (archive_command); pushes the next ready ones ahead')
      .argument('<path>')
      .option(...spoolOption)
      .option(...timeoutOption),
  ).action(async (path: string, flags: Flags) => {
    const { settings, log } = commandContext(flags);
    try {
      const { pushWalFile } = await import('../wal/archive.js');
      const outcome = await pushWalFile(await openStorage(settings.repo, settings.s3), path, {
        spool: flags.spool ?? (await spoolBeside(dirname(path), settings.repo)),
        parallel: settings.processMax,
        timeoutMs: (flags.timeout ?? DEFAULT_TIMEOUT_S) * 1000,
        log,
      });
      log.debug({ path, outcome }, 'archive-push');
    } finally {
      exitSoonAfter();
    }
  });

  withCommonOptions(
    program
      .command('archive-get')
      .description('fetch one WAL segment or history file (restore_command); exit 1 when absent; prefetches the next segments')
      .argument('<name>')
      .argument('<dest>')
      .option(...spoolOption)
      .option(...timeoutOption)
      .option('--prefetch <count>', 'segments to fetch ahead into the spool (default 4 x process max)', wholeNumber('--prefetch', 0, 1024)),
  ).action(async (name: string, dest: string, flags: Flags) => {
    const { settings, log } = commandContext(flags);
    try {
      const { getWalFile } = await import('../wal/archive.js');
      const found = await getWalFile(await openStorage(settings.repo, settings.s3), name, dest, {
        spool: flags.spool ?? (await spoolBeside(dirname(dest), settings.repo)),
        parallel: settings.processMax,
        prefetch: flags.prefetch ?? settings.processMax * 4,
        timeoutMs: (flags.timeout ?? DEFAULT_TIMEOUT_S) * 1000,
        log,
      });
      if (!found) process.exitCode = 1;
    } catch (err) {
      if (!inArchiveRecovery()) throw err;
      process.stderr.write(errorLine(err));
      process.exitCode = RECOVERY_FAILED;
    } finally {
      exitSoonAfter();
    }
  });

  // bin/pgforever.js recognises this name to leave the daemon V8's default optimizing budget.
  withCommonOptions(
    program
      .command('archive-daemon')
      .description('the background pusher and prefetcher that pgforever-archive starts (holding the spool lock); exits when idle')
      .requiredOption('--spool <dir>', 'spool directory')
      .option('--timeout <seconds>', `how long clients wait; answers come before that (default ${DEFAULT_TIMEOUT_S})`, wholeNumber('--timeout', 1, 86_400))
      .option('--idle-exit <seconds>', `exit after this long without work (default ${DEFAULT_IDLE_EXIT_S})`, wholeNumber('--idle-exit', 1, 86_400))
      .option('--prefetch <count>', 'segments to keep fetched ahead of recovery (default 4 x process max)', wholeNumber('--prefetch', 0, 1024)),
  ).action(async (flags: Flags) => {
    const { settings, log } = commandContext(flags);
    const [{ Spool }, { holdsSpoolLock, runArchiveDaemon }, { openRepository }, { WalPusher }, { WalFetcher }] = await Promise.all([
      import('../wal/spool.js'),
      import('../wal/daemon.js'),
      import('../wal/archive.js'),
      import('../wal/push.js'),
      import('../wal/fetch.js'),
    ]);
    const spool = await Spool.open(flags.spool ?? '');
    if (!(await holdsSpoolLock(spool))) {
      throw new PgfError('USAGE', `archive-daemon runs only as started by pgforever-archive, which passes the locked ${spool.lockPath} as its standard input`);
    }
    const timeoutS = flags.timeout ?? DEFAULT_TIMEOUT_S;
    const storage = await openStorage(settings.repo, settings.s3);
    try {
      const repo = await openRepository(storage, timeoutS * 1000);
      await runArchiveDaemon({
        spool,
        location: repo.location,
        // One file more in flight than process max: each push waits on its read, its write and its
        // fsync between the CPU work, and with only process-max pushes the cores idled in those
        // waits (1.70 of 2 busy in a backlog drain against 1.82, about 10% slower).
        pusher: new WalPusher(repo, { parallel: settings.processMax + 1, log, spool, pushAheadWindowMs: 10_000, deferSummaries: true }),
        fetcher: new WalFetcher(repo, { parallel: settings.processMax, prefetch: flags.prefetch ?? settings.processMax * 4, spool, log }),
        idleExitMs: (flags.idleExit ?? DEFAULT_IDLE_EXIT_S) * 1000,
        // Answer a little before the client stops waiting, so PostgreSQL's log gets the reason.
        timeoutMs: Math.max(timeoutS * 900, timeoutS * 1000 - 5000),
        log,
      });
    } finally {
      await storage.close();
      exitSoonAfter();
    }
  });

  withCommonOptions(
    program
      .command('archive-command')
      .description('print the archive_command and restore_command for this repository (the fastest path installed)')
      .option('--spool <dir>', 'spool directory for the commands to use (default: pg_wal/pgforever/<repository key> in the data directory)'),
    { json: true },
  ).action((flags: Flags) => {
    const { settings, json } = commandContext(flags);
    const commands = commandsFor(settings.repo, { config: flags.config, spool: flags.spool });
    if (json) printJson(commands);
    else process.stdout.write(postgresqlConfLines(commands));
  });
}
