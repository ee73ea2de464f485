/**
 * Which backups retention keeps. Every backup is logically full (its manifest names every extent it
 * needs), so any backup can go on its own: there are no chains to keep together.
 */
import { PgfError } from '../errors/index.js';
import type { RetentionSettings } from '../config/index.js';

export interface RetainedBackup {
  id: string;
  stopTime: string;
  permanent: boolean;
}

export interface RetentionDecision {
  keep: { id: string; reasons: string[] }[];
  expire: string[];
  /** Start of the point-in-time window the rules promise, when --retain-pitr-days is set. */
  pitrWindowStart?: string;
}

const dayMs = 86_400_000;

/**
 * Keeps: permanent backups; the newest `retainFull`; those that finished within `retainDays`; for
 * `retainPitrDays`, those that finished within the window plus the newest one before it (the base
 * that reaches the window's start); and always the newest backup. `backups` is oldest first.
 */
export function decideRetention(backups: readonly RetainedBackup[], rules: RetentionSettings, now: number): RetentionDecision {
  const { retainFull, retainDays, retainPitrDays } = rules;
  if (retainFull === undefined && retainDays === undefined && retainPitrDays === undefined) {
    throw new PgfError(
      'USAGE',
      'expire needs a retention rule: pass --retain-full N, --retain-days D or --retain-pitr-days D, or set retention.retainFull/retainDays/retainPitrDays in the config file',
    );
  }
  if (retainFull === 0) throw new PgfError('USAGE', '--retain-full must be at least 1: the newest backup is always kept');
  const reasons = new Map<string, string[]>(backups.map((b) => [b.id, []]));
  const why = (id: string, reason: string) => reasons.get(id)!.push(reason);
  const stopMs = (b: RetainedBackup) => Date.parse(b.stopTime);

  for (const b of backups) if (b.permanent) why(b.id, 'permanent');
  if (retainFull !== undefined) {
    backups
      .filter((b) => !b.permanent)
      .slice(-retainFull)
      .forEach((b) => why(b.id, `one of the newest ${retainFull}`));
  }
  if (retainDays !== undefined) {
    for (const b of backups) if (stopMs(b) >= now - retainDays * dayMs) why(b.id, `finished within ${retainDays} days`);
  }
  let pitrWindowStart: string | undefined;
  if (retainPitrDays !== undefined) {
    const windowStart = now - retainPitrDays * dayMs;
    pitrWindowStart = new Date(windowStart).toISOString();
    const before = backups.filter((b) => stopMs(b) < windowStart);
    const base = before[before.length - 1];
    if (base !== undefined) why(base.id, `reaches the start of the ${retainPitrDays}-day recovery window`);
    for (const b of backups) if (stopMs(b) >= windowStart) why(b.id, `within the ${retainPitrDays}-day recovery window`);
  }
  const newest = backups[backups.length - 1];
  if (newest !== undefined && reasons.get(newest.id)!.length === 0) why(newest.id, 'the newest backup');

  return {
    keep: backups.filter((b) => reasons.get(b.id)!.length > 0).map((b) => ({ id: b.id, reasons: reasons.get(b.id)! })),
    expire: backups.filter((b) => reasons.get(b.id)!.length === 0).map((b) => b.id),
    ...(pitrWindowStart !== undefined ? { pitrWindowStart } : {}),
  };
}
