/**
 * Recovery settings for a restored cluster: the target, what to do at it, the timeline, and the
 * restore_command that fetches WAL from the repository. Written into postgresql.auto.conf (the file
 * PostgreSQL reads last) plus recovery.signal or standby.signal.
 */
import { PgfError } from '../errors/index.js';

export type RecoveryTarget =
  | { kind: 'time'; value: string }
  | { kind: 'lsn'; value: string }
  | { kind: 'xid'; value: string }
  | { kind: 'name'; value: string }
  | { kind: 'immediate' }
  | { kind: 'latest' };

export interface RecoveryOptions {
  target: RecoveryTarget;
  action?: 'promote' | 'pause' | 'shutdown';
  timeline?: string;
  standby: boolean;
  restoreCommand: string;
  /** Stop just before the target instead of just after (recovery_target_inclusive). */
  exclusive?: boolean;
}

const beginMarker = '# pgforever recovery settings: begin';
const endMarker = '# pgforever recovery settings: end';

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function recoverySettingsLines(options: RecoveryOptions): string[] {
  const lines = [`restore_command = ${quote(options.restoreCommand)}`];
  const { target } = options;
  switch (target.kind) {
    case 'time':
      lines.push(`recovery_target_time = ${quote(target.value)}`);
      break;
    case 'lsn':
      lines.push(`recovery_target_lsn = ${quote(target.value)}`);
      break;
    case 'xid':
      lines.push(`recovery_target_xid = ${quote(target.value)}`);
      break;
    case 'name':
      lines.push(`recovery_target_name = ${quote(target.value)}`);
      break;
    case 'immediate':
      lines.push(`recovery_target = 'immediate'`);
      break;
    case 'latest':
      break;
  }
  if (target.kind !== 'latest') {
    if (options.exclusive) lines.push(`recovery_target_inclusive = off`);
    lines.push(`recovery_target_action = ${quote(options.action ?? 'promote')}`);
  } else if (options.action !== undefined && options.action !== 'promote') {
    throw new PgfError('USAGE', '--target-action needs a recovery target (--target-time, --target-lsn, --target-xid, --target-name or --target immediate)');
  }
  if (options.timeline !== undefined) lines.push(`recovery_target_timeline = ${quote(options.timeline)}`);
  return lines;
}

/**
 * Replaces an earlier pgforever block (a restore with --delta over a previous one) and keeps every
 * other setting the cluster had.
 */
export function withRecoverySettings(autoConf: string, options: RecoveryOptions): string {
  const start = autoConf.indexOf(beginMarker);
  const end = autoConf.indexOf(endMarker);
  const kept = start >= 0 && end > start ? autoConf.slice(0, start) + autoConf.slice(end + endMarker.length + 1) : autoConf;
  const prefix = kept.length === 0 || kept.endsWith('\n') ? kept : `${kept}\n`;
  return `${prefix}${beginMarker}\n${recoverySettingsLines(options).join('\n')}\n${endMarker}\n`;
}
