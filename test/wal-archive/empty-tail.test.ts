/**
 * Trimming the end of a segment is lossless whatever the segment holds: rebuilt bytes always equal
 * the original, and only the predictable shapes (zeros, empty pages) are trimmed.
 */
import { describe, expect, it } from 'vitest';
import { findEmptyTail, rebuildEmptyTail } from '../../src/wal/empty-tail.js';
import { nextSegmentName, parseWalFileName, segmentNumber } from '../../src/wal/names.js';

const PAGE = 8192;
const SEGMENT = 1 << 20;
const START = 0x2a00000n;

/** A segment whose first `written` bytes hold records, then `shape` fills the rest. */
function segment(written: number, shape: 'zeros' | 'empty-pages' | 'junk', info = 0): Buffer {
  const seg = Buffer.alloc(SEGMENT);
  for (let at = 0; at < SEGMENT; at += PAGE) {
    seg.writeUInt16LE(0xd110, at);
    seg.writeUInt16LE(at === 0 ? 2 : info, at + 2);
    seg.writeUInt32LE(1, at + 4);
    seg.writeBigUInt64LE(START + BigInt(at), at + 8);
  }
  seg.writeBigUInt64LE(7300000000000000001n, 24);
  seg.writeUInt32LE(SEGMENT, 32);
  seg.writeUInt32LE(PAGE, 36);
  for (let i = 40; i < written; i++) if (i % PAGE >= 24) seg[i] = (i * 7 + 3) & 0xff || 1;
  const firstFree = Math.ceil(written / PAGE) * PAGE;
  if (shape === 'zeros') seg.fill(0, written);
  if (shape === 'empty-pages') seg.fill(0, written, firstFree);
  if (shape === 'junk') for (let i = written; i < SEGMENT; i++) seg[i] = i & 0xff;
  return seg;
}

function roundTrip(seg: Buffer) {
  const tail = findEmptyTail(seg);
  if (tail !== undefined) expect(rebuildEmptyTail(seg.subarray(0, tail.keep), tail, seg.length).equals(seg)).toBe(true);
  return tail;
}

describe('empty segment tails', () => {
  it('trims the empty pages after a switch, with the zeros of the last written page', () => {
    for (const info of [0, 4]) {
      const tail = roundTrip(segment(3 * PAGE + 1000, 'empty-pages', info));
      expect(tail).toEqual({ keep: 3 * PAGE + 1000, emptyFrom: 4 * PAGE, pageSize: PAGE, info });
    }
  });

  it('trims plain zeros (a new file, or the unwritten end of a .partial segment)', () => {
    expect(roundTrip(segment(5 * PAGE + 100, 'zeros'))).toMatchObject({ keep: 5 * PAGE + 100, emptyFrom: SEGMENT });
    expect(roundTrip(segment(5 * PAGE, 'zeros'))).toMatchObject({ keep: 5 * PAGE, emptyFrom: SEGMENT });
  });

  it('keeps what is not predictable', () => {
    expect(roundTrip(segment(SEGMENT, 'junk'))).toBeUndefined();
    expect(roundTrip(segment(3 * PAGE, 'junk'))).toBeUndefined();
    const mixedInfo = segment(3 * PAGE, 'empty-pages');
    mixedInfo.writeUInt16LE(4, 60 * PAGE + 2);
    expect(roundTrip(mixedInfo)).toMatchObject({ emptyFrom: 61 * PAGE });
    const stray = segment(3 * PAGE, 'empty-pages');
    stray[100 * PAGE + 5000] = 1;
    expect(roundTrip(stray)).toMatchObject({ keep: 100 * PAGE + 5001, emptyFrom: 101 * PAGE });
    const wrongAddress = segment(3 * PAGE, 'empty-pages');
    wrongAddress.writeBigUInt64LE(0n, 127 * PAGE + 8);
    expect(roundTrip(wrongAddress)).toMatchObject({ emptyFrom: SEGMENT });
  });

  it('leaves input that is no segment alone', () => {
    expect(findEmptyTail(Buffer.alloc(20))).toBeUndefined();
    expect(findEmptyTail(Buffer.alloc(SEGMENT))).toBeUndefined();
    const oddPage = segment(PAGE, 'zeros');
    oddPage.writeUInt32LE(3000, 36);
    expect(findEmptyTail(oddPage)).toBeUndefined();
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
