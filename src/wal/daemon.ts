/**
 * The archive daemon: a long-lived pusher and fetcher that `pgforever-archive` starts on its first
 * call and talks to over `pusher.sock` in the spool (protocol in crates/archive-client/src/daemon.rs).
 * It holds the spool lock for its whole life through its standard input, which the client opened
 * and locked; it watches `archive_status` to push files as soon as PostgreSQL marks them ready,
 * but only while PostgreSQL keeps asking it to archive: once archive_command points elsewhere (or
 * to /bin/false for a planned outage) pushing ahead stops (the pusher's `pushAheadWindowMs`). It exits after
 * a spell without requests or work.
 */
import { fstatSync, watch, type FSWatcher } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { isPgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { timeoutError, withDeadline } from './deadline.js';
import type { WalFetcher } from './fetch.js';
import { parseWalFileName } from './names.js';
import type { WalPusher } from './push.js';
import type { Spool } from './spool.js';

export interface DaemonOptions {
  spool: Spool;
  /** The repository, for messages. */
  location: string;
  pusher: WalPusher;
  fetcher: WalFetcher;
  /** Exit after this long without requests or work. */
  idleExitMs: number;
  /** Longest wait on one file before answering with an error; the work itself goes on. */
  timeoutMs: number;
  log: Logger;
}

const MAX_REQUEST_BYTES = 8192;

/** Whether standard input is the spool's lock file, which the client locked before starting us. */
export async function holdsSpoolLock(spool: Spool): Promise<boolean> {
  try {
    const own = fstatSync(0);
    const lock = await stat(spool.lockPath);
    return own.dev === lock.dev && own.ino === lock.ino;
  } catch {
    return false;
  }
}

/** One line, as the client prints it to PostgreSQL's log. */
export function oneLine(err: unknown): string {
  const text = isPgfError(err) ? `${err.code}: ${err.message}` : `unexpected error: ${err instanceof Error ? err.message : String(err)}`;
  return text.replace(/\s*\n\s*/g, ' ');
}

function readRequest(socket: Socket): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buffered = '';
    const done = (line: string | undefined) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      resolve(line);
    };
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const end = buffered.indexOf('\n');
      if (end >= 0) done(buffered.slice(0, end));
      else if (buffered.length > MAX_REQUEST_BYTES) done(undefined);
    };
    const onEnd = () => done(undefined);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}

export async function runArchiveDaemon(options: DaemonOptions): Promise<void> {
  const { spool, pusher, fetcher, log } = options;
  // Only the lock holder gets here: a socket file left behind belongs to a dead daemon.
  await rm(spool.socketPath, { force: true });
  await fetcher.clear();
  await pusher.resumeSummaries();

  let lastActivity = Date.now();
  let connections = 0;
  let watcher: FSWatcher | undefined;
  let stopping: ((why: string) => void) | undefined;

  const fileName = (arg: string): string | undefined => (parseWalFileName(arg) === undefined ? undefined : arg);

  const watchReady = (walDir: string) => {
    if (watcher !== undefined) return;
    try {
      watcher = watch(join(walDir, 'archive_status'), () => pusher.wake());
      watcher.on('error', () => stopping?.('archive_status is gone'));
    } catch (err) {
      log.warn({ walDir, err: (err as Error).message }, 'cannot watch archive_status; pushing ahead only on requests');
    }
  };

  const answer = async (line: string): Promise<string | undefined> => {
    const space = line.indexOf(' ');
    const verb = space < 0 ? line : line.slice(0, space);
    const arg = space < 0 ? '' : line.slice(space + 1);
    try {
      switch (verb) {
        case 'push': {
          if (!isAbsolute(arg) || fileName(basename(arg)) === undefined) return `error USAGE: not an absolute path to a WAL file: ${arg}`;
          watchReady(dirname(arg));
          await withDeadline(pusher.push(arg), options.timeoutMs, timeoutError(`archiving ${basename(arg)} to ${options.location}`, options.timeoutMs));
          return 'ok';
        }
        case 'get': {
          const name = fileName(arg);
          if (name === undefined) return `error USAGE: not a WAL file name: ${arg}`;
          const outcome = await withDeadline(fetcher.fetch(name), options.timeoutMs, timeoutError(`fetching ${name} from ${options.location}`, options.timeoutMs));
          return outcome === 'fetched' ? 'ok' : 'missing';
        }
        case 'consumed': {
          const name = fileName(arg);
          if (name !== undefined) fetcher.consumed(name);
          return undefined;
        }
        case 'prefetch': {
          const name = fileName(arg);
          if (name === undefined) return `error USAGE: not a WAL file name: ${arg}`;
          fetcher.prefetch(name);
          return 'ok';
        }
        default:
          return `error USAGE: unknown request ${verb}`;
      }
    } catch (err) {
      log.warn({ request: line, err: oneLine(err) }, 'request failed');
      return `error ${oneLine(err)}`;
    }
  };

  // The first message loads pino, tens of milliseconds on a cold start: the client that started
  // this daemon, and PostgreSQL behind it, get their answer first.
  let announced = false;
  const announce = () => {
    if (announced) return;
    announced = true;
    log.info({ spool: spool.root, pid: process.pid }, 'archive daemon started');
  };

  const serve = async (socket: Socket) => {
    socket.on('error', () => undefined);
    const line = await readRequest(socket);
    const reply = line === undefined ? undefined : await answer(line);
    if (reply === undefined) socket.end(announce);
    else socket.end(`${reply}\n`, announce);
  };

  const server = createServer((socket) => {
    connections++;
    lastActivity = Date.now();
    void serve(socket).finally(() => {
      connections--;
      lastActivity = Date.now();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(spool.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const why = await new Promise<string>((resolve) => {
    const check = setInterval(() => {
      void stat(spool.root).then(
        () => {
          if (pusher.busy || fetcher.busy || connections > 0) lastActivity = Date.now();
          else if (Date.now() - lastActivity >= options.idleExitMs) stopping?.('idle');
        },
        () => stopping?.('the spool is gone'),
      );
    }, Math.min(1000, options.idleExitMs));
    stopping = (reason) => {
      clearInterval(check);
      resolve(reason);
    };
  });
  announce();
  watcher?.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await pusher.settle();
  await fetcher.settle();
  await spool.forgetPushed(await pusher.readyNames()).catch(() => undefined);
  await fetcher.clear().catch(() => undefined);
  log.info({ reason: why }, 'archive daemon stopped');
}
