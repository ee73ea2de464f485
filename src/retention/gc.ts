/**
 * Garbage collection in two phases (DESIGN.md section 4).
 *
 * Mark: every extent and extent list a manifest references is live. Packs with no live extent, and
 * packs mostly dead (their live extents are first copied into new packs), are condemned together
 * with unreferenced extent lists, in a mark object. Index deltas naming a condemned pack are replaced
 * by deltas without it, and past `consolidateDeltasAbove` deltas the small ones are merged into one
 * too. Nothing is deleted. From then on backups do not reuse condemned extents.
 *
 * Sweep, once a mark is older than the grace period, and only while no backup runs (the sweep and
 * backups exclude each other through leases): manifests written since the mark are checked again, a
 * condemned pack or list they use is rescued, the rest is deleted, the mark last.
 *
 * Memory: the index (32 bytes per slot, 46 to 91 bytes per extent), one mark byte per slot, the set
 * of live list names (about 120 bytes each) and one pack (64 MiB) being repacked with up to three
 * more uploading: about 1 GiB for 10 million extents.
 */
import type { Logger } from '../log/index.js';
import { readFrameHeader } from '../native/index.js';
import {
  ExtentIndex,
  deleteGcMark,
  keys,
  liveLeases,
  packIdOf,
  readGcMarks,
  readPackFooter,
  writeGcMark,
  type BackupManifest,
  type GcMark,
  type IndexEntry,
  type Repository,
} from '../repo/index.js';
import { acquireLease } from '../repo/index.js';
import { decodeIndexDelta } from '../repo/extent-index.js';
import { readSealed } from '../repo/objects.js';
import { mapLimit } from '../concurrency/map-limit.js';

/**
 * Every backup writes an index delta, and every restore and backup reads them all, a request each
 * on S3: past this many, a mark merges the small ones into one.
 */
const consolidateDeltasAbove = 16;
/** The most index entries one merge holds in memory (about 150 bytes each): a full backup's delta of a large cluster stays as it is. */
const consolidatedEntriesAtMost = 500_000;

export interface MarkOptions {
  /** Packs whose live bytes are below this share of their size are repacked. */
  repackBelow: number;
  parallel: number;
}

export interface MarkSummary {
  mark?: GcMark;
  packsCondemned: number;
  packsRepacked: number;
  bytesCondemned: number;
  bytesRepacked: number;
  listsCondemned: number;
  indexDeltasReplaced: number;
  missingExtents: number;
}

export interface SweepSummary {
  marksSwept: number;
  /** Why ripe marks were left for a later run, if they were. */
  deferred?: string;
  packsDeleted: number;
  packsRescued: number;
  listsDeleted: number;
  listsRescued: number;
  indexDeltasDeleted: number;
  bytesFreed: number;
}

/** Extent lists the given manifests reference. */
function referencedLists(manifests: readonly BackupManifest[]): Set<string> {
  const lists = new Set<string>();
  for (const m of manifests) for (const f of m.files) if (f.extents !== undefined) lists.add(f.extents);
  return lists;
}

async function readManifests(repo: Repository, ids: readonly string[], parallel: number): Promise<BackupManifest[]> {
  return mapLimit(ids, parallel, (id) => repo.readManifest(id));
}

/** Start of the oldest backup running now: objects newer than this may belong to it. */
async function oldestRunningBackup(repo: Repository): Promise<number> {
  const running = await liveLeases(repo.storage, 'backup');
  return Math.min(Infinity, ...running.map((l) => Date.parse(l.since)));
}

