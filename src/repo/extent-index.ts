/**
 * Where each stored extent lives: id -> (pack, offset, length, raw length). Kept in memory as a
 * Map from the id's first 16 bytes to a slot in typed arrays; packs are interned to numbers. The
 * 128-bit prefix makes a false match astronomically unlikely among billions of keyed-hash ids, and
 * a read re-checks the full id against the pack footer anyway.
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

function prefix(id: Buffer): string {
  return id.toString('latin1', 0, 16);
}

export class ExtentIndex {
  private readonly slots = new Map<string, number>();
  private readonly packIds: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  private pack = new Uint32Array(1024);
  private offset = new Uint32Array(1024);
  private length = new Uint32Array(1024);
  private rawLength = new Uint32Array(1024);

  get size(): number {
    return this.slots.size;
  }

  /** Packs the index refers to. */
  get packs(): readonly string[] {
    return this.packIds;
  }

  has(id: Buffer): boolean {
    return this.slots.has(prefix(id));
  }

  get(id: Buffer): ExtentLocation | undefined {
    const slot = this.slots.get(prefix(id));
    if (slot === undefined) return undefined;
    return { pack: this.packIds[this.pack[slot]!]!, offset: this.offset[slot]!, length: this.length[slot]!, rawLength: this.rawLength[slot]! };
  }

  add(entry: IndexEntry): void {
    const key = prefix(entry.id);
    if (this.slots.has(key)) return;
    let packNumber = this.packNumbers.get(entry.pack);
    if (packNumber === undefined) {
      packNumber = this.packIds.length;
      this.packIds.push(entry.pack);
      this.packNumbers.set(entry.pack, packNumber);
    }
    const slot = this.slots.size;
    if (slot === this.pack.length) this.grow();
    this.pack[slot] = packNumber;
    this.offset[slot] = entry.offset;
    this.length[slot] = entry.length;
    this.rawLength[slot] = entry.rawLength;
    this.slots.set(key, slot);
  }

  private grow(): void {
    const widen = (a: Uint32Array) => {
      const b = new Uint32Array(a.length * 2);
      b.set(a);
      return b;
    };
    this.pack = widen(this.pack);
    this.offset = widen(this.offset);
    this.length = widen(this.length);
    this.rawLength = widen(this.rawLength);
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

export async function readIndexDeltas(storage: Storage, into: ExtentIndex): Promise<Set<string>> {
  const covered = new Set<string>();
  for await (const object of storage.list(keys.index)) {
    for (const entry of decodeIndexDelta(await readSealed(storage, object.key))) {
      into.add(entry);
      covered.add(entry.pack);
    }
  }
  return covered;
}
