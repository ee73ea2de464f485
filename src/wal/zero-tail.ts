/**
 * Since PostgreSQL 11, the rest of a segment after an XLOG_SWITCH record (archive_timeout,
 * pg_switch_wal, a backup's start and stop) is written as zeros, page headers included. Trailing
 * zeros are stored as nothing (encodeWalSegmentFile finds where they start) and restored as zeros:
 * lossless whatever the content, so storing a segment does not depend on finding its switch record.
 */

/** `kept` followed by zeros up to `size` bytes. */
export function padWithZeros(kept: Buffer, size: number): Buffer {
  const whole = Buffer.alloc(size);
  kept.copy(whole);
  return whole;
}
