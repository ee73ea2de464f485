/**
 * The push engine behind archive-push and the archive daemon. PostgreSQL's archiver hands over one
 * file at a time and waits; the engine pushes the requested file and, beside it, the next files
 * PostgreSQL has marked ready (`archive_status/*.ready`), up to `parallel` at once, so that later
 * calls find them done. Each file is read with its identity, validated, stored durably, and only
 * then marked done in the spool.
 */
import { open, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PgfError, isPgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { frameBound } from '../native/index.js';
import type { Repository } from '../repo/index.js';
import { parseWalFileName } from './names.js';
import { storeWalFile, type StoreOutcome } from './repository.js';
import { fileIdentity, type Spool } from './spool.js';
import { validateWalFile } from './validate.js';
import { previousSegmentName, previousSegmentTail, previousTailBytes, segmentTail, summarizeSegmentFile } from './summary.js';

export interface PushOptions {
  /**
   * Files pushed ahead at once, beside the one a caller asks for (each holds one file and its
   * compressed copy in memory).
   */
  parallel: number;
  log: Logger;
  /** Where done markers go; without one nothing is remembered between processes. */
  spool?: Spool;
  /** Ready files to push ahead in this engine's life (the daemon: unlimited). */
  aheadLimit?: number;
  /**
   * Push ahead only this long after the last push request. The daemon sets it: PostgreSQL keeps
   * asking only while archive_command points at us, and a user who switched it (to another
   * repository, or to /bin/false for a planned outage) must see archiving stop.
   */
  pushAheadWindowMs?: number;
}

/**
 * Reads a whole WAL file and the identity it had throughout the read, into `spare` when it has the
 * right size (a segment buffer reused from an earlier file: a fresh 16 MiB allocation costs page
 * faults and garbage collection on every segment).
 */
export async function readWalFile(path: string, spare?: Buffer): Promise<{ content: Buffer; identity: string }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new PgfError('WAL_NOT_FOUND', `cannot read ${path}: ${(err as Error).message} (archive_command must pass %p)`, { cause: err });
  }
  try {
    const stats = await handle.stat({ bigint: true });
    const before = fileIdentity(stats);
    // One read into a buffer of the known size: FileHandle.readFile reads in small pieces and copies.
    const size = Number(stats.size);
    const content = spare?.length === size ? spare : Buffer.allocUnsafe(size);
    for (let at = 0; at < content.length; ) {
      const { bytesRead } = await handle.read(content, at, content.length - at, at);
      if (bytesRead === 0) throw new PgfError('WAL_INVALID', `${path} got shorter while it was being read; nothing was archived (PostgreSQL retries)`);
      at += bytesRead;
    }
    const after = fileIdentity(await handle.stat({ bigint: true }));
    if (before !== after) throw new PgfError('WAL_INVALID', `${path} changed while it was being read; nothing was archived (PostgreSQL retries)`);
    return { content, identity: after };
  } finally {
    await handle.close();
  }
}

/**
 * Validates and stores one file, with the summary of a segment's records; resolves once it is
 * durable in the repository. `previous` is the tail of the segment before (summary.ts); `room`
 * is where the compressed data may be written (see encodeWalObject).
 */
export async function archiveWalContent(repo: Repository, name: string, content: Buffer, log: Logger, previous?: Buffer, room?: Buffer): Promise<StoreOutcome> {
  const file = parseWalFileName(name);
  if (file === undefined) {
    throw new PgfError('WAL_INVALID', `${name} is not a WAL segment, history or backup history file name: archive_command must pass %p`);
  }
  validateWalFile(file, content, repo.config);
  const summary =
    file.kind === 'segment' || file.kind === 'partial'
      ? summarizeSegmentFile(file, content, repo.config, previous).catch((err: unknown) => {
          // The header passed validation: a record the reader cannot follow must not stop archiving.
          log.warn({ file: name, err: isPgfError(err) ? `${err.code}: ${err.message}` : String(err) }, 'segment stored without a summary');
          return undefined;
        })
      : undefined;
  return storeWalFile(repo, file, content, summary, room);
}

/** History files first (PostgreSQL wants them early), then the oldest. */
function archiveOrder(a: string, b: string): number {
  const history = (name: string) => (name.endsWith('.history') ? 0 : 1);
  return history(a) - history(b) || (a < b ? -1 : a > b ? 1 : 0);
}

