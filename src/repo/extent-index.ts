/**
 * Where each stored extent lives: id -> (pack, offset, length, raw length). An open-addressing hash
 * table in typed arrays, keyed by the id's first 16 bytes: 32 bytes per slot, 46 to 91 bytes per
 * extent between growths (load 0.7 to 0.35), with nothing for the garbage collector to trace, so
 * tens of millions of extents fit where a Map would stop at 16.7 million. Ids are keyed BLAKE3 outputs, so
 * their bytes are uniform and serve as the hash directly; a 128-bit prefix makes a false match
 * astronomically unlikely, and reads re-check the full id anyway.
 */
import { randomBytes } from 'node:crypto';
import { readAhead } from '../concurrency/read-ahead.js';
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { keys, readSealed, seal } from './objects.js';

export interface ExtentLocation {
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
}

export interface IndexEntry extends ExtentLocation {
  id: Buffer;
}

const ID_BYTES = 32;
const ENTRY_BYTES = ID_BYTES + 4 + 4 + 4 + 4;
const PACK_ID_BYTES = 16;
const maxLoad = 0.7;

interface Table {
  mask: number;
  /** The id prefix per slot, as four little-endian u32 (plain numbers: no BigInt on the hot path). */
  keys: Uint32Array;
  /** Pack number + 1; 0 marks an empty slot. */
  pack: Uint32Array;
  offset: Uint32Array;
  length: Uint32Array;
  rawLength: Uint32Array;
}

function newTable(size: number): Table {
  return {
    mask: size - 1,
    keys: new Uint32Array(size * 4),
    pack: new Uint32Array(size),
    offset: new Uint32Array(size),
    length: new Uint32Array(size),
    rawLength: new Uint32Array(size),
  };
}

export class ExtentIndex {
  private readonly packIds: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  private count = 0;
  private table: Table;

