import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeExtentList, encodeExtentList } from '../../src/repo/extent-lists.js';

describe('extent lists', () => {
  it('give back the ids and holes they were made from, ids that start with zero bytes included', () => {
    const startsWithZeros = Buffer.concat([Buffer.alloc(31), Buffer.from([1])]);
    const firstZero = Buffer.concat([Buffer.alloc(1), randomBytes(31)]);
    const extents = [randomBytes(32), null, startsWithZeros, firstZero, null, null, randomBytes(32)];
    const decoded = decodeExtentList(encodeExtentList(extents));
    expect(decoded.map((id) => id?.toString('hex') ?? null)).toEqual(extents.map((id) => id?.toString('hex') ?? null));
  });

  it('decode an empty list to no extents', () => {
    expect(decodeExtentList(encodeExtentList([]))).toEqual([]);
  });
});
