/**
 * Since PostgreSQL 11, the rest of a segment after an XLOG_SWITCH record (archive_timeout,
 * pg_switch_wal, a backup's start and stop) is written as zeros, page headers included. Trailing
 * zeros are stored as nothing and restored as zeros: lossless whatever the content, so storing a
 * segment does not depend on finding its switch record.
 */

const WINDOW = 64 * 1024;
const zeros = Buffer.alloc(WINDOW);

/** The length of `content` without its trailing zeros. */
export function zeroTailStart(content: Buffer): number {
  let end = content.length;
  while (end >= WINDOW && content.subarray(end - WINDOW, end).equals(zeros)) end -= WINDOW;
  while (end > 0 && content[end - 1] === 0) end--;
  return end;
}

/** `kept` followed by zeros up to `size` bytes. */
export function padWithZeros(kept: Buffer, size: number): Buffer {
  const whole = Buffer.alloc(size);
  kept.copy(whole);
  return whole;
}
