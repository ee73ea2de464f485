import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { FileRestore, restoreFile, type ExtentSource } from '../../src/restore/file.js';
import { EXTENT_BYTES, alignedBuffer, crc32cAppend, extentIds } from '../../src/native/index.js';
import { DIRECT_IO_ALIGNMENT } from '../../src/storage/file-writes.js';
import type { FetchedExtents } from '../../src/repo/index.js';

const dirs: string[] = [];
const scratch = Buffer.alloc(4 * EXTENT_BYTES);
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

class CountingSource implements ExtentSource {
  fetched = 0;
  constructor(private readonly byId: Map<string, Buffer>) {}
  async fetch(ids: readonly Buffer[]): Promise<FetchedExtents> {
    this.fetched += ids.length;
    const extents = ids.map((id) => this.byId.get(id.toString('hex'))!);
    return { extents, crc32c: new Uint32Array(extents.map((e) => crc32cAppend(0, e))) };
  }
}

/** `content` as a backup holds it: extent ids (null for zero extents) and each extent's bytes by id. */
async function layout(content: Buffer, key: Buffer) {
  const ids = await extentIds(content, key);
  const extents = ids.map((id, i) => (content.subarray(i * EXTENT_BYTES, (i + 1) * EXTENT_BYTES).every((b) => b === 0) ? null : Buffer.from(id)));
  const byId = new Map<string, Buffer>();
  extents.forEach((id, i) => id && byId.set(id.toString('hex'), Buffer.from(content.subarray(i * EXTENT_BYTES, (i + 1) * EXTENT_BYTES))));
  return { extents, byId };
}

describe('restoreFile', () => {
  const key = randomBytes(32);

  it('writes extents in place and leaves zero extents as holes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const content = Buffer.concat([randomBytes(EXTENT_BYTES), Buffer.alloc(8 * EXTENT_BYTES), randomBytes(5000)]);
    const { extents, byId } = await layout(content, key);
    const target = join(dir, 'f');
    const result = await restoreFile(target, content.length, extents, { key, source: new CountingSource(byId), delta: false, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 4 }, scratch);
    expect(result.extentsWritten).toBe(2);
    expect((await readFile(target)).equals(content)).toBe(true);
    const st = await stat(target);
    expect(st.blocks * 512).toBeLessThan(content.length);
    expect(st.mode & 0o777).toBe(0o600);
    // The source's mtime, for a later --delta to trust.
    expect(Math.abs(st.mtimeMs - 1_700_000_000_123.5)).toBeLessThan(0.001);
  });

  it('with delta, writes only extents that differ and zeroes stale bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const content = Buffer.concat([randomBytes(EXTENT_BYTES), Buffer.alloc(EXTENT_BYTES), randomBytes(3 * EXTENT_BYTES)]);
    const { extents, byId } = await layout(content, key);
    const target = join(dir, 'f');
    const stale = Buffer.from(content);
    stale.fill(7, EXTENT_BYTES, EXTENT_BYTES + 100);
    stale.fill(9, 3 * EXTENT_BYTES + 10, 3 * EXTENT_BYTES + 20);
    await writeFile(target, Buffer.concat([stale, randomBytes(1000)]));
    const source = new CountingSource(byId);
    const result = await restoreFile(target, content.length, extents, { key, source, delta: true, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 4 }, scratch);
    expect(result.extentsWritten).toBe(2);
    expect(result.extentsKept).toBe(3);
    expect(source.fetched).toBe(1);
    expect((await readFile(target)).equals(content)).toBe(true);
  });
});

describe('restoreFile checksum', () => {
  it('is the CRC-32C of the whole file, holes included', async () => {
    const key = randomBytes(32);
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const content = Buffer.concat([Buffer.alloc(2 * EXTENT_BYTES), randomBytes(EXTENT_BYTES), Buffer.alloc(EXTENT_BYTES + 77)]);
    const { extents, byId } = await layout(content, key);
    const result = await restoreFile(join(dir, 'f'), content.length, extents, { key, source: new CountingSource(new Map(byId)), delta: false, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 2 }, scratch);
    expect(result.crc32c).toBe(crc32cAppend(0, content));
  });
});

