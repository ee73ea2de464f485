/**
 * Trailing zeros of a segment are stored as nothing and padded back on the way out.
 * WAL file names: what archive-push accepts, and the segment after a segment for prefetching.
 */
import { describe, expect, it } from 'vitest';
import { padWithZeros } from '../../src/wal/zero-tail.js';
import { nextSegmentName, parseWalFileName, segmentNumber } from '../../src/wal/names.js';

describe('zero tails', () => {
  const SEGMENT = 1 << 20;

  // Where the zeros start is found natively (crates/core wal::zero_tail_start, tested there).
  it('pads what was stored back to the whole segment exactly', () => {
    for (const end of [0, 1, 40, 8191, 65537, SEGMENT - 1, SEGMENT]) {
      const segment = Buffer.alloc(SEGMENT);
      for (let i = 0; i < end; i++) segment[i] = (i % 251) + 1;
      expect(padWithZeros(segment.subarray(0, end), SEGMENT).equals(segment), String(end)).toBe(true);
    }
  });
});

describe('WAL file names', () => {
  it('knows segments, partial segments, history and backup history files', () => {
    expect(parseWalFileName('000000010000000000000003')).toMatchObject({ kind: 'segment', timeline: '00000001' });
    expect(parseWalFileName('000000020000000100000003.partial')).toMatchObject({ kind: 'partial', timeline: '00000002', segment: '000000020000000100000003' });
    expect(parseWalFileName('00000002.history')).toMatchObject({ kind: 'history', timeline: '00000002' });
    expect(parseWalFileName('000000010000000000000003.00000028.backup')).toMatchObject({ kind: 'backup-history', segment: '000000010000000000000003' });
    for (const name of ['RECOVERYXLOG', '00000001000000000000003', '000000010000000000000003.ready', '../000000010000000000000003']) {
      expect(parseWalFileName(name)).toBeUndefined();
    }
  });

  it('steps to the next segment across log ids for every segment size', () => {
    expect(nextSegmentName('000000010000000000000003', 16 << 20)).toBe('000000010000000000000004');
    expect(nextSegmentName('0000000100000000000000FF', 16 << 20)).toBe('000000010000000100000000');
    expect(nextSegmentName('000000010000000000000FFF', 1 << 20)).toBe('000000010000000100000000');
    expect(nextSegmentName('00000003000000000000003F', 64 << 20)).toBe('000000030000000100000000');
    expect(segmentNumber('000000010000000100000000', 1 << 20)).toBe(4096n);
  });
});
