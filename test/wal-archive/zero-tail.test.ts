/**
 * Trailing zeros of a segment are stored as nothing: trimming is lossless whatever the content.
 * WAL file names: what archive-push accepts, and the segment after a segment for prefetching.
 */
import { describe, expect, it } from 'vitest';
import { padWithZeros, zeroTailStart } from '../../src/wal/zero-tail.js';
import { nextSegmentName, parseWalFileName, segmentNumber } from '../../src/wal/names.js';

describe('zero tails', () => {
  const SEGMENT = 1 << 20;

  it('finds where the trailing zeros start, at any offset, and pads back exactly', () => {
    for (const end of [0, 1, 40, 8191, 8192, 65535, 65536, 65537, 3 * 65536 + 17, SEGMENT - 1, SEGMENT]) {
      const segment = Buffer.alloc(SEGMENT);
      for (let i = 0; i < end; i++) segment[i] = (i % 251) + 1;
      expect(zeroTailStart(segment), String(end)).toBe(end);
      expect(padWithZeros(segment.subarray(0, end), SEGMENT).equals(segment)).toBe(true);
    }
  });

  it('keeps zeros that are followed by data', () => {
    const segment = Buffer.alloc(SEGMENT);
    segment[10] = 1;
    segment[SEGMENT - 70000] = 2;
    expect(zeroTailStart(segment)).toBe(SEGMENT - 69999);
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
