/**
 * Writes one file of a backup into the target directory: extents in place, all-zero extents as
 * holes. With `delta`, what is already there is hashed first and only differing extents are
 * written. The work is cut into batches that any worker can take, so the batches of one large file
 * (pgbench_accounts, a 1 GiB segment) are fetched, decompressed and written by several at once.
 *
 * Files are handled by descriptor with the callback API: a restore makes thousands of small calls,
 * and inode updates (mode, times, size) are done synchronously because they cost less than the hop
 * to the thread pool that an asynchronous call takes. Creating a file can wait for the disk (ext4
 * reads inode tables to avoid recently freed inodes), so that one stays asynchronous.
 */
import { closeSync, fchmodSync, fstat, fsync, ftruncateSync, futimesSync, open, read } from 'node:fs';
import { promisify } from 'node:util';
import { PgfError } from '../errors/index.js';
import { DIRECT_IO_ALIGNMENT, directCallBytes, openDirect, writeAt } from '../storage/file-writes.js';
import { EXTENT_BYTES, alignmentOffset, crc32cAppend, crc32cConcat, extentIds } from '../native/index.js';
import type { FetchedExtents } from '../repo/index.js';

const fstatOf = promisify(fstat);
const fsyncOf = promisify(fsync);
const readAt = promisify(read);
const openFile = promisify(open);

/** Where extents come from; the repository's coalescing reader implements it. */
export interface ExtentSource {
  /** The raw bytes of each extent, verified, in the order asked (views into `into` when it fits them), and their CRC-32Cs. */
  fetch(ids: readonly Buffer[], into?: Buffer): Promise<FetchedExtents>;
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
  /** Extents per batch (bounds memory: batch × 128 KiB per worker). */
  batchExtents: number;
}

export interface FileRestoreResult {
  bytesWritten: number;
  extentsWritten: number;
  extentsKept: number;
  /** CRC-32C of the whole file as written; unknown when --delta kept extents with data (their bytes are not read twice). */
  crc32c?: number;
}

/** Extents to write. */
export interface FileBatch {
  todo: { index: number; id: Buffer | null }[];
}

const zeros = Buffer.alloc(EXTENT_BYTES);

const zeroCrcs = new Map<number, number>();

/** The CRC-32C of `length` zero bytes (a hole of at most one extent). */
function zeroCrc(length: number): number {
  let crc = zeroCrcs.get(length);
  if (crc === undefined) {
    crc = crc32cAppend(0, zeros.subarray(0, length));
    zeroCrcs.set(length, crc);
  }
  return crc;
}

/**
 * A large file is flushed to disk in the background every so many bytes as it is written: the
 * kernel would otherwise hold all of it dirty (its background threshold is 10% of memory), and the
 * flush at the end would fill the disk queue for a second, stalling every other worker's reads.
 */
const flushBehindBytes = 64 * 1024 * 1024;

