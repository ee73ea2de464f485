/**
 * Where things lie in the archived WAL (a named restore point, a transaction's end, the last
 * transaction end, the newest segment), from the summaries archive-push stored with or beside each
 * segment; a segment without one is read and summarised here. Knowing the position lets restore pick
 * the newest backup before it, and refuse a target the WAL does not hold before PostgreSQL replays
 * everything to find out.
 */
import { PgfError, isPgfError } from '../errors/index.js';
import { keys, type Repository } from '../repo/index.js';
import { parseLsn, type Lsn } from '../pg/lsn.js';
import { firstFound } from '../concurrency/first-found.js';
import { mapLimit } from '../concurrency/map-limit.js';
import { parseWalFileName, segmentNumber } from './names.js';
import { decodeWalObject, loadWalDescription, loadWalSummary } from './repository.js';
import { previousSegmentName, segmentTail, summarizeSegmentFile, type StoredWalSummary } from './summary.js';

interface SegmentObject {
  key: string;
  size: number;
  name: string;
  number: bigint;
}

/** Segments read at once while searching. */
const searchBatch = 16;

async function loadSegment(repo: Repository, key: string): Promise<Buffer | undefined> {
  try {
    return (await decodeWalObject(key, await repo.storage.read(key))).content;
  } catch (err) {
    if (isPgfError(err, 'STORAGE_NOT_FOUND')) return undefined;
    throw err;
  }
}

/**
 * The segment's stored summary (in its description, or beside it for a segment pushed during a
 * backlog), or one read now: when none was stored (the daemon stopped before it summarised the
 * segment, or the reader could not follow its records), or it lacks the record the segment starts
 * inside (the previous segment was gone when it was summarised), whose end may be the very commit
 * searched for.
 */
async function summaryOf(repo: Repository, segment: SegmentObject): Promise<StoredWalSummary | undefined> {
  const file = parseWalFileName(segment.name)!;
  // A damaged summary object only costs reading the segment again.
  const stored = (await loadWalDescription(repo, segment.key, segment.size)).summary ?? (await loadWalSummary(repo, file).catch(() => undefined));
  if (stored !== undefined && stored.leadingRecordSkipped === undefined) return stored;
  const content = await loadSegment(repo, segment.key);
  const before = previousSegmentName(segment.name, repo.config.walSegmentSize);
  const previous = before === undefined ? undefined : await loadSegment(repo, keys.walSegment(file.timeline, before));
  if (content === undefined) return stored;
  return summarizeSegmentFile(file, content, repo.config, previous && segmentTail(previous)).catch(() => stored);
}

function matches(summary: StoredWalSummary, target: { kind: 'xid' | 'name'; value: string }): string | undefined {
  if (target.kind === 'name') return summary.restorePoints.find(([, name]) => name === target.value)?.[0];
  // recovery_target_xid takes a 32-bit xid or a 64-bit one with its epoch: records carry 32 bits.
  const xid = Number(BigInt(target.value) & 0xffffffffn);
  return summary.transactions.find(([, , x]) => x === xid)?.[0];
}

/**
 * The LSN of the first restore point with the target's name, or of the end of the target
 * transaction, at or after the earliest of the backups' first segments (`backupWalStarts`, segment
 * names). RESTORE_TARGET when the archive does not hold it.
 */