describe('FileRestore', () => {
  it('gives the same file and checksum when its batches are written out of order, as several workers do', async () => {
    const key = randomBytes(32);
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const pieces = Array.from({ length: 11 }, (_, i) => (i % 3 === 1 ? Buffer.alloc(EXTENT_BYTES) : randomBytes(EXTENT_BYTES)));
    const content = Buffer.concat([...pieces, randomBytes(999)]);
    const { extents, byId } = await layout(content, key);
    const file = await FileRestore.open(join(dir, 'f'), content.length, extents, { key, source: new CountingSource(byId), delta: false, mode: 0o640, mtimeMs: 1_700_000_000_123.5, batchExtents: 2 });
    const batches = [];
    for (let batch = file.claim(); batch !== undefined; batch = file.claim()) batches.push(batch);
    expect(batches.length).toBe(4);
    const last = [];
    for (const batch of batches.reverse()) last.push(await file.restore(batch, Buffer.alloc(2 * EXTENT_BYTES)));
    expect(last).toEqual([false, false, false, true]);
    const result = await file.finish();
    expect((await readFile(join(dir, 'f'))).equals(content)).toBe(true);
    expect(result.crc32c).toBe(crc32cAppend(0, content));
    expect((await stat(join(dir, 'f'))).mode & 0o777).toBe(0o640);
  });

  it('sizes a fresh file that ends in a hole, and checksums a file of holes only', async () => {
    const key = randomBytes(32);
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const content = Buffer.alloc(3 * EXTENT_BYTES);
    const result = await restoreFile(join(dir, 'f'), content.length, [null, null, null], { key, source: new CountingSource(new Map()), delta: false, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 2 }, scratch);
    expect(result.extentsWritten).toBe(0);
    expect((await readFile(join(dir, 'f'))).equals(content)).toBe(true);
    expect(result.crc32c).toBe(crc32cAppend(0, content));
  });
});

describe('FileRestore of a large read-only file', () => {
  it('restores a file of mode 0400 (its descriptor for direct writes cannot be opened for writing)', async () => {
    const key = randomBytes(32);
    const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
    dirs.push(dir);
    const content = randomBytes(10 * EXTENT_BYTES);
    const { extents, byId } = await layout(content, key);
    const result = await restoreFile(join(dir, 'key'), content.length, extents, { key, source: new CountingSource(byId), delta: false, mode: 0o400, mtimeMs: 1_700_000_000_123.5, batchExtents: 4 }, alignedBuffer(4 * EXTENT_BYTES, DIRECT_IO_ALIGNMENT));
    expect((await readFile(join(dir, 'key'))).equals(content)).toBe(true);
    expect((await stat(join(dir, 'key'))).mode & 0o777).toBe(0o400);
    expect(result.crc32c).toBe(crc32cAppend(0, content));
  });
});

describe('FileRestore of a large file', () => {
  // Whole extents go around the page cache (O_DIRECT) from an aligned scratch buffer where the
  // filesystem allows it; a misaligned buffer, or a filesystem that refuses, falls back to buffered
  // writes. Either way the file must come out the same.
  for (const scratchKind of ['aligned', 'misaligned'] as const) {
    it(`writes the same bytes and checksum from a ${scratchKind} buffer, short last extent and holes included`, async () => {
      const key = randomBytes(32);
      const dir = await mkdtemp(join(tmpdir(), 'pgf-restore-'));
      dirs.push(dir);
      const pieces = Array.from({ length: 20 }, (_, i) => (i % 7 === 3 ? Buffer.alloc(EXTENT_BYTES) : randomBytes(EXTENT_BYTES)));
      const content = Buffer.concat([...pieces, randomBytes(8192 + 100)]);
      const { extents, byId } = await layout(content, key);
      // The source hands out views into the scratch buffer, as the repository's reader does.
      const source: ExtentSource = {
        fetch: async (wanted, into) => {
          const out = wanted.map((id) => byId.get(id.toString('hex'))!);
          let at = 0;
          const extentsOut = out.map((e) => {
            const view = into!.subarray(at, at + e.length);
            e.copy(view);
            at += e.length;
            return view;
          });
          return { extents: extentsOut, crc32c: new Uint32Array(out.map((e) => crc32cAppend(0, e))) };
        },
      };
      const scratch = scratchKind === 'aligned' ? alignedBuffer(8 * EXTENT_BYTES, DIRECT_IO_ALIGNMENT) : alignedBuffer(8 * EXTENT_BYTES + DIRECT_IO_ALIGNMENT, DIRECT_IO_ALIGNMENT).subarray(512, 512 + 8 * EXTENT_BYTES);
      const result = await restoreFile(join(dir, 'f'), content.length, extents, { key, source, delta: false, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 8 }, scratch);
      expect((await readFile(join(dir, 'f'))).equals(content)).toBe(true);
      expect(result.crc32c).toBe(crc32cAppend(0, content));
      expect(result.bytesWritten).toBe(content.length - extents.filter((id) => id === null).length * EXTENT_BYTES);

      // --delta over a stale copy: a changed extent, a hole that had data, data where a hole was.
      const stale = Buffer.from(content);
      stale.fill(1, 2 * EXTENT_BYTES, 2 * EXTENT_BYTES + 10);
      stale.fill(9, 3 * EXTENT_BYTES, 4 * EXTENT_BYTES);
      stale.fill(0, 5 * EXTENT_BYTES, 6 * EXTENT_BYTES);
      await writeFile(join(dir, 'f'), stale);
      const delta = await restoreFile(join(dir, 'f'), content.length, extents, { key, source, delta: true, mode: 0o600, mtimeMs: 1_700_000_000_123.5, batchExtents: 8 }, scratch);
      expect((await readFile(join(dir, 'f'))).equals(content)).toBe(true);
      expect(delta.extentsWritten).toBe(3);
    });
  }
});

