/** WAL file names as PostgreSQL makes them. */

export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup-history';

export interface WalFileName {
  name: string;
  kind: WalFileKind;
  /** 8 hex digits. */
  timeline: string;
  /** 24 hex digits, for segments, partial segments and backup history files. */
  segment?: string;
}

export function parseWalFileName(name: string): WalFileName | undefined {
  let match = /^([0-9A-F]{8})[0-9A-F]{16}$/.exec(name);
  if (match) return { name, kind: 'segment', timeline: match[1]!, segment: name };
  match = /^(([0-9A-F]{8})[0-9A-F]{16})\.partial$/.exec(name);
  if (match) return { name, kind: 'partial', timeline: match[2]!, segment: match[1]! };
  match = /^([0-9A-F]{8})\.history$/.exec(name);
  if (match) return { name, kind: 'history', timeline: match[1]! };
  match = /^(([0-9A-F]{8})[0-9A-F]{16})\.[0-9A-F]{8}\.backup$/.exec(name);
  if (match) return { name, kind: 'backup-history', timeline: match[2]!, segment: match[1]! };
  return undefined;
}

/** Segment number of a 24-digit segment name for a segment size. */
export function segmentNumber(segment: string, segmentSize: number): bigint {
  const perLogId = 0x1_0000_0000n / BigInt(segmentSize);
  return BigInt(`0x${segment.slice(8, 16)}`) * perLogId + BigInt(`0x${segment.slice(16, 24)}`);
}

/** The name of the segment after `segment` (24 hex digits) on the same timeline. */
export function nextSegmentName(segment: string, segmentSize: number): string {
  const perLogId = 0x1_0000_0000n / BigInt(segmentSize);
  const next = segmentNumber(segment, segmentSize) + 1n;
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${segment.slice(0, 8)}${hex(next / perLogId)}${hex(next % perLogId)}`;
}
