/**
 * summarizeWalSegment without a server: a hand-made segment (one record, then an XLOG_SWITCH), and input
 * that is not WAL at all (random bytes, another version's magic, a cut or overlong buffer), which must
 * reject with WAL_INVALID and never take the process down.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PgfError } from '../../src/errors/index.js';
import { crc32cAppend, summarizeWalSegment, type WalSegmentContext } from '../../src/native/index.js';

const MIB = 1 << 20;
const SYSID = 7301234567890123456n;
const context: WalSegmentContext = { segmentSize: MIB, pgMajor: 16, timeline: 1, segmentNo: 5n, systemIdentifier: SYSID.toString() };
const start = 5n * BigInt(MIB);

function record(rmid: number, info: number, xid: number, prev: bigint, body: Buffer): Buffer {
  const rec = Buffer.alloc(24 + body.length);
  rec.writeUInt32LE(rec.length, 0);
  rec.writeUInt32LE(xid, 4);
  rec.writeBigUInt64LE(prev, 8);
  rec[16] = info;
  rec[17] = rmid;
  body.copy(rec, 24);
  rec.writeUInt32LE(crc32cAppend(crc32cAppend(0, body), rec.subarray(0, 20)), 20);
  return rec;
}

/** A 1 MiB PostgreSQL 16 segment: long header, a heap insert on 1663/5/16384 block 3, an XLOG_SWITCH. */
function segment(): { bytes: Buffer; insert: bigint; switchAt: bigint } {
  const bytes = Buffer.alloc(MIB);
  bytes.writeUInt16LE(0xd113, 0);
  bytes.writeUInt16LE(0x0002, 2); // XLP_LONG_HEADER
  bytes.writeUInt32LE(1, 4);
  bytes.writeBigUInt64LE(start, 8);
  bytes.writeBigUInt64LE(SYSID, 24);
  bytes.writeUInt32LE(MIB, 32);
  bytes.writeUInt32LE(8192, 36);
  // Block 0 (HAS_DATA, 2 bytes) of 1663/5/16384 block 3, then 3 bytes of main data.
  const body = Buffer.from([0, 0x20, 2, 0, 0x7f, 6, 0, 0, 5, 0, 0, 0, 0, 0x40, 0, 0, 3, 0, 0, 0, 255, 3, 9, 9, 1, 2, 3]);
  const insert = start + 40n;
  const first = record(10, 0x00, 731, start - 200n, body);
  first.copy(bytes, 40);
  const switchAt = insert + BigInt((first.length + 7) & ~7);
  record(0, 0x40, 0, insert, Buffer.alloc(0)).copy(bytes, Number(switchAt - start));
  return { bytes, insert, switchAt };
}

async function rejection(promise: Promise<unknown>): Promise<PgfError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PgfError);
  return err as PgfError;
}

describe('summarizeWalSegment', () => {
  it('summarises a hand-made segment', async () => {
    const { bytes, insert, switchAt } = segment();
    const s = await summarizeWalSegment(bytes, context);
    expect(s.records).toBe(2);
    expect(s.firstRecordLsn).toBe(insert);
    expect(s.switchLsn).toBe(switchAt);
    expect(s.endReason).toBe('switch');
    expect(s.endLsn).toBe(switchAt + 24n);
    expect(s.systemIdentifier).toBe(SYSID.toString());
    expect(s.rmgrs.map((r) => [r.name, r.records])).toEqual([
      ['XLOG', 1],
      ['Heap', 1],
    ]);
    expect(s.types.map((t) => t.name)).toEqual(['XLOG/SWITCH', 'Heap/INSERT']);
    expect(s.relations).toHaveLength(1);
    const [rel] = s.relations;
    expect([rel!.spcOid, rel!.dbOid, rel!.relNumber, rel!.fork, Array.from(rel!.ranges)]).toEqual([1663, 5, 16384, 0, [3, 4]]);
  });

  it('stops at damage instead of failing', async () => {
    const { bytes, insert } = segment();
    bytes[Number(insert - start) + 30]! ^= 1;
    const s = await summarizeWalSegment(bytes, context);
    expect(s.records).toBe(0);
    expect(s.endReason).toBe('crc');
    expect(s.endLsn).toBe(insert);
  });

  it('rejects what is not this segment with WAL_INVALID', async () => {
    const { bytes } = segment();
    for (let i = 0; i < 20; i++) {
      const err = await rejection(summarizeWalSegment(randomBytes(MIB), context));
      expect(err.code).toBe('WAL_INVALID');
    }
    const v15 = Buffer.from(bytes);
    v15.writeUInt16LE(0xd110, 0);
    expect((await rejection(summarizeWalSegment(v15, context))).message).toMatch(/PostgreSQL 15's/);
    for (const cut of [0, 1, 40, 8192, MIB - 1]) {
      expect((await rejection(summarizeWalSegment(bytes.subarray(0, cut), context))).code).toBe('WAL_INVALID');
    }
    expect((await rejection(summarizeWalSegment(Buffer.concat([bytes, bytes]), context))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(bytes, { ...context, systemIdentifier: '42' }))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(bytes, { ...context, segmentNo: 6n }))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(bytes, { ...context, pgMajor: 13 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(summarizeWalSegment(bytes, { ...context, systemIdentifier: 'x' }))).code).toBe('INVALID_ARGUMENT');
    // Still alive and still right after all that.
    expect((await summarizeWalSegment(bytes, context)).records).toBe(2);
  });
});