export class WalPusher {
  private readonly inFlight = new Map<string, Promise<StoreOutcome>>();
  /** Push-ahead failures: not retried until PostgreSQL asks for the file itself. */
  private readonly failed = new Set<string>();
  /** Files a caller waits for: their failures go to the caller, not to the log. */
  private readonly requested = new Set<string>();
  /** Archived by this engine and still marked ready: never pushed ahead twice, spool or not. */
  private readonly archived = new Set<string>();
  /**
   * Segment buffers of finished pushes, for the next reads. Up to `parallel` pushes ahead and the
   * file PostgreSQL asks for can be in flight: a buffer dropped here is a fresh 16 MiB next time,
   * and fresh memory costs a page fault per 4 KiB (15-30 µs each on a VM whose host reclaims it).
   */
  private readonly spares: Buffer[] = [];
  /** Buffers the compressed segments were written into, for the next ones (as many). */
  private readonly frameRooms: Buffer[] = [];
  /**
   * Tails of the latest segments pushed: the next segment's first record may start there, and by
   * the time it is pushed a checkpoint may have recycled the file.
   */
  private readonly tails = new Map<string, Buffer>();
  /** Tails that pushes in flight are reading, with how many: not reused until they are done. */
  private readonly tailReaders = new Map<Buffer, number>();
  /** Memory of tails no longer kept, for the next ones (copying each tail into fresh memory faulted). */
  private readonly tailRooms: Buffer[] = [];
  private walDir: string | undefined;
  private lastRequest = 0;
  private ready: string[] = [];
  private scanning = false;
  private rescan = false;
  private aheadLeft: number;

  constructor(
    private readonly repo: Repository,
    private readonly options: PushOptions,
  ) {
    this.aheadLeft = options.aheadLimit ?? Infinity;
  }

  get busy(): boolean {
    return this.inFlight.size > 0 || this.scanning;
  }

  /** Archives the file at `path` (PostgreSQL's %p) and pushes ahead the ready files beside it. */
  push(path: string): Promise<StoreOutcome> {
    const name = basename(path);
    this.lastRequest = Date.now();
    this.walDir ??= dirname(path);
    this.requested.add(name);
    const running = this.inFlight.get(name);
    const work = running ?? this.start(path);
    this.failed.delete(name);
    void this.scan();
    return work;
  }

  /** Looks for newly ready files (the daemon calls it when archive_status changes). */
  wake(): void {
    void this.scan();
  }

  /** Resolves when nothing is in flight any more. */
  async settle(): Promise<void> {
    while (this.busy) await Promise.allSettled([...this.inFlight.values()]).then(() => new Promise((resolve) => setImmediate(resolve)));
  }

  /** Names PostgreSQL still wants archived (for dropping stale done markers). */
  async readyNames(): Promise<Set<string>> {
    if (this.walDir === undefined) return new Set();
    const entries = await readdir(join(this.walDir, 'archive_status')).catch(() => []);
    return new Set(entries.filter((entry) => entry.endsWith('.ready')).map((entry) => entry.slice(0, -'.ready'.length)));
  }

  private start(path: string): Promise<StoreOutcome> {
    const name = basename(path);
    const work = this.archive(path, name);
    this.inFlight.set(name, work);
    work.then(
      () => this.settled(name),
      (err: unknown) => {
        this.failed.add(name);
        if (!this.requested.has(name)) this.options.log.warn({ file: name, err: isPgfError(err) ? `${err.code}: ${err.message}` : String(err) }, 'pushing ahead failed');
        this.settled(name);
      },
    );
    return work;
  }

  private settled(name: string): void {
    this.inFlight.delete(name);
    this.requested.delete(name);
    void this.scan();
  }

