import type { Command } from 'commander';
import { PgfError } from '../errors/index.js';
import type { RecoveryTarget } from '../restore/recovery.js';
import { commandContext, printJson, withCommonOptions } from './common.js';
import { archiveCommands } from './archive.js';
import { prefetchForRecovery } from '../wal/archive-command.js';

type Flags = Record<string, unknown> & { config?: string; json?: boolean };

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function recoveryTarget(flags: Flags): RecoveryTarget {
  const given: RecoveryTarget[] = [];
  if (typeof flags.targetTime === 'string') given.push({ kind: 'time', value: flags.targetTime });
  if (typeof flags.targetLsn === 'string') given.push({ kind: 'lsn', value: flags.targetLsn });
  if (typeof flags.targetXid === 'string') given.push({ kind: 'xid', value: flags.targetXid });
  if (typeof flags.targetName === 'string') given.push({ kind: 'name', value: flags.targetName });
  if (flags.target !== undefined) {
    if (flags.target !== 'immediate') throw new PgfError('USAGE', `--target takes only 'immediate', got ${String(flags.target)}`);
    given.push({ kind: 'immediate' });
  }
  if (given.length > 1) throw new PgfError('USAGE', 'give at most one of --target-time, --target-lsn, --target-xid, --target-name, --target immediate');
  return given[0] ?? { kind: 'latest' };
}

function tablespaceMap(values: string[]): Map<number, string> {
  const map = new Map<number, string>();
  for (const value of values) {
    const match = /^(\d+)=(.+)$/.exec(value);
    if (!match) throw new PgfError('USAGE', `--tablespace-map takes OID=DIR, got ${value}`);
    map.set(Number(match[1]), match[2]!);
  }
  return map;
}

export function registerRestoreCommands(program: Command): void {
  withCommonOptions(
    program
      .command('restore')
      .description('restore a backup and write the recovery settings')
      .option('--set <id>', "backup to restore, or 'latest' (default: the newest that reaches the target)")
      .option('--target-time <time>', 'recover until this time, with its UTC offset (2026-11-25 03:00:00+00, 2026-11-25T03:00:00Z)')
      .option('--target-lsn <lsn>', 'recover until this WAL position')
      .option('--target-xid <xid>', 'recover until this transaction commits')
      .option('--target-name <name>', 'recover until this restore point')
      .option('--target <kind>', "'immediate': stop as soon as the backup is consistent")
      .option('--target-action <action>', 'promote, pause or shutdown at the target')
      .option('--target-timeline <timeline>', 'latest, current or a timeline number')
      .option('--type <type>', "'standby' writes standby.signal instead of recovery.signal")
      .option('--delta', 'update an existing directory in place: files with the size and mtime the backup recorded are kept, others compared extent by extent')
      .option('--tablespace-map <oid=dir>', 'restore a tablespace to another directory (repeatable)', collect, [])
      .option('--db-include <name>', 'restore only this database (repeatable); the others come back empty, to be dropped', collect, []),
    { json: true },
  ).action(async (flags: Flags) => {
    const { settings, log, json } = commandContext(flags);
    if (settings.pgdata === undefined) throw new PgfError('USAGE', 'restore needs --pgdata DIR: the directory to restore into');
    const action = flags.targetAction;
    if (action !== undefined && action !== 'promote' && action !== 'pause' && action !== 'shutdown') {
      throw new PgfError('USAGE', `--target-action must be promote, pause or shutdown, got ${String(action)}`);
    }
    if (flags.type !== undefined && flags.type !== 'standby') throw new PgfError('USAGE', `--type takes only 'standby', got ${String(flags.type)}`);
    const { runRestore } = await import('../restore/run.js');
    const summary = await runRestore(settings, log, {
      pgdata: settings.pgdata,
      ...(typeof flags.set === 'string' ? { set: flags.set } : {}),
      target: recoveryTarget(flags),
      ...(action !== undefined ? { action } : {}),
      ...(typeof flags.targetTimeline === 'string' ? { timeline: flags.targetTimeline } : {}),
      standby: flags.type === 'standby',
      delta: flags.delta === true,
      tablespaceMap: tablespaceMap(flags.tablespaceMap as string[]),
      dbInclude: flags.dbInclude as string[],
      restoreCommand: archiveCommands(settings, flags.config).restore_command,
      prefetchWal: (pgdata, segment) => void prefetchForRecovery(settings.repo, pgdata, segment, { config: flags.config }).catch(() => undefined),
    });
    if (json) printJson(summary);
    else
      process.stdout.write(
        `restored backup ${summary.backup} into ${summary.pgdata}: ${summary.files} files, ${(summary.bytesWritten / 1024 / 1024).toFixed(1)} MiB written` +
          `${summary.extentsKept > 0 ? `, ${summary.extentsKept} extents already right` : ''} in ${(summary.durationMs / 1000).toFixed(1)} s\nstart PostgreSQL on it to recover\n`,
      );
  });
}
