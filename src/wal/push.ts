/**
 * The push engine behind archive-push and the archive daemon. PostgreSQL's archiver hands over one
 * file at a time and waits; the engine pushes the requested file and, beside it, the next files
 * PostgreSQL has marked ready (`archive_status/*.ready`), up to `parallel` at once, so that later
 * calls find them done. Each file is read with its identity, validated, stored durably, and only
 * then marked done in the spool.
 *
 * A segment's summary is about a fifth of the CPU its push costs (parsing and checking every
 * record). With `deferSummaries` (the daemon), a segment pushed while others are in flight or
 * waiting is stored without one, and summarised once nothing is left to push: while a backlog
 * drains, pg_wal filling up is the risk and the archive comes first. The spool remembers which
 * segments wait for one, so a daemon killed before it got to them leaves them to the next; whoever
 * needs a summary that was never stored makes it (positions.ts).
 */
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PgfError, isPgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { encodeWalSegmentFile, frameBound, summarizeWalSegmentFile, type EncodedWalSegment, type WalSegmentContext } from '../native/index.js';
import type { Repository } from '../repo/index.js';
import { parseWalFileName, segmentNumber, type WalFileName } from './names.js';
import { loadWalFile, storeCompressedSegment, storeWalFile, storeWalSummary, walCompressLevel, type StoreOutcome } from './repository.js';
import { fileIdentity, type Spool } from './spool.js';
import { validateSegmentHead, validateWalFile } from './validate.js';
import { previousSegmentName, previousSegmentTail, previousTailBytes, segmentTail, storedSummary, summarizeSegmentFile, type StoredWalSummary } from './summary.js';

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
  /** Store segments pushed beside others without their summary, and summarise them once idle. */
  deferSummaries?: boolean;
}

/** A segment stored without its summary, and the identity its file had then. */
interface Unsummarized {
  path: string;
  file: WalFileName;
  identity: string;
  /** Failed tries so far (the repository or the file system failing). */
  attempts: number;
}

/** After a failed try, summaries wait this long; after this many tries, the next daemon tries. */
const summaryRetryMs = 30_000;
const summaryAttempts = 3;

/** Opens a WAL file PostgreSQL passed (%p). */
async function openWalFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    throw new PgfError('WAL_NOT_FOUND', `cannot read ${path}: ${(err as Error).message} (archive_command must pass %p)`, { cause: err });
  }
}