  private async archive(path: string, name: string): Promise<StoreOutcome> {
    const spare = this.spares.pop();
    const { content, identity } = await readWalFile(path, spare);
    const segmentSize = this.repo.config.walSegmentSize;
    const fullSegment = content.length === segmentSize;
    // Fresh memory for every segment's compressed copy costs page faults: rooms are reused.
    const room = fullSegment ? (this.frameRooms.pop() ?? Buffer.allocUnsafeSlow(frameBound(segmentSize))) : undefined;
    const before = fullSegment ? previousSegmentName(name, segmentSize) : undefined;
    const keptTail = before !== undefined ? this.tails.get(before) : undefined;
    if (keptTail !== undefined) this.tailReaders.set(keptTail, (this.tailReaders.get(keptTail) ?? 0) + 1);
    // The segment before is often still in flight (pushed ahead beside this one): its tail is read
    // from its file then, into memory given back once this push is done with it.
    const tailRoom = fullSegment && keptTail === undefined ? this.tailRooms.pop() : undefined;
    let outcome: StoreOutcome;
    try {
      const previous = fullSegment ? (keptTail ?? (await previousSegmentTail(path, segmentSize, tailRoom))) : undefined;
      outcome = await archiveWalContent(this.repo, name, content, this.options.log, previous, room);
      if (fullSegment && parseWalFileName(name)?.kind === 'segment') this.keepTail(name, content);
    } finally {
      // Nothing holds on to the content or its compressed copy once it is stored (or refused).
      const kept = this.options.parallel + 1;
      if (fullSegment && this.spares.length < kept) this.spares.push(content);
      if (room !== undefined && this.frameRooms.length < kept) this.frameRooms.push(room);
      if (keptTail !== undefined) this.doneReadingTail(keptTail);
      if (tailRoom !== undefined) this.reuseTail(tailRoom);
    }
    await this.options.spool?.markPushed(name, identity);
    this.archived.add(name);
    this.options.log.debug({ file: name, outcome }, 'archived');
    return outcome;
  }

  private aheadAllowed(): boolean {
    const window = this.options.pushAheadWindowMs;
    return window === undefined || Date.now() - this.lastRequest < window;
  }

  private keepTail(name: string, content: Buffer): void {
    const tail = segmentTail(content);
    const room = this.tailRooms.pop() ?? Buffer.allocUnsafe(previousTailBytes);
    this.tails.set(name, room.subarray(0, tail.copy(room)));
    for (const [old, buffer] of this.tails) {
      if (this.tails.size <= this.options.parallel + 2) break;
      this.tails.delete(old);
      this.reuseTail(buffer);
    }
  }

  private doneReadingTail(tail: Buffer): void {
    const readers = (this.tailReaders.get(tail) ?? 1) - 1;
    if (readers > 0) {
      this.tailReaders.set(tail, readers);
      return;
    }
    this.tailReaders.delete(tail);
    if (![...this.tails.values()].includes(tail)) this.reuseTail(tail);
  }

  private reuseTail(tail: Buffer): void {
    if (this.tailReaders.has(tail) || tail.length !== previousTailBytes || this.tailRooms.length > this.options.parallel + 1) return;
    this.tailRooms.push(tail);
  }

  private async scan(): Promise<void> {
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    this.scanning = true;
    try {
      do {
        this.rescan = false;
        while (this.inFlight.size < this.options.parallel && this.aheadLeft > 0 && this.aheadAllowed()) {
          const next = await this.nextReady();
          if (next === undefined) break;
          this.aheadLeft--;
          this.start(next).catch(() => undefined);
        }
      } while (this.rescan);
    } finally {
      this.scanning = false;
    }
  }

  /** The next ready file that is neither in flight, failed, nor already done. */
  private async nextReady(): Promise<string | undefined> {
    const walDir = this.walDir;
    if (walDir === undefined) return undefined;
    for (let refreshed = false; ; ) {
      const name = this.ready.shift();
      if (name === undefined) {
        if (refreshed) return undefined;
        const ready = await this.readyNames();
        for (const done of this.archived) if (!ready.has(done)) this.archived.delete(done);
        this.ready = [...ready].sort(archiveOrder);
        refreshed = true;
        continue;
      }
      if (this.inFlight.has(name) || this.failed.has(name) || this.archived.has(name) || parseWalFileName(name) === undefined) continue;
      const path = join(walDir, name);
      if (await this.alreadyPushed(path, name)) continue;
      return path;
    }
  }

  private async alreadyPushed(path: string, name: string): Promise<boolean> {
    const spool = this.options.spool;
    if (spool === undefined) return false;
    try {
      const handle = await open(path, 'r');
      try {
        return await spool.pushed(name, fileIdentity(await handle.stat({ bigint: true })));
      } finally {
        await handle.close();
      }
    } catch {
      // Gone: archived and recycled by PostgreSQL in the meantime.
      return true;
    }
  }
}
