/**
 * archive-push and archive-get as one-shot commands (`pgforever archive-push %p`,
 * `pgforever archive-get %f %p`): the same engines as the daemon, for one request, with the spool
 * shared with it. Success is reported only once the file is durable in the repository.
 */
import { open, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../log/index.js';
import { Repository } from '../repo/index.js';
import type { Storage } from '../storage/index.js';
import { timeoutError, withDeadline } from './deadline.js';
import { WalFetcher, loadValidatedWalFile } from './fetch.js';
import { parseWalFileName } from './names.js';
import { WalPusher } from './push.js';
import type { StoreOutcome } from './repository.js';
import { Spool, fileIdentity } from './spool.js';

export interface OneShotOptions {
  /** The spool directory (see spool.ts), or undefined to work without one. */
  spool: string | undefined;
  parallel: number;
  timeoutMs: number;
  log: Logger;
}

async function openSpool(root: string | undefined, log: Logger): Promise<Spool | undefined> {
  if (root === undefined) return undefined;
  try {
    return await Spool.open(root);
  } catch (err) {
    // The spool only saves work; without it every call goes to the repository.
    log.debug({ spool: root, err: (err as Error).message }, 'working without the spool');
    return undefined;
  }
}

/** The repository on `storage`, within the deadline. */
export function openRepository(storage: Storage, timeoutMs: number): Promise<Repository> {
  return withDeadline(Repository.open(storage), timeoutMs, timeoutError(`opening the repository at ${storage.location}`, timeoutMs));
}

/**
 * Archives the file at `path` and pushes ahead a few ready files beside it. The repository is
 * only read when the spool does not already say the file is archived. Closes `storage`, which
 * also cuts short requests still hanging on a stalled store, so the process can exit.
 */
export async function pushWalFile(storage: Storage, path: string, options: OneShotOptions): Promise<StoreOutcome> {
  try {
    const spool = await openSpool(options.spool, options.log);
    if (spool !== undefined) {
      const identity = await stat(path, { bigint: true }).then(fileIdentity, () => undefined);
      if (identity !== undefined && (await spool.pushed(basename(path), identity))) return 'already-archived';
    }
    const deadline = Date.now() + options.timeoutMs;
    const repo = await openRepository(storage, options.timeoutMs);
    const pusher = new WalPusher(repo, { ...options, spool, aheadLimit: options.parallel * 2 });
    const left = () => Math.max(1, deadline - Date.now());
    const outcome = await withDeadline(pusher.push(path), left(), timeoutError(`archiving ${basename(path)} to ${repo.location}`, options.timeoutMs));
    // Files pushed ahead are a bonus: their failures are logged, and a stalled store is cut short.
    await withDeadline(pusher.settle(), left(), timeoutError('pushing ahead', options.timeoutMs)).catch(() => undefined);
    return outcome;
  } finally {
    await storage.close();
  }
}

/** Writes `content` to `destination` atomically: a temporary name beside it, fsync, rename. */
export async function writeAtomically(destination: string, content: Buffer): Promise<void> {
  const temporary = join(dirname(destination), `.${basename(destination)}.pgforever-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, destination);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
}

/**
 * Restores `name` to `destination` (PostgreSQL's %f and %p) and prefetches the next segments into
 * the spool; false, with nothing written, when the repository does not have it.
 */
export async function getWalFile(storage: Storage, name: string, destination: string, options: OneShotOptions & { prefetch: number }): Promise<boolean> {
  try {
    if (parseWalFileName(name) === undefined) return false;
    const spool = await openSpool(options.spool, options.log);
    if (spool !== undefined) {
      try {
        await rename(spool.prefetchPath(name), destination);
        return true;
      } catch {
        // Not prefetched (or the spool is on another filesystem): fetch it.
      }
    }
    const deadline = Date.now() + options.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const repo = await openRepository(storage, options.timeoutMs);
    const fetcher = spool === undefined ? undefined : new WalFetcher(repo, { ...options, spool });
    const content = await withDeadline(loadValidatedWalFile(repo, name), left(), timeoutError(`fetching ${name} from ${repo.location}`, options.timeoutMs));
    if (content === undefined) return false;
    fetcher?.prefetchAfter(name);
    await writeAtomically(destination, content);
    if (fetcher !== undefined) await withDeadline(fetcher.settle(), left(), timeoutError('prefetching', options.timeoutMs)).catch(() => undefined);
    return true;
  } finally {
    await storage.close();
  }
}
