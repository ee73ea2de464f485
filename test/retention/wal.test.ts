import { describe, expect, it } from 'vitest';
import { unneededWal, type WalObject } from '../../src/retention/wal.js';

const size = 16 << 20;
const seg = (tl: number, n: number) => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const object = (tl: number, n: number, suffix = ''): WalObject => ({ key: `wal/${seg(tl, 0).slice(0, 8)}/${seg(tl, n)}${suffix}.zst`, timeline: tl, segment: seg(tl, n), size: 100 });

describe('unneededWal', () => {
  // Timeline 1: segments 1..10; timeline 2 branched from 1 in segment 8: segments 8..12; timeline 3
  // branched from 1 earlier and is not a descendant of 2.
  const objects = [
    ...Array.from({ length: 10 }, (_, i) => object(1, i + 1)),
    object(1, 8, '.partial'),
    object(1, 5, '.00000028.backup'),
    ...Array.from({ length: 5 }, (_, i) => object(2, i + 8)),
    object(3, 4),
  ];
  const ancestors = new Map([
    [2, [1]],
    [3, [1]],
  ]);

  it('removes WAL before the oldest kept backup on its timeline and keeps descendant timelines whole', () => {
    const gone = unneededWal(objects, [{ timeline: 1, walStart: seg(1, 5) }], ancestors, size).map((o) => o.key);
    expect(gone).toEqual([object(1, 1).key, object(1, 2).key, object(1, 3).key, object(1, 4).key]);
  });

  it('removes a sibling timeline and the parent when the only kept backup is on the child', () => {
    const gone = unneededWal(objects, [{ timeline: 2, walStart: seg(2, 10) }], ancestors, size).map((o) => o.key);
    expect(gone).toContain(object(1, 10).key);
    expect(gone).toContain(object(3, 4).key);
    expect(gone).toContain(object(2, 9).key);
    expect(gone).not.toContain(object(2, 10).key);
    expect(gone).not.toContain(object(2, 12).key);
  });

  it('removes nothing when no backup is kept', () => {
    expect(unneededWal(objects, [], ancestors, size)).toEqual([]);
  });
});
