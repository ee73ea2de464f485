import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PgfError, type ErrorCode } from '../../src/errors/index.js';
import { DIRECT_IO_ALIGNMENT } from '../../src/storage/file-writes.js';
import {
  EXTENT_BYTES,
  alignedBuffer,
  alignmentOffset,
  EXTENT_ID_BYTES,
  EXTENT_PAGES,
  FRAME_HEADER_BYTES,
  PAGE_SIZE,
  compressExtents,
  compressFrame,
  compressFrames,
  crc32cAppend,
  crc32cConcat,
  decompressFrame,
  frameBound,
  decompressIdentifiedExtentsInto,
  decompressFrames,
  extentId,
  extentIds,
  pageChecksum,
  parsePageHeader,
  readFrameHeader,
  scanAndIdentifyExtents,
  scanExtents,
  verifyPage,
  verifyPages,
} from '../../src/native/index.js';

/** A heap page from a PostgreSQL 15 cluster with data checksums, read from relation block 1000. */
const HEAP_PAGE = readFileSync(
  fileURLToPath(new URL('../../crates/core/src/page/testdata/heap-1000.page', import.meta.url)),
);
const HEAP_BLOCK = 1000;
const KEY = Buffer.alloc(32, 7);

/** The real heap page with LSN `lsn` and a valid checksum for `block`. */
function page(lsn: bigint, block: number): Buffer {
  const copy = Buffer.from(HEAP_PAGE);
  copy.writeUInt32LE(Number(lsn >> 32n), 0);
  copy.writeUInt32LE(Number(lsn & 0xffffffffn), 4);
  copy.writeUInt16LE(pageChecksum(copy, block), 8);
  return copy;
}

/** Pages from `firstBlock` on; `lsnOf(i)` null makes page i all zero. */
function chunk(firstBlock: number, count: number, lsnOf: (i: number) => bigint | null): Buffer {
  return Buffer.concat(
    Array.from({ length: count }, (_, i) => {
      const lsn = lsnOf(i);
      return lsn === null ? Buffer.alloc(PAGE_SIZE) : page(lsn, firstBlock + i);
    }),
  );
}

async function codeOf(promise: Promise<unknown>): Promise<ErrorCode> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PgfError);
  return (err as PgfError).code;
}

function syncCodeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PgfError);
    return (err as PgfError).code;
  }
  throw new Error('expected an error');
}

/** CRC-32C (Castagnoli), to re-seal frame headers a test edits on purpose. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Byte equality without vitest's element-by-element deep comparison (slow on 128 KiB buffers). */
function expectSameBytes(actual: readonly Buffer[], expected: readonly Buffer[]): void {
  expect(actual.map((b) => b.length)).toEqual(expected.map((b) => b.length));
  actual.forEach((bytes, i) => expect(bytes.equals(expected[i]!), `piece ${i}`).toBe(true));
}

function reseal(frame: Buffer): void {
  frame.writeUInt32LE(crc32c(frame.subarray(0, 20)), 20);
}

describe('constants', () => {
  it('describe PostgreSQL pages and 128 KiB extents', () => {
    expect(PAGE_SIZE).toBe(8192);
    expect(EXTENT_PAGES).toBe(16);
    expect(EXTENT_BYTES).toBe(131072);
    expect(FRAME_HEADER_BYTES).toBe(24);
  });
});

describe('pages', () => {
  it('computes the checksum PostgreSQL stored in a real page', () => {
    const header = parsePageHeader(HEAP_PAGE);
    expect(header.pageSize).toBe(8192);
    expect(header.layoutVersion).toBe(4);
    expect(header.lsn).toBe(BigInt(HEAP_PAGE.readUInt32LE(4)));
    expect(pageChecksum(HEAP_PAGE, HEAP_BLOCK)).toBe(header.checksum);
    expect(verifyPage(HEAP_PAGE, HEAP_BLOCK, { checksums: true })).toEqual({ verdict: 'valid' });
  });

  it('reports a page read at the wrong block as a checksum mismatch', () => {
    const check = verifyPage(HEAP_PAGE, HEAP_BLOCK + 1, { checksums: true });
    expect(check.verdict).toBe('checksum-mismatch');
    expect(check.found).toBe(parsePageHeader(HEAP_PAGE).checksum);
    expect(check.expected).toBe(pageChecksum(HEAP_PAGE, HEAP_BLOCK + 1));
    expect(verifyPage(Buffer.alloc(PAGE_SIZE), 0, { checksums: true }).verdict).toBe('all-zero');
  });

  it('decodes LSNs above 2^32 as bigint', () => {
    expect(parsePageHeader(page(0x1_0000_0028n, 5)).lsn).toBe(0x1_0000_0028n);
  });

  it('rejects short and misaligned buffers with BUFFER_LENGTH', async () => {
    expect(syncCodeOf(() => parsePageHeader(Buffer.alloc(23)))).toBe('BUFFER_LENGTH');
    expect(syncCodeOf(() => pageChecksum(Buffer.alloc(PAGE_SIZE - 1), 0))).toBe('BUFFER_LENGTH');
    expect(await codeOf(verifyPages(Buffer.alloc(PAGE_SIZE + 1), 0))).toBe('BUFFER_LENGTH');
    expect(syncCodeOf(() => pageChecksum(HEAP_PAGE, -1))).toBe('INVALID_ARGUMENT');
  });

  it('verifies a buffer of pages and names the corrupt block', async () => {
    const first = 131072 + 32; // second segment file of a relation
    const buffer = chunk(first, 8, (i) => (i === 6 ? null : 0x9000n + BigInt(i)));
    buffer[3 * PAGE_SIZE + 5000]! ^= 0x40;
    const failures = await verifyPages(buffer, first);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ block: first + 3, lsn: 0x9003n });
    expect(failures[0]!.found).toBe(parsePageHeader(buffer.subarray(3 * PAGE_SIZE)).checksum);
    expect(await verifyPages(buffer, first, { skipFromLsn: 0x9003n })).toEqual([]);
  });
});

