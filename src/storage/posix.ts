/**
 * A repository in a local directory. Writes go to a temporary name in the target directory, are
 * fsynced, then renamed (or linked, for ifAbsent) into place and the directory fsynced: a crash
 * leaves the old state or the whole new object, never part of one. Temporary names carry a marker
 * that list() and removeStaleTemporaries() recognise, so a killed writer's leftovers stay invisible.
 */
import { randomBytes } from 'node:crypto';
import { close, fstat, open as openCallback, read as readCallback } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { PgfError } from '../errors/index.js';
import { DIRECT_IO_ALIGNMENT, openDirect, writeAt, writeThroughStaging } from './file-writes.js';
import { emptyStats, type ListPage, type ObjectInfo, type Storage, type WriteOptions } from './storage.js';

// Reads use descriptors and the callback API: a restore reads thousands of objects, and a
// FileHandle costs more calls to the thread pool (readFile stats, then reads until it sees the end).
const openFd = promisify(openCallback);
const readFd = promisify(readCallback);
const closeFd = promisify(close);
const fstatFd = promisify(fstat);

/** Most objects (extent lists, manifests, index deltas) fit in one read of this size. */
const firstReadBytes = 64 * 1024;

const temporaryMarker = '.pgf-tmp-';

/** Objects this large are written around the page cache (packs, WAL segments); smaller ones are not worth a second descriptor. */
const directWriteBytes = 1024 * 1024;
/** Size of each staging buffer direct writes copy through, and how many are kept for reuse. */
const stagingBytes = 4 * 1024 * 1024;
const stagingKept = 4;
const pageSize = 1000;
/** Files of one directory a listing stats at once. */
const listStatBatch = 256;

