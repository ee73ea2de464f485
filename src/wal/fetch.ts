/**
 * The fetch engine behind archive-get and the archive daemon. Recovery asks for one segment at a
 * time and replays it before asking for the next; the engine fetches the requested file and the
 * next `prefetch` segments of the same timeline, `parallel` at once, into the spool's `prefetch/`,
 * so that the following requests are a rename. Everything is validated before it is kept: frame
 * CRCs, and for a segment the header (system identifier, timeline, position, version).
 */
import { PgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Repository } from '../repo/index.js';
import { nextSegmentName, parseWalFileName } from './names.js';
import { loadWalFile } from './repository.js';
import type { Spool } from './spool.js';
import { validateWalFile } from './validate.js';

export interface FetchOptions {
  /** Files fetched at once. */
  parallel: number;
  /** Segments kept ready beyond the last one recovery asked for. */
  prefetch: number;
  spool: Spool;
  log: Logger;
}

export type FetchOutcome = 'fetched' | 'missing';

/** The validated file, or undefined when the repository does not have it. */
export async function loadValidatedWalFile(repo: Repository, name: string): Promise<Buffer | undefined> {
  const file = parseWalFileName(name);
  if (file === undefined) return undefined;
  const content = await loadWalFile(repo, file);
  if (content === undefined) return undefined;
  try {
    validateWalFile(file, content, repo.config);
  } catch (err) {
    throw new PgfError('REPO_CORRUPT', `archived ${name} in ${repo.location} does not belong here: ${(err as Error).message.replace(/; nothing was archived$/, '')}; run pgforever verify`, { cause: err });
  }
  return content;
}

export class WalFetcher {
  private readonly inFlight = new Map<string, Promise<FetchOutcome>>();
  /** Segments the repository did not have when prefetching reached them; asked again only on request. */
  private readonly missing = new Set<string>();
  /** The last segment recovery asked for or took: prefetching covers the segments after it. */
  private position: string | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly options: FetchOptions,
  ) {}

  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  /** Makes `prefetch/<name>` in the spool hold the validated file, and prefetches beyond it. */
  async fetch(name: string): Promise<FetchOutcome> {
    this.missing.delete(name);
    this.advance(name);
    if (await this.options.spool.hasPrefetched(name)) return 'fetched';
    return this.inFlight.get(name) ?? this.start(name);
  }

  /** Recovery took `name` from the spool: keep the window full beyond it. */
  consumed(name: string): void {
    this.advance(name);
  }

  /**
   * Fetches `name` alone into the spool, in the background, before anyone asks for it: a restore
   * names the first segment its recovery will want. Its failure is logged, and a request for it
   * later fetches it again.
   */
  prefetch(name: string): void {
    if (this.inFlight.has(name)) return;
    void this.options.spool.hasPrefetched(name).then((present) => {
      if (!present && !this.inFlight.has(name)) this.start(name).catch(() => undefined);
    });
  }

  /** Starts prefetching the segments after `name` (for a caller that fetched `name` itself). */
  prefetchAfter(name: string): void {
    this.advance(name);
  }

  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight.values()]);
  }

  /** Drops prefetched files: nobody will ask for them once this engine stops. */
  async clear(): Promise<void> {
    for (const name of await this.options.spool.listPrefetched()) await this.options.spool.removePrefetched(name);
  }

  private advance(name: string): void {
    if (parseWalFileName(name)?.kind !== 'segment') return;
    if (this.position === undefined || name.slice(0, 8) !== this.position.slice(0, 8) || name > this.position) this.position = name;
    void this.fill();
  }

  private start(name: string): Promise<FetchOutcome> {
    const work = this.fetchOne(name);
    this.inFlight.set(name, work);
    work.then(
      (outcome) => {
        if (outcome === 'missing') this.missing.add(name);
        this.inFlight.delete(name);
        void this.fill();
      },
      (err: unknown) => {
        this.options.log.warn({ file: name, err: (err as Error).message }, 'archive-get prefetch failed');
        this.missing.add(name);
        this.inFlight.delete(name);
      },
    );
    return work;
  }

  private async fetchOne(name: string): Promise<FetchOutcome> {
    const content = await loadValidatedWalFile(this.repo, name);
    if (content === undefined) return 'missing';
    await this.options.spool.writePrefetched(name, content);
    return 'fetched';
  }

  private filling = false;
  private refill = false;

  /** Starts fetches for the window after `position`, stopping at the first known-missing segment. */
  private async fill(): Promise<void> {
    if (this.filling) {
      this.refill = true;
      return;
    }
    this.filling = true;
    try {
      do {
        this.refill = false;
        if (this.position === undefined) return;
        const present = new Set(await this.options.spool.listPrefetched());
        let name = this.position;
        for (let ahead = 0; ahead < this.options.prefetch && this.inFlight.size < this.options.parallel; ahead++) {
          name = nextSegmentName(name, this.repo.config.walSegmentSize);
          if (this.missing.has(name)) break;
          if (present.has(name) || this.inFlight.has(name)) continue;
          this.start(name).catch(() => undefined);
        }
      } while (this.refill);
    } finally {
      this.filling = false;
    }
  }
}