describe('extent scan', () => {
  it('without a parent marks every extent changed and identifies the non-zero ones', async () => {
    // two full extents and a short one; the middle one all zero
    const data = chunk(0, 40, (i) => (i >= 16 && i < 32 ? null : 0x5000n + BigInt(i)));
    const result = await scanAndIdentifyExtents(data, { firstBlock: 0, verifyChecksums: true }, KEY);
    expect(result.checksumFailures).toEqual([]);
    expect(result.extents.map((e) => [e.index, e.firstBlock, e.pages, e.changed, e.allZero])).toEqual([
      [0, 0, 16, true, false],
      [1, 16, 16, true, true],
      [2, 32, 8, true, false],
    ]);
    expect(result.extents[0]!.maxLsn).toBe(0x5000n + 15n);
    expect(result.extents[1]!.id).toBeNull();
    expect(result.extents[0]!.id).toEqual(extentId(data.subarray(0, EXTENT_BYTES), KEY));
    expect(result.extents[2]!.id).toEqual(extentId(data.subarray(2 * EXTENT_BYTES), KEY));
    expect(result.extents[2]!.id).toHaveLength(EXTENT_ID_BYTES);
  });

  it('leaves extents older than the parent unchanged and unhashed', async () => {
    const since = 0x3_0000_0000_0000n; // above 2^53: must travel as bigint
    const data = chunk(64, 32, (i) => (i < 16 ? since - 1n : since));
    const options = { firstBlock: 64, changedSince: since, verifyChecksums: false };
    const scan = await scanExtents(data, options);
    expect(scan.extents.map((e) => e.changed)).toEqual([false, true]);
    expect(scan.extents.map((e) => e.maxLsn)).toEqual([since - 1n, since]);
    const identified = await scanAndIdentifyExtents(data, options, KEY);
    expect(identified.extents.map((e) => e.id === null)).toEqual([true, false]);
  });

  it('reports checksum failures below the backup start only', async () => {
    const data = chunk(16, 16, (i) => (i === 2 ? 0x8000n : 0x100n));
    data[2 * PAGE_SIZE + 100]! ^= 1;
    data[9 * PAGE_SIZE + 100]! ^= 1;
    const scan = await scanExtents(data, { firstBlock: 16, verifyChecksums: true, backupStart: 0x8000n });
    expect(scan.checksumFailures.map((f) => f.block)).toEqual([25]);
  });

  it('rejects bad arguments with INVALID_ARGUMENT', async () => {
    const data = chunk(0, 16, () => 1n);
    expect(await codeOf(scanExtents(data, { firstBlock: 8, verifyChecksums: false }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(scanExtents(data, { firstBlock: -16, verifyChecksums: false }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(scanExtents(data, { firstBlock: 0, changedSince: -1n, verifyChecksums: false }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(scanExtents(data, { firstBlock: 0, changedSince: 1n << 64n, verifyChecksums: false }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(scanAndIdentifyExtents(data, { firstBlock: 0, verifyChecksums: false }, Buffer.alloc(31)))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(scanExtents(data.subarray(1), { firstBlock: 0, verifyChecksums: false }))).toBe('BUFFER_LENGTH');
  });

  it('cuts any data into 128 KiB pieces for ids', async () => {
    const data = Buffer.alloc(EXTENT_BYTES * 2 + 10, 3);
    const ids = await extentIds(data, KEY);
    expect(ids).toHaveLength(3);
    expect(ids[0]).toEqual(ids[1]);
    expect(ids[2]).toEqual(extentId(data.subarray(2 * EXTENT_BYTES), KEY));
    expect(ids[0]).not.toEqual(extentId(data.subarray(0, EXTENT_BYTES), Buffer.alloc(32, 8)));
    expect(await extentIds(Buffer.alloc(0), KEY)).toEqual([]);
  });
});

describe('frames', () => {
  const raw = Buffer.concat(Array.from({ length: 16 }, () => HEAP_PAGE));

  it('round-trip and describe themselves', async () => {
    const frame = await compressFrame(raw, 3);
    expect(frame.subarray(0, 4).toString('latin1')).toBe('PGFZ');
    const header = readFrameHeader(frame);
    expect(header).toMatchObject({ version: 1, storedRaw: false, level: 3, rawLength: raw.length });
    expect(header.frameLength).toBe(frame.length);
    expect(header.payloadLength).toBe(frame.length - FRAME_HEADER_BYTES);
    expect(header.rawCrc32c).toBe(crc32c(raw));
    expect(readFrameHeader(frame.subarray(0, FRAME_HEADER_BYTES))).toEqual(header);
    expectSameBytes([await decompressFrame(frame)], [raw]);
  });

  it('store incompressible data raw', async () => {
    const noise = randomBytes(4096);
    const frame = await compressFrame(noise, 19);
    expect(readFrameHeader(frame).storedRaw).toBe(true);
    expectSameBytes([await decompressFrame(frame)], [noise]);
  });

  it('bound the room a frame needs, and refuse lengths no frame holds', async () => {
    expect(frameBound(raw.length)).toBeGreaterThan(raw.length);
    expect(await codeOf(Promise.resolve().then(() => frameBound(2 ** 31)))).toBe('INVALID_ARGUMENT');
  });

  it('accept zstd levels 1..19 only', async () => {
    for (const level of [0, 20, -1, 2.5]) {
      expect(await codeOf(compressFrame(raw, level))).toBe('INVALID_ARGUMENT');
    }
    expect(await codeOf(compressFrames([raw], 22))).toBe('INVALID_ARGUMENT');
  });

  it('refuse damaged, truncated and newer frames with their codes', async () => {
    const frame = await compressFrame(raw, 1);
    const flipped = Buffer.from(frame);
    flipped[frame.length - 5]! ^= 0xff;
    expect(await codeOf(decompressFrame(flipped))).toBe('FRAME_CORRUPT');
    const lengthEdited = Buffer.from(frame);
    lengthEdited[9]! ^= 1;
    expect(await codeOf(decompressFrame(lengthEdited))).toBe('FRAME_CORRUPT');
    expect(await codeOf(decompressFrame(frame.subarray(0, frame.length - 1)))).toBe('FRAME_TRUNCATED');
    expect(await codeOf(decompressFrame(frame.subarray(0, 10)))).toBe('FRAME_TRUNCATED');
    expect(await codeOf(decompressFrame(Buffer.concat([frame, Buffer.alloc(1)])))).toBe('FRAME_CORRUPT');
    const newer = Buffer.from(frame);
    newer[4] = 2;
    reseal(newer);
    expect(await codeOf(decompressFrame(newer))).toBe('FRAME_VERSION');
    expect(syncCodeOf(() => readFrameHeader(newer))).toBe('FRAME_VERSION');
    expect(syncCodeOf(() => readFrameHeader(Buffer.from('not a frame at all, no')))).toBe('FRAME_CORRUPT');
  });

  it('compress and decompress in batches', async () => {
    const pieces = [raw, Buffer.alloc(0), Buffer.from('a short one')];
    const frames = await compressFrames(pieces, 6);
    expect(frames).toHaveLength(3);
    expect(frames.map((f) => readFrameHeader(f).rawLength)).toEqual([raw.length, 0, 11]);
    expectSameBytes(await decompressFrames(frames), pieces);
    // Frames laid end to end (as in a pack) can be walked by their headers.
    const pack = Buffer.concat(frames);
    const walked: Buffer[] = [];
    for (let at = 0; at < pack.length; at += readFrameHeader(pack.subarray(at)).frameLength) {
      walked.push(pack.subarray(at, at + readFrameHeader(pack.subarray(at)).frameLength));
    }
    expectSameBytes(await decompressFrames(walked), pieces);
  });

  it('decompress extents into a reused buffer, each checked against its id', async () => {
    const key = randomBytes(32);
    const pieces = [raw, Buffer.from('a short one')];
    const frames = await compressFrames(pieces, 1);
    // As a pack holds them: frames with a gap between them (another extent, not asked for).
    const gap = Buffer.alloc(100, 7);
    const packed = Buffer.concat([frames[0]!, gap, frames[1]!]);
    const bounds = new Uint32Array([0, frames[0]!.length, frames[0]!.length + gap.length, frames[1]!.length]);
    const ids = pieces.map((p) => extentId(p, key));
    const out = Buffer.alloc(raw.length + 11);
    const { extents, crc32c } = await decompressIdentifiedExtentsInto(packed, bounds, ids, key, out);
    expectSameBytes(extents, pieces);
    expect(extents[0]!.buffer).toBe(out.buffer);
    expect([...crc32c]).toEqual(pieces.map((p) => crc32cAppend(0, p)));
    // Intact frames under each other's ids (an index pointing at the wrong frame).
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, bounds, [ids[1]!, ids[0]!], key, out))).toBe('FRAME_CORRUPT');
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, bounds, ids, randomBytes(32), out))).toBe('FRAME_CORRUPT');
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, bounds, ids, key, Buffer.alloc(raw.length)))).toBe('BUFFER_LENGTH');
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, bounds, ids.slice(1), key, out))).toBe('INVALID_ARGUMENT');
    // Bounds that point into the gap, past the end, or come unpaired.
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, new Uint32Array([frames[0]!.length, 50]), ids.slice(0, 1), key, out))).toBe('FRAME_CORRUPT');
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, new Uint32Array([1, packed.length]), ids.slice(0, 1), key, out))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(decompressIdentifiedExtentsInto(packed, new Uint32Array([0]), ids.slice(0, 1), key, out))).toBe('INVALID_ARGUMENT');
  });

  it('allocate buffers aligned for direct I/O', () => {
    for (const bytes of [1, 4096, 3 * EXTENT_BYTES + 17]) {
      const buffer = alignedBuffer(bytes, DIRECT_IO_ALIGNMENT);
      expect(buffer.length).toBe(bytes);
      expect(alignmentOffset(buffer, DIRECT_IO_ALIGNMENT)).toBe(0);
    }
    const misaligned = alignedBuffer(8192, DIRECT_IO_ALIGNMENT).subarray(100);
    expect(alignmentOffset(misaligned, 4096)).toBe(4096 - 100);
    expect(alignmentOffset(misaligned, 4)).toBe(0);
    expect(() => alignmentOffset(misaligned, 1000)).toThrow(/power of two/);
  });

  it('join the CRC-32Cs of pieces into the CRC of the whole', () => {
    const cuts = [0, 1000, 1000, 70_000, raw.length];
    const pieces = cuts.slice(1).map((end, i) => raw.subarray(cuts[i], end));
    const crcs = new Uint32Array(pieces.map((p) => crc32cAppend(0, p)));
    const lengths = new Uint32Array(pieces.map((p) => p.length));
    expect(crc32cConcat(crcs, lengths)).toBe(crc32cAppend(0, raw));
    expect(crc32cConcat(new Uint32Array(0), new Uint32Array(0))).toBe(crc32cAppend(0, Buffer.alloc(0)));
    expect(() => crc32cConcat(crcs, lengths.subarray(1))).toThrow(/INVALID_ARGUMENT|as many lengths/);
  });

  it('compress chosen extents of a chunk', async () => {
    const data = Buffer.concat([raw, Buffer.alloc(EXTENT_BYTES, 1), raw.subarray(0, PAGE_SIZE)]);
    const frames = await compressExtents(data, [2, 0], 3);
    expectSameBytes(await decompressFrames(frames), [data.subarray(2 * EXTENT_BYTES), data.subarray(0, EXTENT_BYTES)]);
    expect(await codeOf(compressExtents(data, [3], 3))).toBe('INVALID_ARGUMENT');
  });

  it('name the bad frame of a batch', async () => {
    const frames = await compressFrames([raw, raw, raw], 1);
    const bad = Buffer.from(frames[1]!);
    bad[bad.length - 1]! ^= 1;
    const err: unknown = await decompressFrames([frames[0]!, bad, frames[2]!]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgfError);
    expect((err as PgfError).code).toBe('FRAME_CORRUPT');
    expect((err as PgfError).message).toMatch(/^frame 1: /);
  });

  it('run concurrently on the libuv pool', async () => {
    const inputs = Array.from({ length: 16 }, (_, i) => Buffer.concat([raw, Buffer.alloc(i * 1000, i)]));
    const pending = inputs.map((input, i) => compressFrame(input, 1 + (i % 19)));
    expect(pending.every((p) => p instanceof Promise)).toBe(true);
    const frames = await Promise.all(pending);
    const restored = await Promise.all(frames.map((frame) => decompressFrame(frame)));
    expectSameBytes(restored, inputs);
  });
});
