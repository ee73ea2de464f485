/** Write-ahead log positions: `X/Y` text as PostgreSQL prints them, bigint inside. */
import { PgfError } from '../errors/index.js';

export type Lsn = bigint;

export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new PgfError('USAGE', `not an LSN: ${text} (expected the form 0/16B3748)`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The 24-hex-digit WAL file name holding `lsn` on `timeline` (as pg_walfile_name, for a position not on a boundary). */
export function walSegmentName(timeline: number, lsn: Lsn, segmentSize: number): string {
  const segno = lsn / BigInt(segmentSize);
  return walSegmentNameOf(timeline, segno, segmentSize);
}

export function walSegmentNameOf(timeline: number, segno: bigint, segmentSize: number): string {
  const perXlogId = 0x1_0000_0000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perXlogId)}${hex(segno % perXlogId)}`;
}