  constructor(capacity = 1024) {
    let size = 1024;
    while (size * maxLoad < capacity) size *= 2;
    this.table = newTable(size);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes the table holds now (for capacity planning and the benchmark). */
  get memoryBytes(): number {
    return this.table.keys.byteLength + this.table.pack.byteLength * 4;
  }

  /** Packs the index refers to. */
  get packs(): readonly string[] {
    return this.packIds;
  }

  /**
   * The slot holding the id whose prefix is k0..k3, or, when it is absent, -1 - the empty slot where
   * it would go (a number, not an object: loading an index makes millions of these calls).
   */
  private find(k0: number, k1: number, k2: number, k3: number): number {
    const { keys, pack, mask } = this.table;
    let slot = k0 & mask;
    for (;;) {
      if (pack[slot] === 0) return -1 - slot;
      const k = slot * 4;
      if (keys[k] === k0 && keys[k + 1] === k1 && keys[k + 2] === k2 && keys[k + 3] === k3) return slot;
      slot = (slot + 1) & mask;
    }
  }

  private findId(id: Buffer): number {
    return this.find(id.readUInt32LE(0), id.readUInt32LE(4), id.readUInt32LE(8), id.readUInt32LE(12));
  }

  has(id: Buffer): boolean {
    return this.findId(id) >= 0;
  }

  get(id: Buffer): ExtentLocation | undefined {
    const slot = this.findId(id);
    if (slot < 0) return undefined;
    return { pack: this.packIds[this.table.pack[slot]! - 1]!, offset: this.table.offset[slot]!, length: this.table.length[slot]!, rawLength: this.table.rawLength[slot]! };
  }

  add(entry: IndexEntry): void {
    const id = entry.id;
    this.insert(id.readUInt32LE(0), id.readUInt32LE(4), id.readUInt32LE(8), id.readUInt32LE(12), this.packNumber(entry.pack), entry.offset, entry.length, entry.rawLength);
  }

  /**
   * Adds the entries of an encoded index delta (see encodeIndexDelta) straight from its bytes, except
   * those in `excludedPacks`; returns the packs it names. A large repository's index is millions of
   * entries: no object is made per entry.
   */
  addDelta(content: Buffer, excludedPacks: ReadonlySet<string> = new Set()): string[] {
    const packCount = content.readUInt32LE(0);
    const packs = Array.from({ length: packCount }, (_, i) => content.toString('hex', 4 + i * PACK_ID_BYTES, 4 + (i + 1) * PACK_ID_BYTES));
    const numbers = packs.map((p) => (excludedPacks.has(p) ? -1 : this.packNumber(p)));
    const first = 4 + packCount * PACK_ID_BYTES;
    this.reserve(Math.floor((content.length - first) / ENTRY_BYTES));
    // Each word read once, through DataView (a builtin, where Buffer's readUInt32LE is JavaScript that
    // stays unoptimized for the first thousands of calls of every restore and backup).
    const view = new DataView(content.buffer, content.byteOffset, content.length);
    for (let at = first; at + ENTRY_BYTES <= content.length; at += ENTRY_BYTES) {
      const packNumber = numbers[view.getUint32(at + 32, true)];
      if (packNumber === undefined) throw new PgfError('REPO_CORRUPT', `an index delta names pack ${view.getUint32(at + 32, true)} of ${packCount}: run pgforever verify`);
      if (packNumber < 0) continue;
      this.insert(view.getUint32(at, true), view.getUint32(at + 4, true), view.getUint32(at + 8, true), view.getUint32(at + 12, true), packNumber, view.getUint32(at + 36, true), view.getUint32(at + 40, true), view.getUint32(at + 44, true));
    }
    return packs;
  }

  private packNumber(pack: string): number {
    let number = this.packNumbers.get(pack);
    if (number === undefined) {
      number = this.packIds.length;
      this.packIds.push(pack);
      this.packNumbers.set(pack, number);
    }
    return number;
  }

  /** Grows the table once for `more` entries instead of doubling step by step while they arrive. */
  private reserve(more: number): void {
    let size = this.table.mask + 1;
    while (this.count + more > size * maxLoad) size *= 2;
    if (size !== this.table.mask + 1) this.rehash(size);
  }

  /** Stores an extent under its id prefix k0..k3, unless it is there already. */
  private insert(k0: number, k1: number, k2: number, k3: number, packNumber: number, offset: number, length: number, rawLength: number): void {
    if (this.count + 1 > (this.table.mask + 1) * maxLoad) this.rehash((this.table.mask + 1) * 2);
    const found = this.find(k0, k1, k2, k3);
    if (found >= 0) return;
    const slot = -1 - found;
    const k = slot * 4;
    this.table.keys[k] = k0;
    this.table.keys[k + 1] = k1;
    this.table.keys[k + 2] = k2;
    this.table.keys[k + 3] = k3;
    this.table.pack[slot] = packNumber + 1;
    this.table.offset[slot] = offset;
    this.table.length[slot] = length;
    this.table.rawLength[slot] = rawLength;
    this.count += 1;
  }

  /** Slot of a stored id (stable until the next add), or -1: lets a caller keep one mark per extent in a parallel array. */
  slotOf(id: Buffer): number {
    return Math.max(-1, this.findId(id));
  }

  /** Number of slots: the length of an array indexed by `slotOf`. */
  get slotCount(): number {
    return this.table.pack.length;
  }

  /** Every stored extent with its slot; the id is its 16-byte prefix (enough to find it again). */
  *entries(): Generator<{ slot: number; idPrefix: Buffer } & ExtentLocation> {
    for (let slot = 0; slot < this.table.pack.length; slot++) {
      const pack = this.table.pack[slot]!;
      if (pack === 0) continue;
      const idPrefix = Buffer.alloc(16);
      for (let i = 0; i < 4; i++) idPrefix.writeUInt32LE(this.table.keys[slot * 4 + i]!, i * 4);
      yield { slot, idPrefix, pack: this.packIds[pack - 1]!, offset: this.table.offset[slot]!, length: this.table.length[slot]!, rawLength: this.table.rawLength[slot]! };
    }
  }

  private rehash(size: number): void {
    const old = this.table;
    const table = newTable(size);
    for (let from = 0; from < old.pack.length; from++) {
      if (old.pack[from] === 0) continue;
      // The first u32 of the prefix is the hash (ids are uniform).
      let slot = old.keys[from * 4]! & table.mask;
      while (table.pack[slot] !== 0) slot = (slot + 1) & table.mask;
      table.keys.set(old.keys.subarray(from * 4, from * 4 + 4), slot * 4);
      table.pack[slot] = old.pack[from]!;
      table.offset[slot] = old.offset[from]!;
      table.length[slot] = old.length[from]!;
      table.rawLength[slot] = old.rawLength[from]!;
    }
    this.table = table;
  }
}

/** Binary layout of an index delta: pack count, pack ids, then entries naming packs by number. */
export function encodeIndexDelta(entries: readonly IndexEntry[]): Buffer {
  const packs = [...new Set(entries.map((e) => e.pack))];
  const numbers = new Map(packs.map((p, i) => [p, i]));
  const out = Buffer.alloc(4 + packs.length * PACK_ID_BYTES + entries.length * ENTRY_BYTES);
  out.writeUInt32LE(packs.length, 0);
  packs.forEach((p, i) => Buffer.from(p, 'hex').copy(out, 4 + i * PACK_ID_BYTES));
  let at = 4 + packs.length * PACK_ID_BYTES;
  for (const e of entries) {
    e.id.copy(out, at);
    out.writeUInt32LE(numbers.get(e.pack)!, at + 32);
    out.writeUInt32LE(e.offset, at + 36);
    out.writeUInt32LE(e.length, at + 40);
    out.writeUInt32LE(e.rawLength, at + 44);
    at += ENTRY_BYTES;
  }
  return out;
}

export function decodeIndexDelta(content: Buffer): IndexEntry[] {
  const packCount = content.readUInt32LE(0);
  const packs = Array.from({ length: packCount }, (_, i) => content.toString('hex', 4 + i * PACK_ID_BYTES, 4 + (i + 1) * PACK_ID_BYTES));
  const entries: IndexEntry[] = [];
  for (let at = 4 + packCount * PACK_ID_BYTES; at + ENTRY_BYTES <= content.length; at += ENTRY_BYTES) {
    entries.push({
      id: Buffer.from(content.subarray(at, at + 32)),
      pack: packs[content.readUInt32LE(at + 32)]!,
      offset: content.readUInt32LE(at + 36),
      length: content.readUInt32LE(at + 40),
      rawLength: content.readUInt32LE(at + 44),
    });
  }
  return entries;
}

/** Index deltas are append-only: each writer adds its own object, so concurrent backups never clash. */
export async function writeIndexDelta(storage: Storage, entries: readonly IndexEntry[]): Promise<string> {
  const id = `${Date.now().toString().padStart(15, '0')}-${randomBytes(8).toString('hex')}`;
  await storage.write(keys.indexDelta(id), await seal(encodeIndexDelta(entries)), { ifAbsent: true });
  return id;
}

/**
 * Adds every index delta's entries to `into`, except those in `excludedPacks`; returns the packs the
 * deltas name and the deltas read.
 */
export async function readIndexDeltas(storage: Storage, into: ExtentIndex, excludedPacks: ReadonlySet<string> = new Set()): Promise<{ covered: Set<string>; deltas: string[] }> {
  const covered = new Set<string>();
  const deltaKeys: string[] = [];
  for await (const object of storage.list(keys.index)) deltaKeys.push(object.key);
  // Deltas are read several at a time (one per backup: hundreds, on S3) but added in listing order.
  const read = readAhead(8, deltaKeys.length, (i) => readSealed(storage, deltaKeys[i]!));
  for (let i = 0; i < deltaKeys.length; i++) {
    for (const pack of into.addDelta(await read(i), excludedPacks)) covered.add(pack);
  }
  return { covered, deltas: deltaKeys.map((key) => key.slice(keys.index.length)) };
}
