/**
 * Packs: extent frames back to back, then a footer (an envelope listing id, offset, length and raw
 * length of every frame) and an 8-byte trailer (footer length, magic). A pack therefore describes
 * itself, and the index can be rebuilt from packs alone.
 */
import { randomBytes } from 'node:crypto';
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { decodeIndexDelta, encodeIndexDelta, type ExtentIndex, type IndexEntry } from './extent-index.js';
import { keys, seal, unseal } from './objects.js';

const trailerMagic = 0x50464750; // "PGFP" little-endian
const trailerBytes = 8;

export interface PackWriterOptions {
  /** Roll to a new pack past this many bytes of frames. */
  targetBytes: number;
  /** Sealed packs uploading at once; with the one being filled, memory is (this + 1) × targetBytes. */
  maxInFlight: number;
}

export interface NewExtentFrame {
  id: Buffer;
  frame: Buffer;
  rawLength: number;
}

/**
 * Collects frames into packs and uploads sealed packs while the caller keeps producing. Entries are
 * reported durable only after their pack's write resolved: the caller writes them to the index
 * after that, never before (packs -> index -> manifest).
 */
export class PackWriter {
  private frames: Buffer[] = [];
  private entries: IndexEntry[] = [];
  private bytes = 0;
  private packId = randomBytes(16).toString('hex');
  private readonly pending = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  private failure: unknown;
  readonly durable: IndexEntry[] = [];
  packsWritten = 0;
  bytesWritten = 0;

  constructor(
    private readonly storage: Storage,
    private readonly index: ExtentIndex,
    private readonly options: PackWriterOptions,
  ) {}

  has(id: Buffer): boolean {
    return this.index.has(id) || this.pending.has(id.toString('latin1'));
  }

  async add(extents: readonly NewExtentFrame[]): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    for (const extent of extents) {
      const key = extent.id.toString('latin1');
      if (this.index.has(extent.id) || this.pending.has(key)) continue;
      this.pending.add(key);
      this.entries.push({ id: extent.id, pack: this.packId, offset: this.bytes, length: extent.frame.length, rawLength: extent.rawLength });
      this.frames.push(extent.frame);
      this.bytes += extent.frame.length;
      if (this.bytes >= this.options.targetBytes) await this.seal();
    }
  }

  private async seal(): Promise<void> {
    if (this.entries.length === 0) return;
    const frames = this.frames;
    const entries = this.entries;
    const packId = this.packId;
    this.frames = [];
    this.entries = [];
    this.bytes = 0;
    this.packId = randomBytes(16).toString('hex');
    const footer = await seal(encodeIndexDelta(entries));
    const trailer = Buffer.alloc(trailerBytes);
    trailer.writeUInt32LE(footer.length, 0);
    trailer.writeUInt32LE(trailerMagic, 4);
    const upload = this.storage
      .write(keys.pack(packId), [...frames, footer, trailer], { ifAbsent: true })
      .then(() => {
        this.packsWritten += 1;
        this.bytesWritten += frames.reduce((n, f) => n + f.length, 0) + footer.length + trailer.length;
        this.durable.push(...entries);
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      });
    this.uploads.add(upload);
    void upload.finally(() => this.uploads.delete(upload));
    while (this.uploads.size > this.options.maxInFlight) await Promise.race(this.uploads);
    if (this.failure !== undefined) throw this.failure;
  }

  /** Seals the last pack and waits for every upload; returns the entries now durable. */
  async finish(): Promise<IndexEntry[]> {
    await this.seal();
    await Promise.all(this.uploads);
    if (this.failure !== undefined) throw this.failure;
    return this.durable;
  }
}

/** The entries of a pack, from its footer alone (two ranged reads). */
export async function readPackFooter(storage: Storage, packId: string, size: number): Promise<IndexEntry[]> {
  const key = keys.pack(packId);
  if (size < trailerBytes) throw new PgfError('REPO_CORRUPT', `pack ${key} is too short to be a pack: run pgforever verify`);
  const trailer = await storage.readRange(key, size - trailerBytes, trailerBytes);
  const footerLength = trailer.readUInt32LE(0);
  if (trailer.readUInt32LE(4) !== trailerMagic || footerLength > size - trailerBytes) {
    throw new PgfError('REPO_CORRUPT', `pack ${key} has no valid footer: run pgforever verify`);
  }
  const footer = await storage.readRange(key, size - trailerBytes - footerLength, footerLength);
  return decodeIndexDelta(await unseal(key, footer));
}

export function packIdOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}