async function existingIds(fd: number, size: number, key: Buffer): Promise<(Buffer | null)[]> {
  const ids: (Buffer | null)[] = [];
  const chunkBytes = 64 * EXTENT_BYTES;
  const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, size));
  for (let offset = 0; offset < size; offset += chunkBytes) {
    const { bytesRead } = await readAt(fd, buffer, 0, Math.min(chunkBytes, size - offset), offset);
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

/** Smaller files are written through the page cache: a second descriptor costs more than it saves. */
const directFileBytes = 1024 * 1024;

/** Opens an existing file for in-place rewriting (never O_APPEND: positioned writes must land), or creates it. */
async function openForDelta(path: string, mode: number): Promise<number> {
  try {
    return await openFile(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return openFile(path, 'wx', mode);
  }
}

export class FileRestore {
  readonly result: FileRestoreResult = { bytesWritten: 0, extentsWritten: 0, extentsKept: 0 };
  private claimed = 0;
  private finished = 0;
  /** Each extent's CRC-32C, from its frame (holes: of their zeros); joined into the file's at the end. */
  private readonly extentCrcs: Uint32Array;
  private unflushedBytes = 0;
  /** The background flush in flight; it never rejects: a failure is kept in flushFailure. */
  private flushing: Promise<void> | undefined;
  /** Linux reports a writeback error to one fsync only: a later one may succeed over lost pages. */
  private flushFailure: unknown;
  /** The last write queued on this file; it never rejects (its own caller sees the failure). */
  private writing: Promise<void> = Promise.resolve();
  /**
   * Whole extents of large files are written with O_DIRECT from the workers' aligned buffers: no
   * page cache to fill, copy into and write back, so no CPU spent on it, none of the host faults a
   * VM takes on page cache its host reclaimed, and a --delta's scattered writes reach the disk as
   * they are made instead of in one long fsync at the end. Other writes (a last extent that is not
   * whole 4 KiB blocks, zeros) go through `fd`.
   */
  private directFd: number | undefined;
  /** Every extent's CRC is known: none was kept from what --delta found in place. */
  private crcComplete = true;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly size: number,
    private readonly extentCount: number,
    private readonly options: FileRestoreOptions,
    private readonly batches: FileBatch[],
    directFd: number | undefined,
  ) {
    this.extentCrcs = new Uint32Array(extentCount);
    this.directFd = directFd;
  }

  private extentLength(index: number): number {
    return Math.min(EXTENT_BYTES, this.size - index * EXTENT_BYTES);
  }

  /**
   * Writes to one file go one at a time, whichever worker's batch they come from: ext4 holds the
   * inode lock through a buffered write, and writers waiting for it spin on the CPUs the others
   * need. perf showed 11% of a restore's CPU spinning there, more when the page cache was slow.
   */
  private write(buffers: Buffer[], position: number, direct: boolean): Promise<void> {
    const written = this.writing.then(async () => {
      if (direct && this.directFd !== undefined) {
        try {
          await writeAt(this.directFd, buffers, position, directCallBytes);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
          // The filesystem takes no direct writes after all: the rest of the file goes buffered.
          const directFd = this.directFd;
          this.directFd = undefined;
          closeSync(directFd);
        }
      }
      await writeAt(this.fd, buffers, position);
      this.unflushedBytes += buffers.reduce((n, b) => n + b.length, 0);
    });
    this.writing = written.catch(() => undefined);
    return written;
  }

  /** Whether `views` can be written directly: whole blocks at aligned places of `scratch`, itself aligned (alignedBuffer). */
  private directWritable(views: readonly Buffer[], scratch: Buffer, scratchAligned: boolean): boolean {
    return (
      this.directFd !== undefined &&
      scratchAligned &&
      views.every((v) => v.buffer === scratch.buffer && (v.byteOffset - scratch.byteOffset) % DIRECT_IO_ALIGNMENT === 0 && v.length % DIRECT_IO_ALIGNMENT === 0)
    );
  }

  /** Opens (creates, for a fresh restore) the file and plans its batches. */
  static async open(path: string, size: number, extents: readonly (Buffer | null)[], options: FileRestoreOptions): Promise<FileRestore> {
    const fd = options.delta ? await openForDelta(path, options.mode) : await openFile(path, 'wx', options.mode);
    let directFd: number | undefined;
    try {
      let present: readonly (Buffer | null)[] = [];
      let kept = 0;
      let keptData = 0;
      if (options.delta) {
        const { size: existing } = await fstatOf(fd);
        // Extents past the new size go with the truncate; a known list is cut the same way.
        present = options.present?.slice(0, Math.ceil(Math.min(existing, size) / EXTENT_BYTES)) ?? (await existingIds(fd, Math.min(existing, size), options.key));
        ftruncateSync(fd, size);
      } else if (extents.at(-1) === null) {
        // Writes set a fresh file's size, except when it ends in a hole.
        ftruncateSync(fd, size);
      }
      const todo: { index: number; id: Buffer | null }[] = [];
      extents.forEach((id, index) => {
        const have = present[index];
        const same = have !== undefined && (id === null ? have === null : have !== null && have.equals(id));
        if (same) {
          kept += 1;
          if (id !== null) keptData += 1;
        } else if (id === null) {
          // A fresh file is already a hole here; an existing one needs its old bytes zeroed.
          if (have !== undefined) todo.push({ index, id });
        } else {
          todo.push({ index, id });
        }
      });
      const batches: FileBatch[] = [];
      for (let start = 0; start < todo.length; start += options.batchExtents) batches.push({ todo: todo.slice(start, start + options.batchExtents) });
      if (size >= directFileBytes && batches.length > 0) directFd = await openDirect(path);
      const file = new FileRestore(path, fd, size, extents.length, options, batches, directFd);
      file.result.extentsKept = kept;
      file.crcComplete = keptData === 0;
      extents.forEach((id, index) => {
        if (id === null) file.extentCrcs[index] = zeroCrc(file.extentLength(index));
      });
      return file;
    } catch (err) {
      try {
        if (directFd !== undefined) closeSync(directFd);
      } finally {
        closeSync(fd);
      }
      throw err;
    }
  }

  /** The next batch nobody has taken yet. */
  claim(): FileBatch | undefined {
    return this.batches[this.claimed++];
  }

  get unclaimed(): boolean {
    return this.claimed < this.batches.length;
  }

  /** Every batch is written: the file can be finished. */
  get written(): boolean {
    return this.finished === this.batches.length;
  }

  /**
   * Fetches, checks and writes one batch; `scratch` holds its raw extents (one per worker, reused).
   * True for the call that wrote the file's last outstanding batch: its caller finishes the file.
   */
  async restore(batch: FileBatch, scratch: Buffer): Promise<boolean> {
    const wanted = batch.todo.filter((t): t is { index: number; id: Buffer } => t.id !== null);
    const fetched = await this.options.source.fetch(
      wanted.map((t) => t.id),
      scratch,
    );
    const positions = new Map(wanted.map((t, i) => [t.index, i]));
    const scratchAligned = this.directFd !== undefined && alignmentOffset(scratch, DIRECT_IO_ALIGNMENT) === 0;
    // Neighbouring extents go out together: thousands of 128 KiB writes cost the main thread more
    // than the copying itself (writeAt still caps each call, see file-writes.ts).
    let run: Buffer[] = [];
    let runStart = 0;
    const flush = async () => {
      if (run.length > 0) await this.write(run, runStart * EXTENT_BYTES, this.directWritable(run, scratch, scratchAligned));
      run = [];
    };
    for (const { index } of batch.todo) {
      const length = this.extentLength(index);
      const at = positions.get(index);
      const data = at === undefined ? zeros.subarray(0, length) : fetched.extents[at]!;
      if (data.length !== length) {
        throw new PgfError('REPO_CORRUPT', `extent ${index} of ${this.path} holds ${data.length} bytes where the manifest says ${length}: run pgforever verify`);
      }
      if (run.length > 0 && index !== runStart + run.length) await flush();
      if (run.length === 0) runStart = index;
      run.push(data);
      if (at !== undefined) this.extentCrcs[index] = fetched.crc32c[at]!;
      this.result.bytesWritten += length;
      this.result.extentsWritten += 1;
    }
    await flush();
    this.finished += 1;
    if (this.unflushedBytes >= flushBehindBytes && this.flushing === undefined && !this.written) {
      this.unflushedBytes = 0;
      const flush = fsyncOf(this.fd).then(
        () => undefined,
        (err: unknown) => {
          this.flushFailure ??= err;
        },
      );
      this.flushing = flush;
      void flush.then(() => {
        if (this.flushing === flush) this.flushing = undefined;
      });
    }
    return this.written;
  }

  /** Gives the file its mode and time, makes it durable and closes it; once every batch is written. */
  async finish(): Promise<FileRestoreResult> {
    try {
      if (this.crcComplete) {
        const lengths = new Uint32Array(this.extentCount).fill(EXTENT_BYTES);
        if (this.extentCount > 0) lengths[this.extentCount - 1] = this.extentLength(this.extentCount - 1);
        this.result.crc32c = crc32cConcat(this.extentCrcs, lengths);
      }
      fchmodSync(this.fd, this.options.mode);
      futimesSync(this.fd, this.options.mtimeMs / 1000, this.options.mtimeMs / 1000);
      await this.flushing;
      if (this.flushFailure !== undefined) throw this.flushFailure;
      await fsyncOf(this.fd);
    } finally {
      await this.close();
    }
    return this.result;
  }

  /** Closes the file after a failure elsewhere (the restore as a whole has failed). */
  async abandon(): Promise<void> {
    await this.close();
  }

  private async close(): Promise<void> {
    // No write or flush may be left queued on a descriptor number that could be reused once closed.
    await this.writing;
    await this.flushing;
    try {
      if (this.directFd !== undefined) closeSync(this.directFd);
    } finally {
      closeSync(this.fd);
    }
  }
}

/** Restores a whole file on its own, batch after batch (pg_control, written last). */
export async function restoreFile(path: string, size: number, extents: readonly (Buffer | null)[], options: FileRestoreOptions, scratch: Buffer): Promise<FileRestoreResult> {
  const file = await FileRestore.open(path, size, extents, options);
  try {
    for (let batch = file.claim(); batch !== undefined; batch = file.claim()) await file.restore(batch, scratch);
  } catch (err) {
    await file.abandon();
    throw err;
  }
  return file.finish();
}
