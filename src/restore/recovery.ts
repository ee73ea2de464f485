/**
 * Recovery settings for a restored cluster: the target, what to do at it, the timeline, and the
 * restore_command that fetches WAL from the repository. Written into postgresql.auto.conf (the file
 * PostgreSQL reads last) plus recovery.signal or standby.signal.
 */
import { PgfError } from '../errors/index.js';
import { utcSeconds } from '../time/utc.js';

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

/**
 * A --target-time as one instant, read the same way by pgforever and by PostgreSQL. PostgreSQL reads
 * a time without an offset in the restored server's `timezone` setting, and refuses zone
 * abbreviations such as `Z` while it starts; so an offset is required, and `text` is the same
 * instant in UTC with a numeric offset and every fractional digit given (microseconds at most).
 */
export interface TargetTime {
  text: string;
  /** Milliseconds since the epoch, rounded down. */
  ms: number;
}

const targetTimePattern = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)? ?(?:(Z|UTC)|([+-])(\d{2})(?::?(\d{2}))?)?$/i;

export function parseTargetTime(value: string): TargetTime {
  const example = 'e.g. 2026-11-25 03:00:00+00 or 2026-11-25T03:00:00.5-05:00';
  const m = targetTimePattern.exec(value.trim());
  if (m === null) throw new PgfError('USAGE', `--target-time ${value} is not a time pgforever reads: give a date, a time and a UTC offset, ${example}`);
  const [, year, month, day, hour, minute, second = '0', fraction = '', zulu, sign, offsetHours, offsetMinutes = '0'] = m;
  if (zulu === undefined && sign === undefined) {
    throw new PgfError('USAGE', `--target-time ${value} has no UTC offset, and PostgreSQL would read it in the restored server's time zone: add one, ${example}`);
  }
  const fields = [Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second)] as const;
  const local = Date.UTC(...fields);
  const d = new Date(local);
  const offset = sign === undefined ? 0 : (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes));
  const valid =
    d.getUTCFullYear() === fields[0] && d.getUTCMonth() === fields[1] && d.getUTCDate() === fields[2] && d.getUTCHours() === fields[3] && d.getUTCMinutes() === fields[4] && d.getUTCSeconds() === fields[5] && Number(offsetMinutes) < 60 && Math.abs(offset) < 16 * 60;
  if (!valid) throw new PgfError('USAGE', `--target-time ${value} is not a valid date, time and UTC offset: ${example}`);
  const utc = local - offset * 60_000;
  return { text: `${utcSeconds(utc)}${fraction === '' ? '' : `.${fraction}`}+00`, ms: utc + Number(fraction.padEnd(3, '0').slice(0, 3)) };
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
      lines.push(`recovery_target_time = ${quote(parseTargetTime(target.value).text)}`);
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
