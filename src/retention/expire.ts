/**
 * `pgforever expire`: retention, then WAL no kept backup needs, then garbage collection. Deleting a
 * manifest is what expires a backup; everything after it only frees space, so a run killed at any
 * point leaves a valid repository and the next run finishes the job.
 */
import type { RetentionSettings } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { acquireLease, keys, type Repository } from '../repo/index.js';
import { mapLimit } from '../concurrency/map-limit.js';
import { decideRetention, type RetentionDecision } from './policy.js';
import { listWalObjects, timelineAncestors, unneededWal } from './wal.js';
import { markGarbage, sweepGarbage, type MarkSummary, type SweepSummary } from './gc.js';

export interface ExpireOptions {
  rules: RetentionSettings;
  dryRun: boolean;
  /** A mark is swept once this old. */
  graceMs: number;
  repackBelow: number;
  parallel: number;
  now?: number;
}

export interface ExpireSummary {
  dryRun: boolean;
  backups: RetentionDecision;
  wal: { segmentsRemoved: number; bytesRemoved: number; first?: string; last?: string };
  mark?: MarkSummary;
  sweep?: SweepSummary;
}

export async function runExpire(repo: Repository, log: Logger, options: ExpireOptions): Promise<ExpireSummary> {
  const lease = options.dryRun ? undefined : await acquireLease(repo.storage, 'expire', { command: 'expire' });
  try {
    const now = options.now ?? Date.now();
    const manifests = await mapLimit(await repo.listBackups(), options.parallel, (id) => repo.readManifest(id));
    const decision = decideRetention(manifests, options.rules, now);
    const kept = manifests.filter((m) => !decision.expire.includes(m.id));

    const walObjects = await listWalObjects(repo.storage);
    const ancestors = await timelineAncestors(repo);
    const walGone = unneededWal(walObjects, kept, ancestors, repo.config.walSegmentSize).sort((a, b) => (a.key < b.key ? -1 : 1));
    // A segment's summary stored beside it goes with it, counted in bytes, not as a segment.
    const filesGone = walGone.filter((o) => !o.key.endsWith('.summary.zst'));
    const wal = {
      segmentsRemoved: filesGone.length,
      bytesRemoved: walGone.reduce((n, o) => n + o.size, 0),
      ...(filesGone.length > 0 ? { first: filesGone[0]!.key, last: filesGone[filesGone.length - 1]!.key } : {}),
    };
    if (options.dryRun) return { dryRun: true, backups: decision, wal };

    for (const id of decision.expire) {
      await repo.storage.delete(keys.manifest(id));
      log.info({ backup: id }, 'backup expired');
    }
    await mapLimit(walGone, options.parallel * 4, (o) => repo.storage.delete(o.key));
    const mark = await markGarbage(repo, log, { repackBelow: options.repackBelow, parallel: options.parallel });
    const sweep = await sweepGarbage(repo, log, { graceMs: options.graceMs, parallel: options.parallel * 4, now: Date.now() });
    return { dryRun: false, backups: decision, wal, mark, sweep };
  } finally {
    await lease?.release();
  }
}
