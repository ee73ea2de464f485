/**
 * The local spool shared by the Node side and the `pgforever-archive` client
 * (crates/archive-client/src/spool.rs reads the same layout):
 *
 * - `done/<name>`: `pgforever-done 1 <size> <dev> <ino> <mtime-ns> <ctime-ns>`, the identity of the
 *   file that was read, validated and stored. Written only after the repository write is durable,
 *   so a marker never runs ahead of the repository. It is a cache: it is not fsynced, and a lost
 *   or damaged marker only sends the next call down the slow path, which finds the object in the
 *   repository and succeeds.
 * - `prefetch/<name>`: a WAL file fetched and validated ahead of recovery's request; written under a
 *   temporary name, fsynced and renamed, so a present name is a complete file.
 * - `unsummarized/<name>`: `<identity>\n<path>`, a segment the daemon stored without its summary
 *   (push.ts), until the summary is stored too: a daemon started after one that was killed
 *   summarises what it left. Not fsynced: a lost marker costs only a summary made on demand later.
 * - `pusher.lock`, `pusher.sock`, `pusher.log`: the daemon's lock, socket and output.
 *
 * The default spool is `pg_wal/pgforever/<key>` in the data directory: always writable by the
 * server's user, excluded from every base backup (pg_wal contents are), on the WAL's filesystem (a
 * prefetched segment is renamed, not copied, onto `pg_wal/RECOVERYXLOG`), and separate for each
 * repository (`key` comes from the repository location), so switching repositories starts clean.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PgfError } from '../errors/index.js';

const MARKER_PREFIX = 'pgforever-done 1 ';

/** What makes a file the same, unmodified file: any write or rename changes its ctime. */
export function fileIdentity(stats: Pick<BigIntStats, 'size' | 'dev' | 'ino' | 'mtimeNs' | 'ctimeNs'>): string {
  return `${stats.size} ${stats.dev} ${stats.ino} ${stats.mtimeNs} ${stats.ctimeNs}`;
}

/** The repository's location as the spool key is computed from it. */
export function repositoryLocation(repo: string): string {
  return repo.startsWith('s3://') ? repo : resolve(repo);
}

/**
 * `<walDir>/pgforever/<key>`. PostgreSQL runs archive_command and restore_command in the data
 * directory and passes `pg_wal/...` paths, so `pg_wal` as `walDir` names the same place for all.
 */
export function defaultSpool(walDir: string, repo: string): string {
  const key = createHash('sha256').update(repositoryLocation(repo)).digest('hex').slice(0, 12);
  return join(walDir, 'pgforever', key);
}

/** The default spool for files in `walDir` when it is a server's pg_wal (it has archive_status). */
export async function spoolBeside(walDir: string, repo: string): Promise<string | undefined> {
  const isWalDir = await stat(join(walDir, 'archive_status')).then(
    (info) => info.isDirectory(),
    () => false,
  );
  return isWalDir ? defaultSpool(walDir, repo) : undefined;
}

/**
 * mkdir -p that ends. Node's own recursive mkdir never settles for a relative path once the working
 * directory is removed (ENOENT at every level, retried forever at full CPU): a daemon started in a
 * data directory deleted meanwhile would spin instead of failing. One call when the path exists.
 */
async function makeDirectories(path: string, mode: number): Promise<void> {
  const made = (err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  };
  try {
    await mkdir(path, { mode });
  } catch (err) {
    const parent = dirname(path);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === path) return made(err);
    await makeDirectories(parent, mode);
    await mkdir(path, { mode }).catch(made);
  }
}

export class Spool {
  private constructor(readonly root: string) {}

