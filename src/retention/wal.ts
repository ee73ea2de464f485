/**
 * Which archived WAL the kept backups still need, per timeline. A kept backup on timeline T needs T
 * from its first segment on; every timeline descending from T is needed whole (recovery from the
 * backup may follow it). Timeline history files are a few bytes each and are all kept.
 */
import type { Storage } from '../storage/index.js';
import { keys, type Repository } from '../repo/index.js';
import { parseTimelineHistory } from '../backup/detection.js';
import { loadWalFile } from '../wal/repository.js';
import { parseWalFileName, segmentNumber } from '../wal/names.js';

export interface WalNeed {
  timeline: number;
  /** First segment of the backup (walStart). */
  walStart: string;
}

export interface WalObject {
  key: string;
  timeline: number;
  /** Segment the object belongs to (segments, .partial, .backup and anything else named after one). */
  segment: string;
  size: number;
}

/** Segment-keyed WAL objects in the repository (timeline history files excluded). */
export async function listWalObjects(storage: Storage): Promise<WalObject[]> {
  const objects: WalObject[] = [];
  for await (const object of storage.list(keys.wal)) {
    const match = /^wal\/([0-9A-F]{8})\/(([0-9A-F]{8})[0-9A-F]{16})[^/]*$/.exec(object.key);
    if (match) objects.push({ key: object.key, timeline: parseInt(match[1]!, 16), segment: match[2]!, size: object.size });
  }
  return objects;
}

/** Ancestors of each timeline with a history file in the repository (timeline 1 has none). */
export async function timelineAncestors(repo: Repository): Promise<Map<number, number[]>> {
  const ancestors = new Map<number, number[]>();
  for await (const object of repo.storage.list(keys.wal)) {
    const match = /^wal\/([0-9A-F]{8})\.history$/.exec(object.key);
    if (!match) continue;
    const file = parseWalFileName(`${match[1]!}.history`)!;
    const content = await loadWalFile(repo, file);
    if (content === undefined) continue;
    ancestors.set(parseInt(match[1]!, 16), parseTimelineHistory(content.toString('utf8')).map((s) => s.timeline));
  }
  return ancestors;
}

/**
 * WAL objects no kept backup needs. With no backup kept, nothing goes: WAL archived before the first
 * backup may be what a user wants to keep until that backup exists.
 */
export function unneededWal(objects: readonly WalObject[], needs: readonly WalNeed[], ancestors: ReadonlyMap<number, number[]>, segmentSize: number): WalObject[] {
  if (needs.length === 0) return [];
  // Per timeline, the first segment number still needed; absent = the timeline is not needed at all.
  const neededFrom = new Map<number, bigint>();
  const need = (timeline: number, from: bigint) => {
    const current = neededFrom.get(timeline);
    if (current === undefined || from < current) neededFrom.set(timeline, from);
  };
  const timelines = new Set([...objects.map((o) => o.timeline), ...ancestors.keys()]);
  for (const n of needs) {
    need(n.timeline, segmentNumber(n.walStart, segmentSize));
    for (const t of timelines) if (ancestors.get(t)?.includes(n.timeline)) need(t, 0n);
  }
  return objects.filter((o) => {
    const from = neededFrom.get(o.timeline);
    return from === undefined || segmentNumber(o.segment, segmentSize) < from;
  });
}