export async function markGarbage(repo: Repository, log: Logger, options: MarkOptions): Promise<MarkSummary> {
  const storage = repo.storage;
  const summary: MarkSummary = { packsCondemned: 0, packsRepacked: 0, bytesCondemned: 0, bytesRepacked: 0, listsCondemned: 0, indexDeltasReplaced: 0, missingExtents: 0 };
  const youngest = await oldestRunningBackup(repo);
  const earlier = await readGcMarks(storage);
  const alreadyPacks = new Set(earlier.flatMap((m) => m.packs));
  const alreadyLists = new Set(earlier.flatMap((m) => m.lists));

  const manifests = await readManifests(repo, await repo.listBackups(), options.parallel);
  const liveLists = referencedLists(manifests);
  // Packs an earlier mark condemned stay out of the index: an extent they share with a live pack
  // (a repacked copy) must count for the live one, or that pack would look dead.
  const { index, deltas } = await repo.loadIndexWithSources({ forReuse: true });
  const live = new Uint8Array(index.slotCount);
  await mapLimit([...liveLists], options.parallel, async (listId) => {
    for (const id of await repo.readExtentList(listId)) {
      if (id === null) continue;
      const slot = index.slotOf(id);
      if (slot < 0) summary.missingExtents += 1;
      else live[slot] = 1;
    }
  });
  if (summary.missingExtents > 0) {
    log.warn({ missingExtents: summary.missingExtents }, 'backups reference extents held only by condemned packs (the sweep keeps those) or by none: run pgforever verify');
  }

  const liveBytes = new Map<string, number>();
  for (const entry of index.entries()) {
    if (live[entry.slot] === 1) liveBytes.set(entry.pack, (liveBytes.get(entry.pack) ?? 0) + entry.length);
  }
  const dead: { pack: string; size: number }[] = [];
  const sparse: { pack: string; size: number }[] = [];
  for await (const object of storage.list(keys.packs)) {
    const pack = packIdOf(object.key);
    if (alreadyPacks.has(pack) || object.modifiedMs >= youngest) continue;
    const used = liveBytes.get(pack) ?? 0;
    if (used === 0) dead.push({ pack, size: object.size });
    else if (used < options.repackBelow * object.size) sparse.push({ pack, size: object.size });
  }

  // Live extents of sparse packs move to new packs, indexed before the old ones are condemned.
  const writer = repo.packWriter(new ExtentIndex());
  for (const { pack, size } of sparse) {
    const content = await storage.read(keys.pack(pack));
    const frames = [];
    for (const entry of await readPackFooter(storage, pack, size)) {
      const slot = index.slotOf(entry.id);
      if (slot < 0 || live[slot] !== 1 || index.get(entry.id)?.pack !== pack) continue;
      const frame = content.subarray(entry.offset, entry.offset + entry.length);
      readFrameHeader(frame);
      frames.push({ id: entry.id, frame, rawLength: entry.rawLength });
    }
    await writer.add(frames);
    summary.packsRepacked += 1;
    summary.bytesRepacked += size;
  }
  await repo.recordIndex(await writer.finish());

  const condemned = new Set([...dead, ...sparse].map((p) => p.pack));
  summary.packsCondemned = dead.length;
  summary.bytesCondemned = dead.reduce((n, p) => n + p.size, 0);

  // Deltas that name a condemned pack are replaced by one holding their other entries, and so are
  // the small ones when there are many.
  const replaced: string[] = [];
  const kept: IndexEntry[] = [];
  let merged = 0;
  for (const delta of deltas) {
    const entries = decodeIndexDelta(await readSealed(storage, keys.indexDelta(delta)));
    const namesCondemned = entries.some((e) => condemned.has(e.pack));
    const mergeable = deltas.length > consolidateDeltasAbove && merged + entries.length <= consolidatedEntriesAtMost;
    if (!namesCondemned && !mergeable) continue;
    if (!namesCondemned) merged += entries.length;
    replaced.push(delta);
    for (const e of entries) if (!condemned.has(e.pack) && !alreadyPacks.has(e.pack)) kept.push(e);
  }
  await repo.recordIndex(kept);
  summary.indexDeltasReplaced = replaced.length;

  const deadLists: string[] = [];
  for await (const object of storage.list(keys.lists)) {
    const list = object.key.slice(object.key.lastIndexOf('/') + 1);
    if (!liveLists.has(list) && !alreadyLists.has(list) && object.modifiedMs < youngest) deadLists.push(list);
  }
  summary.listsCondemned = deadLists.length;

  if (condemned.size > 0 || deadLists.length > 0 || replaced.length > 0) {
    summary.mark = await writeGcMark(storage, { packs: [...condemned], lists: deadLists, indexDeltas: replaced });
    log.info({ mark: summary.mark.id, packs: condemned.size, lists: deadLists.length, deltas: replaced.length }, 'garbage marked');
  }
  return summary;
}

