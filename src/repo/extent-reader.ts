/**
 * Reads extents for restore: groups the wanted extents by pack, coalesces neighbours (within a gap)
 * into one ranged read, fetches with bounded parallelism, then decompresses and checks each extent
 * against its id in one native call per range.
 */
import { PgfError, isPgfError } from '../errors/index.js';
import { decompressIdentifiedExtentsInto, type DecompressedExtents } from '../native/index.js';
import type { Storage } from '../storage/index.js';
import type { ExtentIndex, ExtentLocation } from './extent-index.js';
import { keys } from './objects.js';

interface Wanted {
  position: number;
  id: Buffer;
  location: ExtentLocation;
}

/** Raw extents in the order asked, each with the CRC-32C it was checked against. */
export interface FetchedExtents {
  extents: Buffer[];
  crc32c: Uint32Array;
}

export interface ReadStats {
  requests: number;
  bytes: number;
}

export interface ExtentReaderOptions {
  parallel: number;
  gapBytes?: number;
  /** Adds what the index may lack; called once, when an extent asked for is not in it. */
  completeIndex?: () => Promise<void>;
}

export class ExtentReader {
  readonly stats: ReadStats = { requests: 0, bytes: 0 };
  private readonly gapBytes: number;
  private completing: Promise<void> | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly index: ExtentIndex,
    private readonly key: Buffer,
    private readonly options: ExtentReaderOptions,
  ) {
    this.gapBytes = options.gapBytes ?? 256 * 1024;
  }

  /**
   * The raw bytes of each extent, in the order asked: views into `into` when it is given and large
   * enough (the caller reuses it and is done with the views before the next fetch into it), else
   * into buffers of their own.
   */
  async fetch(ids: readonly Buffer[], into?: Buffer): Promise<FetchedExtents> {
    let locations = ids.map((id) => this.index.get(id));
    const { completeIndex } = this.options;
    if (completeIndex !== undefined && locations.includes(undefined)) {
      this.completing ??= completeIndex();
      await this.completing;
      locations = ids.map((id) => this.index.get(id));
    }
    const wanted: Wanted[] = ids.map((id, position) => {
      const location = locations[position];
      if (location === undefined) {
        throw new PgfError('REPO_CORRUPT', `extent ${id.toString('hex')} is not in the repository index: run pgforever verify`);
      }
      return { position, id, location };
    });
    const byPack = new Map<string, Wanted[]>();
    for (const w of wanted) {
      const list = byPack.get(w.location.pack) ?? [];
      list.push(w);
      byPack.set(w.location.pack, list);
    }
    const ranges: Wanted[][] = [];
    for (const list of byPack.values()) {
      list.sort((a, b) => a.location.offset - b.location.offset);
      let current: Wanted[] = [];
      for (const w of list) {
        const last = current.at(-1);
        if (last && w.location.offset - (last.location.offset + last.location.length) > this.gapBytes) {
          ranges.push(current);
          current = [];
        }
        current.push(w);
      }
      if (current.length > 0) ranges.push(current);
    }
    // Each range decompresses into its own region of `into`, exactly as long as the index says its
    // extents are: a frame claiming more fails instead of spilling into a neighbour's region.
    const regions: [number, number][] = [];
    let used = 0;
    for (const range of ranges) {
      const start = used;
      used += range.reduce((n, w) => n + w.location.rawLength, 0);
      regions.push([start, used]);
    }
    const target = into !== undefined && used <= into.length ? into : undefined;
    const out: FetchedExtents = { extents: new Array<Buffer>(ids.length), crc32c: new Uint32Array(ids.length) };
    let next = 0;
    const worker = async () => {
      while (next < ranges.length) {
        const at = next++;
        await this.readRange(ranges[at]!, out, target?.subarray(...regions[at]!));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.parallel, ranges.length) }, worker));
    return out;
  }

  private async readRange(range: readonly Wanted[], out: FetchedExtents, into: Buffer | undefined): Promise<void> {
    const first = range[0]!.location;
    const last = range.at(-1)!.location;
    const key = keys.pack(first.pack);
    const bytes = await this.storage.readRange(key, first.offset, last.offset + last.length - first.offset, { keepOpen: true });
    this.stats.requests += 1;
    this.stats.bytes += bytes.length;
    const frameBounds = new Uint32Array(range.length * 2);
    range.forEach((w, i) => {
      frameBounds[2 * i] = w.location.offset - first.offset;
      frameBounds[2 * i + 1] = w.location.length;
    });
    let raws: DecompressedExtents;
    try {
      const room = into ?? Buffer.allocUnsafe(range.reduce((n, w) => n + w.location.rawLength, 0));
      raws = await decompressIdentifiedExtentsInto(
        bytes,
        frameBounds,
        range.map((w) => w.id),
        this.key,
        room,
      );
    } catch (err) {
      if (isPgfError(err)) throw new PgfError('REPO_CORRUPT', `pack ${key} is damaged (${err.message}): run pgforever verify`, { cause: err });
      throw err;
    }
    range.forEach((w, i) => {
      out.extents[w.position] = raws.extents[i]!;
      out.crc32c[w.position] = raws.crc32c[i]!;
    });
  }
}
