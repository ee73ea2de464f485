import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ExtentIndex, decodeIndexDelta, encodeIndexDelta, type IndexEntry } from '../../src/repo/extent-index.js';

describe('ExtentIndex', () => {
  it('finds every added extent across growths and nothing else', () => {
    const index = new ExtentIndex();
    const entries: IndexEntry[] = Array.from({ length: 50_000 }, (_, i) => ({
      id: randomBytes(32),
      pack: (i % 7).toString(16).padStart(32, '0'),
      offset: i * 100,
      length: 100 + (i % 13),
      rawLength: 131072,
    }));
    for (const e of entries) index.add(e);
    index.add(entries[0]!);
    expect(index.size).toBe(entries.length);
    for (const e of entries) expect(index.get(e.id)).toEqual({ pack: e.pack, offset: e.offset, length: e.length, rawLength: e.rawLength });
    for (let i = 0; i < 1000; i++) expect(index.has(randomBytes(32))).toBe(false);
    expect(index.packs).toHaveLength(7);
  });

  it('round-trips index deltas', () => {
    const entries: IndexEntry[] = [
      { id: randomBytes(32), pack: 'ab'.repeat(16), offset: 0, length: 10, rawLength: 20 },
      { id: randomBytes(32), pack: 'cd'.repeat(16), offset: 10, length: 11, rawLength: 21 },
    ];
    expect(decodeIndexDelta(encodeIndexDelta(entries))).toEqual(entries);
  });
});
