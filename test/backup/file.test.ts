import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ChunkBuffers, backupFile, type ExtentStore, type NewExtent } from '../../src/backup/file.js';
import type { DataEntry } from '../../src/backup/files.js';
import { EXTENT_BYTES, PAGE_SIZE, decompressFrame, pageChecksum } from '../../src/native/index.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A heap-like page with a valid header, the given LSN and a correct checksum for `block`. */
function page(lsn: bigint, block: number, fill: number): Buffer {
  const p = Buffer.alloc(PAGE_SIZE);
  p.writeUInt32LE(Number(lsn >> 32n), 0);
  p.writeUInt32LE(Number(lsn & 0xffffffffn), 4);
  p.writeUInt16LE(24 + 4, 12); // pd_lower
  p.writeUInt16LE(PAGE_SIZE - 64, 14); // pd_upper
  p.writeUInt16LE(PAGE_SIZE, 16); // pd_special
  p.writeUInt16LE(PAGE_SIZE | 4, 18); // size | layout version
  p.fill(fill, PAGE_SIZE - 64);
  p.writeUInt16LE(pageChecksum(p, block), 8);
  return p;
}

class MemoryStore implements ExtentStore {
  readonly frames = new Map<string, NewExtent>();
  has(id: Buffer): boolean {
    return this.frames.has(id.toString('hex'));
  }
  async add(extents: readonly NewExtent[]): Promise<void> {
    for (const e of extents) this.frames.set(e.id.toString('hex'), { ...e, frame: Buffer.from(e.frame) });
  }
}

async function restored(store: MemoryStore, extents: (Buffer | null)[], size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const [i, id] of extents.entries()) {
    const length = Math.min(EXTENT_BYTES, size - i * EXTENT_BYTES);
    parts.push(id === null ? Buffer.alloc(length) : await decompressFrame(store.frames.get(id.toString('hex'))!.frame));
  }
  return Buffer.concat(parts);
}

describe('backupFile', () => {
  const key = randomBytes(32);
  const options = (store: ExtentStore, changedSince?: bigint) => ({
    key,
    compressLevel: 3,
    changedSince,
    backupStart: 0x9000000n,
    verifyChecksums: true,
    blocksPerSegment: 131072,
    buffers: new ChunkBuffers(4 * EXTENT_BYTES, 2),
    store,
  });

  it('stores a relation file, then reuses unchanged extents by LSN and stores only the changed one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-file-'));
    dirs.push(dir);
    const path = join(dir, '16384');
    // 5 extents and a half: the last extent is short, the third one is all zeros.
    const blocks = 16 * 5 + 8;
    const pages = Array.from({ length: blocks }, (_, b) => (b >= 32 && b < 48 ? Buffer.alloc(PAGE_SIZE) : page(0x1000000n + BigInt(b), b, b % 251)));
    await writeFile(path, Buffer.concat(pages));
    const entry: DataEntry = { path: 'base/5/16384', source: path, kind: 'file', size: blocks * PAGE_SIZE, mode: 0o600, mtimeMs: 0, relation: { fork: 'main', segment: 0 } };

    const store = new MemoryStore();
    const full = await backupFile(entry, undefined, options(store));
    expect(full.size).toBe(blocks * PAGE_SIZE);
    expect(full.extents).toHaveLength(6);
    expect(full.extents[2]).toBeNull();
    expect(full.extentsNew).toBe(5);
    expect(full.checksumFailures).toEqual([]);
    expect((await restored(store, full.extents, full.size)).equals(Buffer.concat(pages))).toBe(true);

    // Block 70 (extent 4) changes after the parent's start.
    pages[70] = page(0x5000000n, 70, 7);
    await writeFile(path, Buffer.concat(pages));
    const incremental = await backupFile(entry, { size: full.size, extents: full.extents }, options(store, 0x2000000n));
    expect(incremental.extentsReused).toBe(4);
    expect(incremental.extentsNew).toBe(1);
    expect(incremental.extents[4]).not.toEqual(full.extents[4]);
    expect((await restored(store, incremental.extents, incremental.size)).equals(Buffer.concat(pages))).toBe(true);
  });

  it('reports a page whose checksum fails twice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-file-'));
    dirs.push(dir);
    const path = join(dir, '16390.1');
    const pages = Array.from({ length: 16 }, (_, b) => page(0x1000000n, 131072 + b, 1));
    const damaged = pages[3]!;
    damaged[PAGE_SIZE - 10] = damaged[PAGE_SIZE - 10]! ^ 0xff;
    await writeFile(path, Buffer.concat(pages));
    const entry: DataEntry = { path: 'base/5/16390.1', source: path, kind: 'file', size: 16 * PAGE_SIZE, mode: 0o600, mtimeMs: 0, relation: { fork: 'main', segment: 1 } };
    const result = await backupFile(entry, undefined, options(new MemoryStore()));
    expect(result.checksumFailures.map((f) => f.block)).toEqual([131075]);
  });

  it('hashes other files whole, in 128 KiB pieces, and deduplicates', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-file-'));
    dirs.push(dir);
    const path = join(dir, 'pg_xact_0000');
    const piece = randomBytes(EXTENT_BYTES);
    await writeFile(path, Buffer.concat([piece, piece, piece.subarray(0, 1000)]));
    const entry: DataEntry = { path: 'pg_xact/0000', source: path, kind: 'file', size: 2 * EXTENT_BYTES + 1000, mode: 0o600, mtimeMs: 0 };
    const store = new MemoryStore();
    const result = await backupFile(entry, undefined, options(store));
    expect(result.extents).toHaveLength(3);
    expect(result.extentsNew).toBe(2);
    expect(result.extentsDeduplicated).toBe(1);
    expect((await restored(store, result.extents, result.size)).length).toBe(result.size);
  });
});
