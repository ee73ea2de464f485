/**
 * Garbage-collection marks: `gc/<ms>-<random>` names packs, extent lists and index deltas that no
 * backup referenced when the mark was made. Nothing is deleted then. While a mark exists, backups do
 * not reuse extents of the packs it names (they upload their own copy), so once every backup that
 * started before the mark has ended, and the grace period has passed, a sweep can delete what is
 * still unreferenced. The sweep deletes the mark last: killed half-way, the next sweep finishes.
 */
import { randomBytes } from 'node:crypto';
import type { Storage } from '../storage/index.js';
import { keys, readSealedJson, writeSealedJson } from './objects.js';

export interface GcMark {
  format: 1;
  id: string;
  createdAt: string;
  /** Packs none of whose extents a backup referenced (including packs just repacked). */
  packs: string[];
  /** Extent lists no manifest referenced. */
  lists: string[];
  /** Index deltas superseded by the consolidated delta written with this mark. */
  indexDeltas: string[];
}

export async function writeGcMark(storage: Storage, content: Omit<GcMark, 'format' | 'id' | 'createdAt'>): Promise<GcMark> {
  const now = new Date();
  const mark: GcMark = { format: 1, id: `${now.getTime().toString().padStart(15, '0')}-${randomBytes(6).toString('hex')}`, createdAt: now.toISOString(), ...content };
  await writeSealedJson(storage, keys.gcMark(mark.id), mark, true);
  return mark;
}

/** Every mark not yet swept, oldest first. */
export async function readGcMarks(storage: Storage): Promise<GcMark[]> {
  const marks: GcMark[] = [];
  for await (const object of storage.list(keys.gcMarks)) marks.push(await readSealedJson<GcMark>(storage, object.key));
  return marks.sort((a, b) => (a.id < b.id ? -1 : 1));
}

export async function deleteGcMark(storage: Storage, mark: GcMark): Promise<void> {
  await storage.delete(keys.gcMark(mark.id));
}

/** Packs named by any mark: backups must not reuse their extents. */
export async function condemnedPacks(storage: Storage): Promise<Set<string>> {
  return new Set((await readGcMarks(storage)).flatMap((m) => m.packs));
}
