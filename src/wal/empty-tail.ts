/**
 * After an XLOG_SWITCH (archive_timeout, pg_switch_wal, a backup's start and stop) PostgreSQL fills
 * the rest of the segment with empty pages: a short page header (magic, info, timeline, the page's
 * address, remaining length 0) and zeros. That tail is all predictable, so it is stored as nothing
 * and rebuilt on restore, byte for byte: trimming is lossless, whatever ends the segment. A tail
 * that is not exactly this shape (another info value midway, a stray byte) is simply kept.
 *
 * Layout read here (little-endian): the long page header at offset 0 carries xlp_magic (u16 @0),
 * xlp_tli (u32 @4), xlp_pageaddr (u64 @8) and xlp_xlog_blcksz (u32 @36); each later page starts
 * with the 24-byte short header: xlp_magic, xlp_info (u16 @2), xlp_tli, xlp_pageaddr,
 * xlp_rem_len (u32 @16) and 4 bytes of padding.
 */

const LONG_HEADER_BYTES = 40;
const SHORT_HEADER_BYTES = 24;

export interface EmptyTail {
  /** Bytes kept; from here to `emptyFrom` every byte is zero. */
  keep: number;
  /** Page-aligned start of the empty pages (the segment length when there are none). */
  emptyFrom: number;
  /** XLOG_BLCKSZ of the segment. */
  pageSize: number;
  /** xlp_info of every empty page. */
  info: number;
}

let zeros = Buffer.alloc(0);

function isZero(bytes: Buffer): boolean {
  if (zeros.length < bytes.length) zeros = Buffer.alloc(bytes.length);
  return bytes.equals(zeros.subarray(0, bytes.length));
}

function readPageSize(segment: Buffer): number | undefined {
  if (segment.length < LONG_HEADER_BYTES) return undefined;
  const pageSize = segment.readUInt32LE(36);
  const powerOfTwo = pageSize > 0 && (pageSize & (pageSize - 1)) === 0;
  if (!powerOfTwo || pageSize < 1024 || pageSize > 65536 || segment.length % pageSize !== 0) return undefined;
  return pageSize;
}

/**
 * The trimmable end of a segment: empty pages, and before them zeros (the end of the page holding
 * the switch record, or never-written pages of a `.partial` segment). Undefined when there is none.
 */
export function findEmptyTail(segment: Buffer): EmptyTail | undefined {
  const pageSize = readPageSize(segment);
  if (pageSize === undefined) return undefined;
  const magic = segment.readUInt16LE(0);
  const timeline = segment.readUInt32LE(4);
  const start = segment.readBigUInt64LE(8);
  let info: number | undefined;
  let emptyFrom = segment.length;
  for (let at = segment.length - pageSize; at >= pageSize; at -= pageSize) {
    const pageInfo = segment.readUInt16LE(at + 2);
    const empty =
      segment.readUInt16LE(at) === magic &&
      (info === undefined || pageInfo === info) &&
      segment.readUInt32LE(at + 4) === timeline &&
      segment.readBigUInt64LE(at + 8) === start + BigInt(at) &&
      isZero(segment.subarray(at + 16, at + pageSize));
    if (!empty) break;
    info = pageInfo;
    emptyFrom = at;
  }
  let keep = emptyFrom;
  while (keep >= pageSize && isZero(segment.subarray(keep - pageSize, keep))) keep -= pageSize;
  while (keep > 0 && segment[keep - 1] === 0) keep--;
  if (keep === segment.length) return undefined;
  return { keep, emptyFrom, pageSize, info: info ?? 0 };
}

/** The whole segment from its kept bytes (which begin with the long page header). */
export function rebuildEmptyTail(kept: Buffer, tail: EmptyTail, segmentSize: number): Buffer {
  const segment = Buffer.alloc(segmentSize);
  kept.copy(segment);
  const magic = kept.readUInt16LE(0);
  const timeline = kept.readUInt32LE(4);
  const start = kept.readBigUInt64LE(8);
  for (let at = tail.emptyFrom; at < segmentSize; at += tail.pageSize) {
    segment.writeUInt16LE(magic, at);
    segment.writeUInt16LE(tail.info, at + 2);
    segment.writeUInt32LE(timeline, at + 4);
    segment.writeBigUInt64LE(start + BigInt(at), at + 8);
  }
  return segment;
}
