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

  it('loads an encoded delta as adding its entries one by one would, leaving out excluded packs', () => {
    const entries: IndexEntry[] = Array.from({ length: 5000 }, (_, i) => ({
      id: randomBytes(32),
      pack: (i % 3).toString(16).padStart(32, '0'),
      offset: i * 10,
      length: 10,
      rawLength: 131072,
    }));
    const index = new ExtentIndex();
    index.add(entries[1]!);
    const excluded = new Set([entries[2]!.pack]);
    expect(index.addDelta(encodeIndexDelta(entries), excluded)).toEqual([entries[0]!.pack, entries[1]!.pack, entries[2]!.pack]);
    const kept = entries.filter((e) => !excluded.has(e.pack));
    expect(index.size).toBe(kept.length);
    for (const e of kept) expect(index.get(e.id)).toEqual({ pack: e.pack, offset: e.offset, length: e.length, rawLength: e.rawLength });
    expect(index.has(entries[2]!.id)).toBe(false);
    expect([...index.entries()].map((e) => e.idPrefix.toString('hex')).sort()).toEqual(kept.map((e) => e.id.subarray(0, 16).toString('hex')).sort());

    const damaged = encodeIndexDelta(entries.slice(0, 1));
    damaged.writeUInt32LE(7, 4 + 16 + 32);
    expect(() => new ExtentIndex().addDelta(damaged)).toThrow(/names pack 7 of 1/);
  });

  it('round-trips index deltas', () => {
    const entries: IndexEntry[] = [
      { id: randomBytes(32), pack: 'ab'.repeat(16), offset: 0, length: 10, rawLength: 20 },
      { id: randomBytes(32), pack: 'cd'.repeat(16), offset: 10, length: 11, rawLength: 21 },
    ];
    expect(decodeIndexDelta(encodeIndexDelta(entries))).toEqual(entries);
  });
});
