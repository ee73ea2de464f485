/**
 * Where each stored extent lives: id -> (pack, offset, length, raw length). An open-addressing hash
 * table in typed arrays, keyed by the id's first 16 bytes: 32 bytes per slot, 46 to 91 bytes per
 * extent between growths (load 0.7 to 0.35), with nothing for the garbage collector to trace, so
 * tens of millions of extents fit where a Map would stop at 16.7 million. Ids are keyed BLAKE3 outputs, so
 * their bytes are uniform and serve as the hash directly; a 128-bit prefix makes a false match
 * astronomically unlikely, and reads re-check the full id anyway.
 */
import { randomBytes } from 'node:crypto';
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
  /** Two little-endian u64 halves of the id prefix per slot. */
  keys: BigUint64Array;
  /** Pack number + 1; 0 marks an empty slot. */
  pack: Uint32Array;
  offset: Uint32Array;
  length: Uint32Array;
  rawLength: Uint32Array;
}

function newTable(size: number): Table {
  return {
    mask: size - 1,
    keys: new BigUint64Array(size * 2),
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

  private locate(id: Buffer): { slot: number; found: boolean } {
    const k0 = id.readBigUInt64LE(0);
    const k1 = id.readBigUInt64LE(8);
    let slot = id.readUInt32LE(0) & this.table.mask;
    for (;;) {
      if (this.table.pack[slot] === 0) return { slot, found: false };
      if (this.table.keys[slot * 2] === k0 && this.table.keys[slot * 2 + 1] === k1) return { slot, found: true };
      slot = (slot + 1) & this.table.mask;
    }
  }

  has(id: Buffer): boolean {
    return this.locate(id).found;
  }

  get(id: Buffer): ExtentLocation | undefined {
    const { slot, found } = this.locate(id);
    if (!found) return undefined;
    return { pack: this.packIds[this.table.pack[slot]! - 1]!, offset: this.table.offset[slot]!, length: this.table.length[slot]!, rawLength: this.table.rawLength[slot]! };
  }

  add(entry: IndexEntry): void {
    if ((this.count + 1) > (this.table.mask + 1) * maxLoad) this.grow();
    const { slot, found } = this.locate(entry.id);
    if (found) return;
    let packNumber = this.packNumbers.get(entry.pack);
    if (packNumber === undefined) {
      packNumber = this.packIds.length;
      this.packIds.push(entry.pack);
      this.packNumbers.set(entry.pack, packNumber);
    }
    this.table.keys[slot * 2] = entry.id.readBigUInt64LE(0);
    this.table.keys[slot * 2 + 1] = entry.id.readBigUInt64LE(8);
    this.table.pack[slot] = packNumber + 1;
    this.table.offset[slot] = entry.offset;
    this.table.length[slot] = entry.length;
    this.table.rawLength[slot] = entry.rawLength;
    this.count += 1;
  }

  /** Slot of a stored id (stable until the next add), or -1: lets a caller keep one mark per extent in a parallel array. */
  slotOf(id: Buffer): number {
    const { slot, found } = this.locate(id);
    return found ? slot : -1;
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
      idPrefix.writeBigUInt64LE(this.table.keys[slot * 2]!, 0);
      idPrefix.writeBigUInt64LE(this.table.keys[slot * 2 + 1]!, 8);
      yield { slot, idPrefix, pack: this.packIds[pack - 1]!, offset: this.table.offset[slot]!, length: this.table.length[slot]!, rawLength: this.table.rawLength[slot]! };
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = newTable((old.mask + 1) * 2);
    const probe = Buffer.alloc(16);
    for (let from = 0; from < old.pack.length; from++) {
      if (old.pack[from] === 0) continue;
      probe.writeBigUInt64LE(old.keys[from * 2]!, 0);
      probe.writeBigUInt64LE(old.keys[from * 2 + 1]!, 8);
      let slot = probe.readUInt32LE(0) & this.table.mask;
      while (this.table.pack[slot] !== 0) slot = (slot + 1) & this.table.mask;
      this.table.keys[slot * 2] = old.keys[from * 2]!;
      this.table.keys[slot * 2 + 1] = old.keys[from * 2 + 1]!;
      this.table.pack[slot] = old.pack[from]!;
      this.table.offset[slot] = old.offset[from]!;
      this.table.length[slot] = old.length[from]!;
      this.table.rawLength[slot] = old.rawLength[from]!;
    }
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
  const deltas: string[] = [];
  for await (const object of storage.list(keys.index)) {
    deltas.push(object.key.slice(keys.index.length));
    for (const entry of decodeIndexDelta(await readSealed(storage, object.key))) {
      covered.add(entry.pack);
      if (!excludedPacks.has(entry.pack)) into.add(entry);
    }
  }
  return { covered, deltas };
}
