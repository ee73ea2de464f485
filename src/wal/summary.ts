/**
 * What archive-push records about each segment, stored in the segment object's description: the
 * transaction ends and restore points that recovery targets are found by, checkpoints, and the
 * blocks each relation fork had written (with creations, truncations and drops), for incrementals
 * that read only changed blocks. LSNs are PostgreSQL's `X/Y` text, times ISO 8601 with microseconds
 * cut to milliseconds (a target time is compared at PostgreSQL's microseconds by recovery itself).
 */
import { basename, dirname, join } from 'node:path';
import { open } from 'node:fs/promises';
import { summarizeWalSegment, type WalSegmentSummary, type WalTransactionKind } from '../native/index.js';
import { formatLsn, walSegmentNameOf } from '../pg/lsn.js';
import { segmentNumber, type WalFileName } from './names.js';

export const walSummaryFormat = 1;

export interface StoredWalSummary {
  format: number;
  records: number;
  firstRecordLsn?: string;
  lastRecordLsn?: string;
  /** End of valid WAL in the segment, and why it ends there (see WalEndReason). */
  endLsn: string;
  endReason: string;
  switchLsn?: string;
  /** The record the segment starts inside could not be read (its blocks are in no summary). */
  leadingRecordSkipped?: string;
  /** [lsn, kind, xid, time] of each transaction end. */
  transactions: [string, WalTransactionKind, number, string][];
  /** [lsn, name, time]. */
  restorePoints: [string, string, string][];
  /** [lsn, redo, online]. */
  checkpoints: [string, string, boolean][];
  /** [tablespace, database, relation, fork, [first, end, first, end, ...]]: blocks written. */
  blocks: [number, number, number, number, number[]][];
  /** [tablespace, database, relation, fork]: relation files created. */
  creations: [number, number, number, number][];
  /** [tablespace, database, relation, blocks left]. */
  truncations: [number, number, number, number][];
  /** [tablespace, database, relation]: relations whose files a committed or aborted transaction dropped. */
  drops: [number, number, number][];
  /** [tablespace, database] created (files copied without block references when file-copy). */
  databaseCreates: [number, number, 'file-copy' | 'wal-log'][];
  /** Databases dropped, with their tablespaces. */
  databaseDrops: [number, number[]][];
  /** Records that change relation files in ways this summary does not describe. */
  unhandledUpdates: number;
}

const time = (us: number) => new Date(Math.floor(us / 1000)).toISOString();

export function storedSummary(s: WalSegmentSummary): StoredWalSummary {
  return {
    format: walSummaryFormat,
    records: s.records,
    ...(s.firstRecordLsn !== undefined ? { firstRecordLsn: formatLsn(s.firstRecordLsn) } : {}),
    ...(s.lastRecordLsn !== undefined ? { lastRecordLsn: formatLsn(s.lastRecordLsn) } : {}),
    endLsn: formatLsn(s.endLsn),
    endReason: s.endReason,
    ...(s.switchLsn !== undefined ? { switchLsn: formatLsn(s.switchLsn) } : {}),
    ...(s.leadingRecordSkipped !== undefined ? { leadingRecordSkipped: s.leadingRecordSkipped } : {}),
    transactions: s.transactions.map((t) => [formatLsn(t.lsn), t.kind, t.xid, time(t.timeUs)]),
    restorePoints: s.restorePoints.map((r) => [formatLsn(r.lsn), r.name, time(r.timeUs)]),
    checkpoints: s.checkpoints.map((c) => [formatLsn(c.lsn), formatLsn(c.redo), c.online]),
    blocks: s.relations.map((r) => [r.spcOid, r.dbOid, r.relNumber, r.fork, Array.from(r.ranges)]),
    creations: s.creations.map((c) => [c.spcOid, c.dbOid, c.relNumber, c.fork]),
    truncations: s.truncations.map((t) => [t.spcOid, t.dbOid, t.relNumber, t.blocks]),
    drops: s.droppedRelations.map((d) => [d.spcOid, d.dbOid, d.relNumber]),
    databaseCreates: s.databaseCreates.map((d) => [d.spcOid, d.dbOid, d.strategy]),
    databaseDrops: s.databaseDrops.map((d) => [d.dbOid, [...d.spcOids]]),
    unhandledUpdates: s.unhandledSpecialUpdates.length,
  };
}

/** Pages of the previous segment kept for the record a segment starts inside (most are far shorter). */
export const previousTailBytes = 1024 * 1024;

/** The name of the segment before `name` (24 hex digits) on its timeline; undefined for the first. */
export function previousSegmentName(name: string, segmentSize: number): string | undefined {
  const number = segmentNumber(name.slice(0, 24), segmentSize);
  return number === 0n ? undefined : walSegmentNameOf(parseInt(name.slice(0, 8), 16), number - 1n, segmentSize);
}

/** The last `previousTailBytes` of a segment. */
export function segmentTail(content: Buffer): Buffer {
  return content.subarray(Math.max(0, content.length - previousTailBytes));
}

/**
 * The tail of the segment before `path` in the same directory, when PostgreSQL still has it (a
 * checkpoint may have recycled it already); read into `room` when it has the right length.
 */
export async function previousSegmentTail(path: string, segmentSize: number, room?: Buffer): Promise<Buffer | undefined> {
  const previous = previousSegmentName(basename(path), segmentSize);
  if (previous === undefined) return undefined;
  const handle = await open(join(dirname(path), previous), 'r').catch(() => undefined);
  if (handle === undefined) return undefined;
  try {
    const length = Math.min(previousTailBytes, segmentSize);
    const tail = room?.length === length ? room : Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(tail, 0, length, segmentSize - length);
    return bytesRead === length ? tail : undefined;
  } finally {
    await handle.close();
  }
}

/** The summary of a segment (or .partial) file, read with the previous segment's tail when given. */
export async function summarizeSegmentFile(
  file: WalFileName,
  content: Buffer,
  config: { pgMajor: number; walSegmentSize: number; systemIdentifier: string },
  previous?: Buffer,
): Promise<StoredWalSummary> {
  const summary = await summarizeWalSegment(
    content,
    {
      segmentSize: config.walSegmentSize,
      pgMajor: config.pgMajor,
      timeline: parseInt(file.timeline, 16),
      segmentNo: segmentNumber(file.segment!, config.walSegmentSize),
      systemIdentifier: config.systemIdentifier,
    },
    previous !== undefined ? { previous } : {},
  );
  return storedSummary(summary);
}