/**
 * Deletes what ripe marks condemned and nothing a backup references. `manifestsSince` margin: a
 * manifest stored up to this long before a mark is checked again too (clock skew between hosts).
 */
export async function sweepGarbage(repo: Repository, log: Logger, options: { graceMs: number; parallel: number; now?: number }): Promise<SweepSummary> {
  const storage = repo.storage;
  const summary: SweepSummary = { marksSwept: 0, packsDeleted: 0, packsRescued: 0, listsDeleted: 0, listsRescued: 0, indexDeltasDeleted: 0, bytesFreed: 0 };
  const now = options.now ?? Date.now();
  const marks = await readGcMarks(storage);
  const ripe = marks.filter((m) => Date.parse(m.createdAt) <= now - options.graceMs);
  if (ripe.length === 0) {
    if (marks.length > 0) summary.deferred = `${marks.length} mark(s) still within the grace period`;
    return summary;
  }
  const lease = await acquireLease(storage, 'sweep', { command: 'expire (sweep)' });
  try {
    const running = await liveLeases(storage, 'backup');
    if (running.length > 0) {
      summary.deferred = `a backup is running (pid ${running[0]!.pid} on ${running[0]!.host}); the next expire sweeps`;
      return summary;
    }
    // Manifests stored since the oldest ripe mark (less a margin for clock skew) may use what it condemned.
    const skewMarginMs = 10 * 60_000;
    const since = Math.min(...ripe.map((m) => Date.parse(m.createdAt))) - skewMarginMs;
    const recent: string[] = [];
    for await (const object of storage.list(keys.manifests)) {
      const match = /^backups\/(.+)\.json\.zst$/.exec(object.key);
      if (match && object.modifiedMs >= since) recent.push(match[1]!);
    }
    const manifests = await readManifests(repo, recent, options.parallel);
    const usedLists = referencedLists(manifests);
    const condemnedPacks = new Set(ripe.flatMap((m) => m.packs));
    const condemnedLists = new Set(ripe.flatMap((m) => m.lists));

    // Extents the recent backups use that only condemned packs hold.
    const reusable = await repo.loadIndex({ forReuse: true });
    const needed = new Set<string>();
    await mapLimit([...usedLists], options.parallel, async (listId) => {
      for (const id of await repo.readExtentList(listId)) {
        if (id !== null && !reusable.has(id)) needed.add(id.toString('hex'));
      }
    });
    const rescued: IndexEntry[] = [];
    const packSizes = new Map<string, number>();
    for await (const object of storage.list(keys.packs)) packSizes.set(packIdOf(object.key), object.size);
    if (needed.size > 0) {
      for (const pack of condemnedPacks) {
        const size = packSizes.get(pack);
        if (size === undefined) continue;
        const entries = (await readPackFooter(storage, pack, size)).filter((e) => needed.has(e.id.toString('hex')));
        if (entries.length === 0) continue;
        rescued.push(...entries);
        condemnedPacks.delete(pack);
        summary.packsRescued += 1;
      }
    }
    await repo.recordIndex(rescued);
    for (const list of usedLists) {
      if (condemnedLists.delete(list)) summary.listsRescued += 1;
    }
    if (summary.packsRescued + summary.listsRescued > 0) log.warn({ packs: summary.packsRescued, lists: summary.listsRescued }, 'condemned objects in use by a backup made since the mark: kept');

    await mapLimit([...condemnedPacks], options.parallel, async (pack) => {
      const size = packSizes.get(pack);
      if (size === undefined) return;
      await storage.delete(keys.pack(pack));
      summary.packsDeleted += 1;
      summary.bytesFreed += size;
    });
    const deltas = ripe.flatMap((m) => m.indexDeltas);
    await mapLimit(deltas, options.parallel, (delta) => storage.delete(keys.indexDelta(delta)));
    summary.indexDeltasDeleted = deltas.length;
    await mapLimit([...condemnedLists], options.parallel, (list) => storage.delete(keys.extentList(list)));
    summary.listsDeleted = condemnedLists.size;
    for (const mark of ripe) await deleteGcMark(storage, mark);
    summary.marksSwept = ripe.length;
    return summary;
  } finally {
    await lease.release();
  }
}