  /** Creates the spool (0700) if needed; refuses one that other users could write to. */
  static async open(root: string): Promise<Spool> {
    try {
      await makeDirectories(join(root, 'done'), 0o700);
      await makeDirectories(join(root, 'prefetch'), 0o700);
      await makeDirectories(join(root, 'unsummarized'), 0o700);
    } catch (err) {
      throw new PgfError('ARCHIVE_SPOOL', `cannot create the spool ${root}: ${(err as Error).message}; give --spool a directory the server's OS user can write`, { cause: err });
    }
    const info = await stat(root);
    const uid = process.getuid?.();
    if ((uid !== undefined && info.uid !== uid) || (info.mode & 0o022) !== 0) {
      throw new PgfError('ARCHIVE_SPOOL', `the spool ${root} must belong to this user and be writable by nobody else (uid ${info.uid}, mode ${(info.mode & 0o7777).toString(8)})`);
    }
    return new Spool(root);
  }

  get socketPath(): string {
    return join(this.root, 'pusher.sock');
  }

  get lockPath(): string {
    return join(this.root, 'pusher.lock');
  }

  private donePath(name: string): string {
    return join(this.root, 'done', name);
  }

  prefetchPath(name: string): string {
    return join(this.root, 'prefetch', name);
  }

  private temporary(dir: string, name: string): string {
    return join(this.root, dir, `.${name}.${randomBytes(4).toString('hex')}`);
  }

  /** Whether the file with this identity is already durable in the repository. */
  async pushed(name: string, identity: string): Promise<boolean> {
    const marker = await readFile(this.donePath(name), 'utf8').catch(() => '');
    return marker.trimEnd() === `${MARKER_PREFIX}${identity}`;
  }

  /** Call only once the repository write is durable. */
  async markPushed(name: string, identity: string): Promise<void> {
    const temporary = this.temporary('done', name);
    await writeFile(temporary, `${MARKER_PREFIX}${identity}\n`, { mode: 0o600 });
    await rename(temporary, this.donePath(name));
  }

  /** Drops markers of files PostgreSQL no longer asks for (names not in `wanted`). */
  async forgetPushed(wanted: ReadonlySet<string>): Promise<void> {
    for (const name of await readdir(join(this.root, 'done'))) {
      if (!wanted.has(name)) await rm(this.donePath(name), { force: true });
    }
  }

  private unsummarizedPath(name: string): string {
    return join(this.root, 'unsummarized', name);
  }

  /** Remembers a segment stored without its summary: `path` is where it was read, `identity` what it was. */
  async markUnsummarized(name: string, path: string, identity: string): Promise<void> {
    const temporary = this.temporary('unsummarized', name);
    await writeFile(temporary, `${identity}\n${path}\n`, { mode: 0o600 });
    await rename(temporary, this.unsummarizedPath(name));
  }

  async markSummarized(name: string): Promise<void> {
    await rm(this.unsummarizedPath(name), { force: true });
  }

  /**
   * The segments stored without their summary that no daemon has summarised yet. Call only as the
   * lock holder: what a killed writer left half written is removed.
   */
  async listUnsummarized(): Promise<{ name: string; path: string; identity: string }[]> {
    const found: { name: string; path: string; identity: string }[] = [];
    for (const name of await readdir(join(this.root, 'unsummarized'))) {
      const [identity, path] = (await readFile(this.unsummarizedPath(name), 'utf8').catch(() => '')).split('\n');
      if (!name.startsWith('.') && identity && path) found.push({ name, path, identity });
      else await rm(this.unsummarizedPath(name), { force: true });
    }
    return found;
  }

  async hasPrefetched(name: string): Promise<boolean> {
    return stat(this.prefetchPath(name)).then(
      () => true,
      () => false,
    );
  }

  async writePrefetched(name: string, content: Buffer): Promise<void> {
    const temporary = this.temporary('prefetch', name);
    try {
      const handle = await open(temporary, 'wx', 0o600);
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.prefetchPath(name));
    } catch (err) {
      await rm(temporary, { force: true });
      throw err;
    }
  }

  async listPrefetched(): Promise<string[]> {
    return (await readdir(join(this.root, 'prefetch'))).filter((name) => !name.startsWith('.'));
  }

  async removePrefetched(name: string): Promise<void> {
    await rm(this.prefetchPath(name), { force: true });
  }
}
