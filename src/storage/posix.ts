/**
 * A repository in a local directory. Writes go to a temporary name in the target directory, are
 * fsynced, then renamed (or linked, for ifAbsent) into place and the directory fsynced: a crash
 * leaves the old state or the whole new object, never part of one.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { PgfError } from '../errors/index.js';
import type { ListPage, ObjectInfo, Storage, WriteOptions } from './storage.js';

const temporaryMarker = '.pgf-tmp-';
const pageSize = 1000;

function storageError(err: unknown, action: string, where: string): PgfError {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return new PgfError('STORAGE_NOT_FOUND', `${where} does not exist`, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new PgfError('STORAGE_FULL', `repository disk is full while trying to ${action} ${where}: free space there, then retry`, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new PgfError('STORAGE_DENIED', `permission denied to ${action} ${where}: run as the repository's owner or fix its permissions`, { cause: err });
    case 'EEXIST':
      return new PgfError('STORAGE_EXISTS', `${where} already exists`, { cause: err });
    default:
      return new PgfError('STORAGE_IO', `cannot ${action} ${where}: ${(err as Error).message}`, { cause: err });
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

export class PosixStorage implements Storage {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = root;
  }

  private path(key: string): string {
    if (key.startsWith('/') || key.split('/').includes('..')) throw new PgfError('STORAGE_IO', `invalid object key ${key}`);
    return join(this.root, ...key.split('/'));
  }

  private async walk(dir: string, out: ObjectInfo[]): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw storageError(err, 'list', dir);
    }
    for (const name of names) {
      if (name.includes(temporaryMarker)) continue;
      const full = join(dir, name);
      const st = await stat(full).catch(() => undefined);
      if (st === undefined) continue;
      if (st.isDirectory()) await this.walk(full, out);
      else if (st.isFile()) out.push({ key: relative(this.root, full).split(sep).join('/'), size: st.size, modifiedMs: st.mtimeMs });
    }
  }

  /** Objects under the directory part of `prefix` whose keys start with it, in key order. */
  private async all(prefix: string): Promise<ObjectInfo[]> {
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? this.root : this.path(prefix.slice(0, slash));
    const out: ObjectInfo[] = [];
    await this.walk(base, out);
    return out.filter((o) => o.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async listPage(prefix: string, continuation?: string): Promise<ListPage> {
    const objects = (await this.all(prefix)).filter((o) => continuation === undefined || o.key > continuation);
    const page = objects.slice(0, pageSize);
    return objects.length > pageSize ? { objects: page, continuation: page.at(-1)!.key } : { objects: page };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    yield* await this.all(prefix);
  }

  async read(key: string): Promise<Buffer> {
    const path = this.path(key);
    const handle = await open(path, 'r').catch((err: unknown) => {
      throw storageError(err, 'read', `${this.location}/${key}`);
    });
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  async readRange(key: string, offset: number, length: number): Promise<Buffer> {
    const handle = await open(this.path(key), 'r').catch((err: unknown) => {
      throw storageError(err, 'read', `${this.location}/${key}`);
    });
    try {
      const buffer = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled < length) {
        throw new PgfError('STORAGE_IO', `${this.location}/${key} ends before byte ${offset + length}: the object is truncated`);
      }
      return buffer;
    } finally {
      await handle.close();
    }
  }

  async write(key: string, data: Buffer | Buffer[], options: WriteOptions = {}): Promise<void> {
    const path = this.path(key);
    const dir = dirname(path);
    const temporary = `${path}${temporaryMarker}${randomBytes(6).toString('hex')}`;
    const where = `${this.location}/${key}`;
    try {
      await mkdir(dir, { recursive: true });
      const handle = await open(temporary, 'wx', 0o640);
      try {
        for (const part of Array.isArray(data) ? data : [data]) await handle.write(part);
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
      await rm(temporary, { force: true });
      throw err instanceof PgfError ? err : storageError(err, 'write', where);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw storageError(err, 'delete', `${this.location}/${key}`);
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await stat(this.path(key));
      return st.isFile() ? { key, size: st.size, modifiedMs: st.mtimeMs } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw storageError(err, 'stat', `${this.location}/${key}`);
    }
  }

  async close(): Promise<void> {}
}
