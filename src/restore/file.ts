/**
 * Writes one file of a backup into the target directory: extents in place, all-zero extents as
 * holes. With `delta`, what is already there is hashed first and only differing extents are
 * written.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { PgfError } from '../errors/index.js';
import { writeAt } from '../storage/file-writes.js';
import { EXTENT_BYTES, crc32cAppend, extentIds } from '../native/index.js';

/** Where extents come from; the repository's coalescing reader implements it. */
export interface ExtentSource {
  /** The raw bytes of each extent, verified, in the order asked (views into `into` when it fits them). */
  fetch(ids: readonly Buffer[], into?: Buffer): Promise<Buffer[]>;
}

export interface FileRestoreOptions {
  key: Buffer;
  source: ExtentSource;
  delta: boolean;
  /** With delta: the extent ids the existing file is known to hold (from the backup that restored it); read and hashed otherwise. */
  present?: readonly (Buffer | null)[];
  mode: number;
  /** The source file's modification time, given to the restored file: a later --delta trusts it. */
  mtimeMs: number;
  /** Extents fetched per request batch (bounds memory: batch × 128 KiB). */
  batchExtents: number;
  /** Room for one batch of raw extents, reused from file to file. */
  scratch?: Buffer;
}

export interface FileRestoreResult {
  bytesWritten: number;
  extentsWritten: number;
  extentsKept: number;
  /** CRC-32C of the whole file as written (fresh restores; a delta restore does not read kept extents' bytes twice). */
  crc32c?: number;
}

const zeros = Buffer.alloc(EXTENT_BYTES);

async function existingIds(handle: FileHandle, size: number, key: Buffer): Promise<(Buffer | null)[]> {
  const ids: (Buffer | null)[] = [];
  const chunkBytes = 64 * EXTENT_BYTES;
  const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, size));
  for (let offset = 0; offset < size; offset += chunkBytes) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(chunkBytes, size - offset), offset);
    if (bytesRead === 0) break;
    const chunk = buffer.subarray(0, bytesRead);
    const hashed = await extentIds(chunk, key);
    hashed.forEach((id, i) => {
      const piece = chunk.subarray(i * EXTENT_BYTES, (i + 1) * EXTENT_BYTES);
      ids.push(piece.equals(zeros.subarray(0, piece.length)) ? null : id);
    });
  }
  return ids;
}

/** Opens an existing file for in-place rewriting (never O_APPEND: positioned writes must land), or creates it. */
async function openForDelta(path: string, mode: number): Promise<FileHandle> {
  try {
    return await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return open(path, 'wx', mode);
  }
}

export async function restoreFile(path: string, size: number, extents: readonly (Buffer | null)[], options: FileRestoreOptions): Promise<FileRestoreResult> {
  const result: FileRestoreResult = { bytesWritten: 0, extentsWritten: 0, extentsKept: 0 };
  const handle = options.delta ? await openForDelta(path, options.mode) : await open(path, 'wx', options.mode);
  try {
    let present: readonly (Buffer | null)[] = [];
    if (options.delta) {
      const { size: existing } = await handle.stat();
      // Extents past the new size go with the truncate; a known list is cut the same way.
      present = options.present?.slice(0, Math.ceil(Math.min(existing, size) / EXTENT_BYTES)) ?? (await existingIds(handle, Math.min(existing, size), options.key));
    }
    await handle.truncate(size);
    const todo: { index: number; id: Buffer | null }[] = [];
    extents.forEach((id, index) => {
      const have = present[index];
      const same = have !== undefined && (id === null ? have === null : have !== null && have.equals(id));
      if (same) {
        result.extentsKept += 1;
      } else if (id === null) {
        // A fresh file is already a hole here; an existing one needs its old bytes zeroed.
        if (have !== undefined) todo.push({ index, id });
      } else {
        todo.push({ index, id });
      }
    });
    // Extents are written in file order, so a fresh file's checksum is built as they go, holes included.
    let crc = 0;
    let summed = 0;
    const sumThrough = (index: number, data?: Buffer) => {
      for (; summed < index; summed++) crc = crc32cAppend(crc, zeros.subarray(0, Math.min(EXTENT_BYTES, size - summed * EXTENT_BYTES)));
      if (data) {
        crc = crc32cAppend(crc, data);
        summed = index + 1;
      }
    };
    for (let start = 0; start < todo.length; start += options.batchExtents) {
      const batch = todo.slice(start, start + options.batchExtents);
      const wanted = batch.filter((t): t is { index: number; id: Buffer } => t.id !== null);
      const fetched = await options.source.fetch(
        wanted.map((t) => t.id),
        options.scratch,
      );
      const byIndex = new Map(wanted.map((t, i) => [t.index, fetched[i]!]));
      // Neighbouring extents go out together: thousands of 128 KiB writes cost the main thread more
      // than the copying itself (writeAt still caps each call, see file-writes.ts).
      let run: Buffer[] = [];
      let runStart = 0;
      const flush = async () => {
        if (run.length > 0) await writeAt(handle, run, runStart * EXTENT_BYTES);
        run = [];
      };
      for (const { index } of batch) {
        const length = Math.min(EXTENT_BYTES, size - index * EXTENT_BYTES);
        const data = byIndex.get(index) ?? Buffer.alloc(length);
        if (data.length !== length) {
          throw new PgfError('REPO_CORRUPT', `extent ${index} of ${path} holds ${data.length} bytes where the manifest says ${length}: run pgforever verify`);
        }
        if (run.length > 0 && index !== runStart + run.length) await flush();
        if (run.length === 0) runStart = index;
        run.push(data);
        if (!options.delta) sumThrough(index, data);
        result.bytesWritten += length;
        result.extentsWritten += 1;
      }
      await flush();
    }
    if (!options.delta) {
      sumThrough(extents.length);
      result.crc32c = crc;
    }
    await handle.chmod(options.mode);
    await handle.utimes(options.mtimeMs / 1000, options.mtimeMs / 1000);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return result;
}
