/**
 * The checks archive-push makes on a segment's first page before storing it: the long page header
 * must carry the repository's system identifier, segment size and a WAL format of its PostgreSQL
 * version, and the timeline and address the file name promises.
 */
import { PgfError } from '../errors/index.js';
import { segmentNumber } from './names.js';

/** XLOG_PAGE_MAGIC of each supported major version. */
export const walPageMagic: Readonly<Record<number, number>> = { 14: 0xd10d, 15: 0xd110, 16: 0xd113, 17: 0xd116, 18: 0xd118 };

const XLP_LONG_HEADER = 0x0002;

export interface SegmentExpectations {
  name: string;
  systemIdentifier: string;
  pgMajor: number;
  segmentSize: number;
}

/** `head` is the start of the file (at least its 40-byte long page header), `size` its length. */
export function checkSegmentHeader(head: Buffer, size: number, expect: SegmentExpectations): void {
  const bad = (what: string) => new PgfError('WAL_INVALID', `${expect.name} is not a valid WAL segment for this repository: ${what}; nothing was archived`);
  if (size !== expect.segmentSize) throw bad(`it holds ${size} bytes, the cluster's segments hold ${expect.segmentSize}`);
  const magic = head.readUInt16LE(0);
  const info = head.readUInt16LE(2);
  const timeline = head.readUInt32LE(4);
  const pageAddress = head.readBigUInt64LE(8);
  const systemIdentifier = head.readBigUInt64LE(24).toString();
  const segmentSize = head.readUInt32LE(32);
  if (magic !== walPageMagic[expect.pgMajor]) {
    const other = Object.entries(walPageMagic).find(([, m]) => m === magic)?.[0];
    throw bad(other ? `it was written by PostgreSQL ${other}, the repository is for ${expect.pgMajor}` : `page magic 0x${magic.toString(16)} is not PostgreSQL's`);
  }
  if ((info & XLP_LONG_HEADER) === 0) throw bad('its first page has no long header');
  if (systemIdentifier !== expect.systemIdentifier) throw bad(`system identifier ${systemIdentifier}, the repository belongs to ${expect.systemIdentifier}`);
  if (segmentSize !== expect.segmentSize) throw bad(`segment size ${segmentSize}`);
  const nameTimeline = parseInt(expect.name.slice(0, 8), 16);
  // The first segment of a new timeline starts with a copy of its parent's pages, which keep the
  // parent's timeline id: a lower id is expected there, a higher one never.
  if (timeline > nameTimeline || timeline === 0) throw bad(`its header says timeline ${timeline}`);
  const expectedAddress = segmentNumber(expect.name.slice(0, 24), expect.segmentSize) * BigInt(expect.segmentSize);
  if (pageAddress !== expectedAddress) throw bad(`its header says it starts at ${pageAddress.toString(16)}, its name says ${expectedAddress.toString(16)}`);
}