/** Reads a whole WAL file and the identity it had throughout the read. */
export async function readWalFile(path: string): Promise<{ content: Buffer; identity: string }> {
  const handle = await openWalFile(path);
  try {
    const stats = await handle.stat({ bigint: true });
    const before = fileIdentity(stats);
    // One read into a buffer of the known size: FileHandle.readFile reads in small pieces and copies.
    const content = Buffer.allocUnsafe(Number(stats.size));
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

/** The segment file at `path`, open only while encodeWalSegmentFile maps and encodes it. */
async function encodeSegmentFile(path: string, context: WalSegmentContext, summarize: boolean, buffers: { room: Buffer; previous?: Buffer; tail?: Buffer }): Promise<EncodedWalSegment> {
  const handle = await openWalFile(path);
  try {
    return await encodeWalSegmentFile(handle.fd, path, context, { level: walCompressLevel, summarize }, buffers);
  } finally {
    await handle.close();
  }
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
   * Buffers segments were compressed into, for the next ones: up to `parallel` pushes ahead and the
   * file PostgreSQL asks for can be in flight, and fresh memory costs a page fault per 4 KiB (15-30 µs
   * each on a VM whose host reclaims it).
   */
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
  /** Segments stored without their summary, oldest first. */
  private readonly unsummarized: Unsummarized[] = [];
  private summarizing: Promise<void> | undefined;
  /** Set while summaries wait after a failed try. */
  private summaryRetry: NodeJS.Timeout | undefined;
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

  /** Pushing, or summaries to make (not those waiting after a failed try: their spool markers keep them for later). */
  get busy(): boolean {
    return this.inFlight.size > 0 || this.scanning || this.summarizing !== undefined || (this.unsummarized.length > 0 && this.summaryRetry === undefined);
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

  /** Resolves when nothing is in flight any more and every segment stored without a summary has one. */
  async settle(): Promise<void> {
    while (this.busy) {
      await Promise.allSettled([...this.inFlight.values(), this.summarizing]).then(() => new Promise((resolve) => setImmediate(resolve)));
      this.summarizeDeferred();
    }
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
    const file = parseWalFileName(name);
    if (file === undefined) {
      throw new PgfError('WAL_INVALID', `${name} is not a WAL segment, history or backup history file name: archive_command must pass %p`);
    }
    // Before this push is in flight: other pushes running or waiting make a backlog.
    const summarize = !this.options.deferSummaries || (this.inFlight.size === 0 && this.ready.length === 0);
    const { outcome, identity } = file.kind === 'segment' || file.kind === 'partial' ? await this.archiveSegment(path, file, summarize) : await this.archiveSmallFile(path, file);
    await this.options.spool?.markPushed(name, identity);
    this.archived.add(name);
    this.options.log.debug({ file: name, outcome }, 'archived');
    return outcome;
  }

  /** History and backup history files. */
  private async archiveSmallFile(path: string, file: WalFileName): Promise<{ outcome: StoreOutcome; identity: string }> {
    const { content, identity } = await readWalFile(path);
    validateWalFile(file, content, this.repo.config);
    return { outcome: await storeWalFile(this.repo, file, content), identity };
  }

  /**
   * A segment or .partial file: read, summarised (unless not `summarize`) and compressed in one native
   * call (encodeWalSegmentFile), checked, then stored. Its tail is kept for the next segment's first record.
   */
  private async archiveSegment(path: string, file: WalFileName, summarize: boolean): Promise<{ outcome: StoreOutcome; identity: string }> {
    const config = this.repo.config;
    const segmentSize = config.walSegmentSize;
    const room = this.frameRooms.pop() ?? Buffer.allocUnsafeSlow(frameBound(segmentSize));
    const before = summarize ? previousSegmentName(file.name, segmentSize) : undefined;
    const keptTail = before !== undefined ? this.tails.get(before) : undefined;
    if (keptTail !== undefined) this.tailReaders.set(keptTail, (this.tailReaders.get(keptTail) ?? 0) + 1);
    // The segment before is often still in flight (pushed ahead beside this one): its tail is read
    // from its file then, into memory given back once this push is done with it.
    const tailRoom = before !== undefined && keptTail === undefined ? this.tailRooms.pop() : undefined;
    // A .partial ends its timeline: no segment follows it there.
    const ownTail = file.kind === 'segment' ? (this.tailRooms.pop() ?? Buffer.allocUnsafe(previousTailBytes)) : undefined;
    let tailKept = false;
    try {
      const previous = before === undefined ? undefined : (keptTail ?? (await previousSegmentTail(path, segmentSize, tailRoom)));
      const read = await encodeSegmentFile(path, this.segmentContext(file), summarize, { room, ...(previous !== undefined ? { previous } : {}), ...(ownTail !== undefined ? { tail: ownTail } : {}) });
      const size = Number(read.stat.size);
      validateSegmentHead(file, read.head, size, config);
      if (read.summaryError !== undefined) {
        // The header passed validation: a record the reader cannot follow must not stop archiving.
        this.options.log.warn({ file: file.name, err: `${read.summaryError.code}: ${read.summaryError.message}` }, 'segment stored without a summary');
      }
      const summary = read.summary !== undefined ? storedSummary(read.summary) : undefined;
      const outcome = await storeCompressedSegment(this.repo, file, { size, zeroFrom: read.zeroFrom, frame: read.frame, summary }, async () => (await readWalFile(path)).content);
      if (ownTail !== undefined) {
        this.keepTail(file.name, ownTail);
        tailKept = true;
      }
      const identity = fileIdentity(read.stat);
      if (!summarize && outcome === 'stored' && size === segmentSize) {
        // The segment is stored: a spool that cannot take the marker (pg_wal full) only leaves the
        // summary to this daemon's memory.
        await this.options.spool?.markUnsummarized(file.name, path, identity).catch((err: unknown) => {
          this.options.log.warn({ file: file.name, err: (err as Error).message }, 'cannot note in the spool that a summary is pending');
        });
        this.unsummarized.push({ path, file, identity, attempts: 0 });
      }
      return { outcome, identity };
    } finally {
      // Nothing holds on to the compressed copy once it is stored (or refused).
      if (this.frameRooms.length < this.options.parallel + 1) this.frameRooms.push(room);
      if (keptTail !== undefined) this.doneReadingTail(keptTail);
      if (tailRoom !== undefined) this.reuseTail(tailRoom);
      if (ownTail !== undefined && !tailKept) this.reuseTail(ownTail);
    }
  }

  private segmentContext(file: WalFileName): WalSegmentContext {
    const { walSegmentSize, pgMajor, systemIdentifier } = this.repo.config;
    return { segmentSize: walSegmentSize, pgMajor, timeline: parseInt(file.timeline, 16), segmentNo: segmentNumber(file.segment!, walSegmentSize), systemIdentifier };
  }

  /** Takes over the segments a daemon before this one stored without their summary and left so. */
  async resumeSummaries(): Promise<void> {
    for (const left of (await this.options.spool?.listUnsummarized()) ?? []) {
      const file = parseWalFileName(left.name);
      if (file?.segment === undefined) {
        await this.options.spool?.markSummarized(left.name);
        continue;
      }
      if (this.unsummarized.some((u) => u.file.name === left.name)) continue;
      this.unsummarized.push({ path: left.path, file, identity: left.identity, attempts: 0 });
    }
    this.summarizeDeferred();
  }

  /**
   * Summarises the segments stored without one, oldest first, while nothing is being pushed. A try
   * that fails (the repository or the file system) puts the rest off for summaryRetryMs; a segment
   * that failed summaryAttempts times is left to the next daemon (its spool marker stays).
   */
  private summarizeDeferred(): void {
    if (this.summarizing !== undefined || this.summaryRetry !== undefined || this.unsummarized.length === 0 || this.inFlight.size > 0 || this.scanning) return;
    this.unsummarized.sort((a, b) => archiveOrder(a.file.name, b.file.name));
    this.summarizing = (async () => {
      while (this.inFlight.size === 0 && !this.scanning) {
        const next = this.unsummarized.shift();
        if (next === undefined) break;
        try {
          await this.summarizeStored(next);
          await this.options.spool?.markSummarized(next.file.name);
        } catch (err) {
          this.options.log.warn({ file: next.file.name, err: isPgfError(err) ? `${err.code}: ${err.message}` : String(err) }, 'summary of a segment stored without one not recorded');
          if (isPgfError(err, 'STORAGE_NOT_FOUND')) {
            // The segment itself is gone: nothing to summarise.
            await this.options.spool?.markSummarized(next.file.name).catch(() => undefined);
            continue;
          }
          if (++next.attempts < summaryAttempts) this.unsummarized.unshift(next);
          this.summaryRetry = setTimeout(() => {
            this.summaryRetry = undefined;
            this.summarizeDeferred();
          }, summaryRetryMs).unref();
          break;
        }
      }
    })().finally(() => {
      this.summarizing = undefined;
      this.summarizeDeferred();
    });
  }

  /**
   * The summary of a segment stored without one, from its file while PostgreSQL still has it
   * unchanged, else from the repository; with the record it starts inside when the segment before
   * is at hand.
   */
  private async summarizeStored({ path, file, identity }: Unsummarized): Promise<void> {
    const segmentSize = this.repo.config.walSegmentSize;
    const before = previousSegmentName(file.name, segmentSize);
    const keptTail = before !== undefined ? this.tails.get(before) : undefined;
    if (keptTail !== undefined) this.tailReaders.set(keptTail, (this.tailReaders.get(keptTail) ?? 0) + 1);
    const tailRoom = keptTail === undefined ? this.tailRooms.pop() : undefined;
    try {
      const previous = keptTail ?? (await previousSegmentTail(path, segmentSize, tailRoom)) ?? (await this.storedTail(before));
      const read = await this.summarizeFile(path, file, identity, previous);
      if (read.summaryError !== undefined) {
        this.options.log.warn({ file: file.name, err: `${read.summaryError.code}: ${read.summaryError.message}` }, 'segment stored without a summary');
        return;
      }
      await storeWalSummary(this.repo, file, read.summary);
    } finally {
      if (keptTail !== undefined) this.doneReadingTail(keptTail);
      if (tailRoom !== undefined) this.reuseTail(tailRoom);
    }
  }

  private async summarizeFile(path: string, file: WalFileName, identity: string, previous: Buffer | undefined): Promise<{ summary: StoredWalSummary; summaryError?: undefined } | { summaryError: PgfError }> {
    const handle = await open(path, 'r').catch(() => undefined);
    if (handle !== undefined) {
      try {
        if (fileIdentity(await handle.stat({ bigint: true })) === identity) {
          // WAL_INVALID: PostgreSQL recycled the file while it was read.
          const read = await summarizeWalSegmentFile(handle.fd, path, this.segmentContext(file), previous).catch((err: unknown) => {
            if (isPgfError(err, 'WAL_INVALID')) return undefined;
            throw err;
          });
          if (read !== undefined && fileIdentity(read.stat) === identity) {
            if (read.summary !== undefined) return { summary: storedSummary(read.summary) };
            if (read.summaryError !== undefined) return { summaryError: read.summaryError };
          }
        }
      } finally {
        await handle.close();
      }
    }
    // Recycled or removed by PostgreSQL since: the stored copy.
    const content = await loadWalFile(this.repo, file);
    if (content === undefined) throw new PgfError('STORAGE_NOT_FOUND', `${file.name} is no longer in ${this.repo.location}`);
    return summarizeSegmentFile(file, content, this.repo.config, previous).then(
      (summary) => ({ summary }),
      (err: unknown) => ({ summaryError: isPgfError(err) ? err : new PgfError('WAL_INVALID', String(err)) }),
    );
  }

  /** The tail of the segment named `name`, from the repository. */
  private async storedTail(name: string | undefined): Promise<Buffer | undefined> {
    if (name === undefined) return undefined;
    const content = await loadWalFile(this.repo, parseWalFileName(name)!).catch(() => undefined);
    return content && segmentTail(content);
  }

  private aheadAllowed(): boolean {
    const window = this.options.pushAheadWindowMs;
    return window === undefined || Date.now() - this.lastRequest < window;
  }

  private keepTail(name: string, tail: Buffer): void {
    this.tails.set(name, tail);
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
      this.summarizeDeferred();
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