function storageError(err: unknown, action: string, where: string, root: string): PgfError {
  if (err instanceof PgfError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      return new PgfError('STORAGE_NOT_FOUND', `${where} does not exist: check --repo, or the repository lost this object`, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new PgfError('STORAGE_FULL', `repository disk is full (could not ${action} ${where}): free space at ${root} then retry`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new PgfError('STORAGE_DENIED', `permission denied to ${action} ${where}: run as the repository's owner or fix its permissions`, { cause: err });
    case 'EEXIST':
      return new PgfError('STORAGE_EXISTS', `${where} already exists: another writer created it first`, { cause: err });
    default:
      return new PgfError('STORAGE_IO', `cannot ${action} ${where} (${(err as Error).message}): check the disk and the system log, then retry`, { cause: err });
  }
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface Entry {
  path: string;
  key: string;
  size: number;
  modifiedMs: number;
}

/** A descriptor kept open for more range reads, and how many reads are using it now. */
interface HeldObject {
  fd: Promise<number>;
  users: number;
}

/** Descriptors readRange keeps open (objects are never modified once written, so they stay right). */
const heldAtMost = 32;

export class PosixStorage implements Storage {
  readonly location: string;
  readonly stats = emptyStats();
  /** Directories whose whole path up to the root this process has synced. */
  private readonly durableDirectories = new Set<string>();
  /** Objects read by range with keepOpen, least recently used first. */
  private readonly held = new Map<string, HeldObject>();
  /** After close(), nothing more is held, and what reads in flight still hold is closed as they end. */
  private closed = false;
  /** Aligned buffers that direct writes copy through, reused: fresh memory costs page faults. */
  private readonly staging: Buffer[] = [];

  constructor(private readonly root: string) {
    this.location = root;
  }

  private path(key: string): string {
    const parts = key.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0')) || key.includes(temporaryMarker)) {
      throw new PgfError('STORAGE_IO', `invalid object key "${key}": this is a bug in pgforever, please report it`);
    }
    return join(this.root, ...parts);
  }

  private key(path: string): string {
    return relative(this.root, path).split(sep).join('/');
  }

  /**
   * Every file under `dir` (whose keys start with `keyPrefix`), sorted into objects and
   * temporaries. Keys are built along the way: path.relative per file took 1.3-3.6 us, 26-73 ms
   * of a 20,000-object WAL listing.
   */
  private async walk(dir: string, keyPrefix: string, objects: Entry[], temporaries: Entry[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw storageError(err, 'list', dir, this.root);
    }
    for (const entry of entries) {
      if (entry.isDirectory()) await this.walk(join(dir, entry.name), `${keyPrefix}${entry.name}/`, objects, temporaries);
    }
    // Files are stat'ed many at a time, so that libuv's threads (and NFS) work in parallel: one
    // after another, 20000 WAL objects took 2.5-2.8 s to list, 256 at a time 0.47-0.56 s.
    const files = entries.filter((entry) => entry.isFile());
    const statOf = (path: string) =>
      stat(path).catch((err: unknown) => {
        // A file can vanish between readdir and stat (a delete, a temporary renamed into place).
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw storageError(err, 'list', path, this.root);
      });
    for (let at = 0; at < files.length; at += listStatBatch) {
      const stats = await Promise.all(files.slice(at, at + listStatBatch).map((entry) => statOf(join(dir, entry.name))));
      stats.forEach((st, i) => {
        const name = files[at + i]!.name;
        if (st?.isFile()) (name.includes(temporaryMarker) ? temporaries : objects).push({ path: join(dir, name), key: keyPrefix + name, size: st.size, modifiedMs: st.mtimeMs });
      });
    }
  }

  /** Objects whose keys start with `prefix`, in key order. */
  private async all(prefix: string): Promise<ObjectInfo[]> {
    this.stats.list += 1;
    const slash = prefix.lastIndexOf('/');
    const objects: Entry[] = [];
    if (slash < 0) await this.walk(this.root, '', objects, []);
    else await this.walk(this.path(prefix.slice(0, slash)), prefix.slice(0, slash + 1), objects, []);
    return objects
      .map((o) => ({ key: o.key, size: o.size, modifiedMs: o.modifiedMs }))
      .filter((o) => o.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async listPage(prefix: string, continuation?: string): Promise<ListPage> {
    const objects = (await this.all(prefix)).filter((o) => continuation === undefined || o.key > continuation);
    const page = objects.slice(0, pageSize);
    return objects.length > pageSize ? { objects: page, continuation: page.at(-1)!.key } : { objects: page };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    yield* await this.all(prefix);
  }

  private where(key: string): string {
    return join(this.root, key);
  }

  async read(key: string): Promise<Buffer> {
    this.stats.get += 1;
    try {
      const fd = await openFd(this.path(key), 'r');
      try {
        const first = Buffer.allocUnsafe(firstReadBytes);
        const { bytesRead } = await readFd(fd, first, 0, first.length, 0);
        // A regular file reads short only at its end (objects are never modified in place).
        if (bytesRead < first.length) {
          this.stats.bytesIn += bytesRead;
          return Buffer.from(first.subarray(0, bytesRead));
        }
        const whole = Buffer.allocUnsafe(Math.max((await fstatFd(fd)).size, first.length));
        first.copy(whole);
        let filled = first.length;
        while (filled < whole.length) {
          const more = (await readFd(fd, whole, filled, whole.length - filled, filled)).bytesRead;
          if (more === 0) break;
          filled += more;
        }
        this.stats.bytesIn += filled;
        return whole.subarray(0, filled);
      } finally {
        await closeFd(fd);
      }
    } catch (err) {
      throw storageError(err, 'read', this.where(key), this.root);
    }
  }

  async readRange(key: string, offset: number, length: number, options: { keepOpen?: boolean } = {}): Promise<Buffer> {
    this.stats.get += 1;
    let filled = 0;
    const buffer = Buffer.allocUnsafe(length);
    const readInto = async (fd: number) => {
      while (filled < length) {
        const { bytesRead } = await readFd(fd, buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
    };
    try {
      if (options.keepOpen && !this.closed) {
        await this.withHeld(key, readInto);
      } else {
        const fd = await openFd(this.path(key), 'r');
        try {
          await readInto(fd);
        } finally {
          await closeFd(fd);
        }
      }
    } catch (err) {
      throw storageError(err, 'read', this.where(key), this.root);
    }
    this.stats.bytesIn += filled;
    if (filled < length) {
      throw new PgfError('STORAGE_IO', `${this.where(key)} ends before byte ${offset + length}: the object is truncated; run verify on the repository`);
    }
    return buffer;
  }

  /** Runs `use` on a descriptor of `key` kept open for later range reads (a restore reads each pack hundreds of times). */
  private async withHeld(key: string, use: (fd: number) => Promise<void>): Promise<void> {
    let object = this.held.get(key);
    if (object === undefined) {
      object = { fd: openFd(this.path(key), 'r'), users: 0 };
    } else {
      this.held.delete(key);
    }
    this.held.set(key, object);
    object.users += 1;
    let failed = false;
    try {
      await use(await object.fd);
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      object.users -= 1;
      if (failed && object.users === 0 && this.held.get(key) === object) {
        // A failed open or read: the descriptor is not kept for the next one.
        this.held.delete(key);
        await object.fd.then(closeFd).catch(() => undefined);
      }
      await this.releaseHeld(this.closed);
    }
  }

  /** Closes the least recently used idle descriptors beyond heldAtMost (all idle ones with `all`). */
  private async releaseHeld(all = false): Promise<void> {
    for (const [key, object] of this.held) {
      if (!all && this.held.size <= heldAtMost) break;
      if (object.users > 0) continue;
      this.held.delete(key);
      await object.fd.then(closeFd).catch(() => undefined);
    }
  }

  /**
   * Creates `dir` and makes its path durable. An entry is durable once its parent is synced, and
   * another writer may have created part of the path without syncing it yet, so every parent up to
   * the root (and above it, when this call created the root) is synced once per process.
   */
  private async ensureDirectory(dir: string): Promise<void> {
    if (this.durableDirectories.has(dir)) return;
    const created = await mkdir(dir, { recursive: true });
    const createdRoot = created !== undefined && (this.key(created) === '' || this.key(created).startsWith('..'));
    const top = createdRoot ? dirname(created) : this.root;
    for (let d = dir; d !== top && dirname(d) !== d; ) {
      d = dirname(d);
      await fsyncDirectory(d);
    }
    this.durableDirectories.add(dir);
  }

  async write(key: string, data: Buffer | Buffer[], options: WriteOptions = {}): Promise<void> {
    const path = this.path(key);
    const dir = dirname(path);
    const parts = Array.isArray(data) ? data : [data];
    const temporary = `${path}${temporaryMarker}${randomBytes(6).toString('hex')}`;
    this.stats.put += 1;
    try {
      await this.ensureDirectory(dir);
      const handle = await open(temporary, 'wx', 0o640).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        // The directory went away under a long-lived process (the archive daemon): make it again.
        this.durableDirectories.delete(dir);
        await this.ensureDirectory(dir);
        return open(temporary, 'wx', 0o640);
      });
      try {
        const bytes = parts.reduce((sum, part) => sum + part.length, 0);
        const directFd = bytes >= directWriteBytes ? await openDirect(temporary) : undefined;
        if (directFd === undefined) {
          await writeAt(handle.fd, parts, 0);
        } else {
          const staging = this.staging.pop() ?? (await import('../native/index.js')).alignedBuffer(stagingBytes, DIRECT_IO_ALIGNMENT);
          try {
            await writeThroughStaging(handle.fd, directFd, parts, staging);
          } finally {
            if (this.staging.length < stagingKept) this.staging.push(staging);
            // The fsync below, on the other descriptor, reports what matters of these writes.
            await closeFd(directFd).catch(() => undefined);
          }
        }
        // One fsync covers both descriptors' writes, and flushes the device's cache for the direct ones.
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (options.ifAbsent) {
        // link(2) fails with EEXIST when the key exists, so of two racing writers exactly one wins.
        await link(temporary, path);
        await unlink(temporary);
      } else {
        await rename(temporary, path);
      }
      await fsyncDirectory(dir);
    } catch (err) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw storageError(err, 'write', this.where(key), this.root);
    }
    for (const part of parts) this.stats.bytesOut += part.length;
  }

  async delete(key: string): Promise<void> {
    this.stats.delete += 1;
    try {
      await unlink(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw storageError(err, 'delete', this.where(key), this.root);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.stats.head += 1;
    try {
      const st = await stat(this.path(key));
      return st.isFile() ? { key, size: st.size, modifiedMs: st.mtimeMs } : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw storageError(err, 'stat', this.where(key), this.root);
    }
  }

  async removeStaleTemporaries(olderThanMs: number): Promise<number> {
    this.stats.list += 1;
    const temporaries: Entry[] = [];
    await this.walk(this.root, '', [], temporaries);
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const t of temporaries) {
      if (t.modifiedMs >= cutoff) continue;
      this.stats.delete += 1;
      await rm(t.path, { force: true }).catch((err: unknown) => {
        throw storageError(err, 'remove', t.path, this.root);
      });
      removed += 1;
    }
    return removed;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.releaseHeld(true);
  }
}