export async function locateTarget(repo: Repository, target: { kind: 'xid' | 'name'; value: string }, backupWalStarts: readonly string[]): Promise<Lsn> {
  if (target.kind === 'xid' && !/^\d+$/.test(target.value)) throw new PgfError('USAGE', `--target-xid ${target.value} is not a transaction id (a whole number)`);
  const segmentSize = repo.config.walSegmentSize;
  const from = Math.min(...backupWalStarts.map((walStart) => Number(segmentNumber(walStart, segmentSize))));
  const segments: SegmentObject[] = [];
  for await (const object of repo.storage.list(keys.wal)) {
    const match = /^wal\/[0-9A-F]{8}\/([0-9A-F]{24}(\.partial)?)\.zst$/.exec(object.key);
    if (!match) continue;
    const number = segmentNumber(match[1]!, segmentSize);
    if (number >= BigInt(from)) segments.push({ key: object.key, size: object.size, name: match[1]!, number });
  }
  // In WAL order; at one position, the older timeline first (it was written first).
  segments.sort((a, b) => (a.number === b.number ? (a.name < b.name ? -1 : 1) : a.number < b.number ? -1 : 1));
  for (let at = 0; at < segments.length; at += searchBatch) {
    const batch = segments.slice(at, at + searchBatch);
    const found = await mapLimit(batch, searchBatch, async (segment) => {
      const summary = await summaryOf(repo, segment);
      return summary === undefined ? undefined : matches(summary, target);
    });
    const lsn = found.find((f) => f !== undefined);
    if (lsn !== undefined) return parseLsn(lsn);
  }
  const what = target.kind === 'name' ? `restore point "${target.value}"` : `transaction ${target.value}`;
  const range = segments.length > 0 ? `segments ${segments[0]!.name} to ${segments[segments.length - 1]!.name}` : 'no segment';
  throw new PgfError('RESTORE_TARGET', `${what} is not in the archived WAL reachable from any backup (${range}): check the name or id, and that archiving works (pgforever info)`);
}

/** An archived segment (not a .partial) as listed. */
export interface ArchivedSegment extends SegmentObject {
  modifiedMs: number;
}

/**
 * The archived segments, newest first (at one position, the later timeline first). One listing of
 * the WAL serves both checks of a restore to a time: on S3 it costs a request per 1000 segments.
 */
export async function archivedSegments(repo: Repository): Promise<ArchivedSegment[]> {
  const segmentSize = repo.config.walSegmentSize;
  const segments: ArchivedSegment[] = [];
  for await (const object of repo.storage.list(keys.wal)) {
    const match = /^wal\/[0-9A-F]{8}\/([0-9A-F]{24})\.zst$/.exec(object.key);
    if (match) segments.push({ key: object.key, size: object.size, name: match[1]!, number: segmentNumber(match[1]!, segmentSize), modifiedMs: object.modifiedMs });
  }
  return segments.sort((a, b) => (a.number === b.number ? (a.name < b.name ? 1 : -1) : a.number < b.number ? 1 : -1));
}

/** The newest archived WAL segment: its name, when it was stored, and the LSN where it ends. */
export async function newestArchivedSegment(repo: Repository, segments?: readonly ArchivedSegment[]): Promise<{ name: string; storedAt: Date; endLsn: bigint } | undefined> {
  const newest = (segments ?? (await archivedSegments(repo)))[0];
  if (newest === undefined) return undefined;
  return { name: newest.name, storedAt: new Date(newest.modifiedMs), endLsn: (newest.number + 1n) * BigInt(repo.config.walSegmentSize) };
}

/** How far back from the newest segment the last transaction end is looked for. */
const lastTransactionSearchSegments = 512;

/**
 * The last transaction end in the archived WAL (looking back from the newest segment), or undefined
 * when the newest segments hold none. Recovery to a time stops at the first transaction that ended
 * after it: a time after the last one can never be reached.
 */
export async function lastArchivedTransaction(
  repo: Repository,
  segments?: readonly ArchivedSegment[],
): Promise<{ time: string; lsn: string; segment: string } | undefined> {
  const recent = (segments ?? (await archivedSegments(repo))).slice(0, lastTransactionSearchSegments);
  // The newest segment nearly always ends a transaction, and a busy segment's description lists
  // tens of thousands (pgbench: 42350 in one, 2.4 MB of JSON; 16 such took 0.63 s to read, one
  // 0.05 s): the search reads one, then a few at a time.
  return firstFound(recent, async (segment) => {
    const summary = await summaryOf(repo, segment);
    const last = summary?.transactions.at(-1);
    return last === undefined ? undefined : { time: last[3], lsn: last[0], segment: segment.name };
  });
}
