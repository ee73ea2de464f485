/**
 * `pgforever verify`: can every backup be restored, and how far can recovery go from it? Reads
 * manifests, extent lists and the index, checks each extent's pack and bounds, and checks WAL
 * continuity from each backup's first segment to the newest segment of every timeline recovery
 * from it may follow. `full` also re-reads every pack frame and WAL object and re-hashes extents.
 *
 * Problems are grouped by the damaged object, each naming the backups it breaks, so one lost pack
 * reads as one line, not one per extent.
 */
import { isPgfError } from '../errors/index.js';
import { decompressFrames, extentIds } from '../native/index.js';
import { keys, packIdOf, readPackFooter, type BackupManifest, type ExtentLocation, type IndexEntry, type Repository } from '../repo/index.js';
import { mapLimit } from '../concurrency/map-limit.js';
import { parseTimelineHistory } from '../backup/detection.js';
import { decodeWalObject, loadWalFile, loadWalSummary } from '../wal/repository.js';
import { validateWalFile } from '../wal/validate.js';
import { parseWalFileName, segmentNumber } from '../wal/names.js';
import { parseLsn, walSegmentNameOf } from '../pg/lsn.js';

export type ProblemKind = 'manifest' | 'extent-list' | 'extent' | 'pack' | 'wal';

export interface VerifyProblem {
  kind: ProblemKind;
  /** The damaged or missing object: a key, or a segment range. */
  object: string;
  message: string;
  /** Backups this breaks (restore, or recovery past a point). */
  backups: string[];
}

export interface VerifyReport {
  ok: boolean;
  full: boolean;
  checked: { backups: number; extentLists: number; extents: number; packs: number; walFiles: number; bytesReread: number };
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  backup?: string;
  full: boolean;
  parallel: number;
}

class Problems {
  private readonly byObject = new Map<string, VerifyProblem>();

  add(kind: ProblemKind, object: string, message: string, backup?: string): void {
    const problem = this.byObject.get(object) ?? { kind, object, message, backups: [] };
    if (backup !== undefined && !problem.backups.includes(backup)) problem.backups.push(backup);
    this.byObject.set(object, problem);
  }

  get list(): VerifyProblem[] {
    return [...this.byObject.values()];
  }
}

const hex = (id: Buffer) => id.toString('hex');
const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));

export async function verifyRepository(repo: Repository, options: VerifyOptions): Promise<VerifyReport> {
  const problems = new Problems();
  const checked = { backups: 0, extentLists: 0, extents: 0, packs: 0, walFiles: 0, bytesReread: 0 };

  const ids = options.backup !== undefined ? [options.backup] : await repo.listBackups();
  const manifests: BackupManifest[] = [];
  for (const id of ids) {
    try {
      manifests.push(await repo.readManifest(id));
    } catch (err) {
      problems.add('manifest', keys.manifest(id), `manifest unreadable: ${reason(err)}`, id);
    }
  }
  checked.backups = manifests.length;

  const packSizes = new Map<string, number>();
  for await (const object of repo.storage.list(keys.packs)) packSizes.set(packIdOf(object.key), object.size);
  const index = await repo.loadIndex({ forReuse: false });

  // Damaged frames found by re-reading packs, by index slot, so the manifest pass can name the
  // backups each one breaks.
  const damagedSlots = new Map<number, { kind: ProblemKind; object: string; message: string }>();
  if (options.full) {
    const usedPacks = options.backup === undefined ? undefined : await packsUsedBy(repo, manifests, index);
    const packs = [...packSizes].filter(([pack]) => usedPacks === undefined || usedPacks.has(pack));
    await mapLimit(packs, options.parallel, async ([pack, size]) => {
      const key = keys.pack(pack);
      let entries: IndexEntry[];
      let bytes: Buffer;
      try {
        entries = await readPackFooter(repo.storage, pack, size);
        bytes = await repo.storage.read(key);
      } catch (err) {
        problems.add('pack', key, `pack unreadable: ${reason(err)}`);
        return;
      }
      checked.packs += 1;
      checked.bytesReread += bytes.length;
      for (const bad of await damagedFrames(bytes, entries, repo.extentKey)) {
        const slot = index.slotOf(bad.entry.id);
        const damage = { kind: 'extent' as const, object: `${key}@${bad.entry.offset}`, message: `extent ${hex(bad.entry.id)} at offset ${bad.entry.offset} of ${key} is damaged: ${bad.what}` };
        if (slot >= 0 && index.get(bad.entry.id)?.pack === pack) damagedSlots.set(slot, damage);
        problems.add('extent', damage.object, damage.message);
      }
    });
  }

  const misplaced = (location: ExtentLocation, id: Buffer): { kind: ProblemKind; object: string; message: string } | undefined => {
    const key = keys.pack(location.pack);
    const size = packSizes.get(location.pack);
    if (size === undefined) return { kind: 'pack', object: key, message: 'pack missing: the extents it held cannot be restored' };
    if (location.offset + location.length > size) {
      return { kind: 'extent', object: `${key}@${location.offset}`, message: `extent ${hex(id)} lies beyond the end of ${key} (${size} bytes)` };
    }
    return undefined;
  };

  // Each distinct extent list is checked once; its findings are charged to every backup using it.
  const listUsers = new Map<string, { backup: string; path: string }[]>();
  for (const m of manifests) {
    for (const f of m.files) {
      if (f.extents === undefined) continue;
      const users = listUsers.get(f.extents) ?? [];
      users.push({ backup: m.id, path: f.path });
      listUsers.set(f.extents, users);
    }
  }
  await mapLimit([...listUsers], options.parallel * 4, async ([listId, users]) => {
    const charge = (kind: ProblemKind, object: string, message: string) => {
      for (const u of users) problems.add(kind, object, message, u.backup);
    };
    let extents: (Buffer | null)[];
    try {
      extents = await repo.readExtentList(listId);
    } catch (err) {
      charge('extent-list', keys.extentList(listId), `extent list of ${users[0]!.path} unreadable: ${reason(err)}`);
      return;
    }
    checked.extentLists += 1;
    for (const id of extents) {
      if (id === null) continue;
      checked.extents += 1;
      const slot = index.slotOf(id);
      const location = slot < 0 ? undefined : index.get(id);
      if (location === undefined) {
        charge('extent', `extent ${hex(id)}`, `extent ${hex(id)} of ${users[0]!.path} is in no pack the index knows`);
        continue;
      }
      const fault = misplaced(location, id) ?? damagedSlots.get(slot);
      if (fault !== undefined) charge(fault.kind, fault.object, fault.message);
    }
  });

  const wal = await verifyWal(repo, manifests, problems, options);
  checked.walFiles = wal.files;
  checked.bytesReread += wal.bytesReread;

  const list = problems.list.sort((a, b) => (a.kind === b.kind ? (a.object < b.object ? -1 : 1) : a.kind < b.kind ? -1 : 1));
  return { ok: list.length === 0, full: options.full, checked, problems: list };
}

async function packsUsedBy(repo: Repository, manifests: readonly BackupManifest[], index: { get(id: Buffer): ExtentLocation | undefined }): Promise<Set<string>> {
  const packs = new Set<string>();
  const lists = new Set(manifests.flatMap((m) => m.files.flatMap((f) => (f.extents !== undefined ? [f.extents] : []))));
  for (const listId of lists) {
    try {
      for (const id of await repo.readExtentList(listId)) {
        const pack = id === null ? undefined : index.get(id)?.pack;
        if (pack !== undefined) packs.add(pack);
      }
    } catch {
      // Reported by the list pass.
    }
  }
  return packs;
}

/** Frames of a pack whose CRC, decompression, length or content hash is wrong. */
async function damagedFrames(bytes: Buffer, entries: readonly IndexEntry[], extentKey: Buffer): Promise<{ entry: IndexEntry; what: string }[]> {
  const bad: { entry: IndexEntry; what: string }[] = [];
  const batch = 64;
  for (let at = 0; at < entries.length; at += batch) {
    const slice = entries.slice(at, at + batch);
    const frames = slice.map((e) => bytes.subarray(e.offset, e.offset + e.length));
    let raws: (Buffer | undefined)[];
    try {
      raws = await decompressFrames(frames);
    } catch {
      // Find which frames of the batch fail, one by one.
      raws = await Promise.all(
        frames.map(async (frame, i) => {
          try {
            return (await decompressFrames([frame]))[0];
          } catch (err) {
            bad.push({ entry: slice[i]!, what: isPgfError(err) ? err.message : reason(err) });
            return undefined;
          }
        }),
      );
    }
    for (let i = 0; i < slice.length; i++) {
      const raw = raws[i];
      const entry = slice[i]!;
      if (raw === undefined) continue;
      if (entry.offset + entry.length > bytes.length) bad.push({ entry, what: 'frame beyond the end of the pack' });
      else if (raw.length !== entry.rawLength) bad.push({ entry, what: `${raw.length} bytes decompressed, ${entry.rawLength} recorded` });
      else if (!(await extentIds(raw, extentKey))[0]?.equals(entry.id)) bad.push({ entry, what: 'content does not hash to its id' });
    }
  }
  return bad;
}

interface TimelineWal {
  /** Numbers of whole segments archived. */
  segments: Set<bigint>;
  newest: bigint;
  /** Ancestors oldest first, each with the LSN where it was left. */
  lineage: { timeline: number; switchLsn: bigint }[];
}

/** WAL continuity per backup (and, for `full`, every WAL object decoded and checked). */
async function verifyWal(repo: Repository, manifests: readonly BackupManifest[], problems: Problems, options: VerifyOptions): Promise<{ files: number; bytesReread: number }> {
  const segmentSize = repo.config.walSegmentSize;
  const timelines = new Map<number, TimelineWal>();
  const timeline = (t: number) => {
    let entry = timelines.get(t);
    if (entry === undefined) {
      entry = { segments: new Set(), newest: -1n, lineage: [] };
      timelines.set(t, entry);
    }
    return entry;
  };
  const objects: { key: string; size: number }[] = [];
  for await (const object of repo.storage.list(keys.wal)) {
    objects.push(object);
    const segment = /^wal\/([0-9A-F]{8})\/([0-9A-F]{24})\.zst$/.exec(object.key);
    if (segment) {
      const tl = timeline(parseInt(segment[1]!, 16));
      const n = segmentNumber(segment[2]!, segmentSize);
      tl.segments.add(n);
      if (n > tl.newest) tl.newest = n;
    }
    const history = /^wal\/([0-9A-F]{8})\.history$/.exec(object.key);
    if (history) {
      try {
        const content = await loadWalFile(repo, parseWalFileName(`${history[1]!}.history`)!);
        if (content !== undefined) timeline(parseInt(history[1]!, 16)).lineage = parseTimelineHistory(content.toString('utf8'));
      } catch (err) {
        problems.add('wal', object.key, `timeline history unreadable: ${reason(err)}`);
      }
    }
  }

  let bytesReread = 0;
  if (options.full) {
    await mapLimit(objects, options.parallel * 2, async (object) => {
      const name = object.key.slice(object.key.lastIndexOf('/') + 1).replace(/\.zst$/, '');
      const summarized = name.endsWith('.summary') ? parseWalFileName(name.slice(0, -'.summary'.length)) : undefined;
      if (summarized !== undefined) {
        try {
          await loadWalSummary(repo, summarized);
          bytesReread += object.size;
        } catch (err) {
          problems.add('wal', object.key, `archived WAL summary damaged: ${reason(err)}`);
        }
        return;
      }
      const file = parseWalFileName(name);
      if (file === undefined || file.kind === 'history') return;
      try {
        const { content } = await decodeWalObject(object.key, await repo.storage.read(object.key));
        validateWalFile(file, content, repo.config);
        bytesReread += object.size;
      } catch (err) {
        problems.add('wal', object.key, `archived WAL damaged: ${reason(err)}`);
      }
    });
  }

  const segmentOf = (lsn: bigint) => lsn / BigInt(segmentSize);
  /** Reports missing segments of timeline t in [from, to]; `what` says what they break. */
  const requireRange = (t: number, from: bigint, to: bigint, backup: string, what: (first: string) => string) => {
    const have = timelines.get(t)?.segments ?? new Set<bigint>();
    let gapStart: bigint | undefined;
    for (let n = from; n <= to + 1n; n++) {
      const missing = n <= to && !have.has(n);
      if (missing && gapStart === undefined) gapStart = n;
      if (!missing && gapStart !== undefined) {
        const first = walSegmentNameOf(t, gapStart, segmentSize);
        const last = walSegmentNameOf(t, n - 1n, segmentSize);
        problems.add('wal', first === last ? first : `${first}..${last}`, `${n - gapStart} WAL segment(s) missing on timeline ${t}: ${what(first)}`, backup);
        gapStart = undefined;
      }
    }
  };

  for (const m of manifests) {
    const start = segmentNumber(m.walStart, segmentSize);
    const stop = segmentNumber(m.walStop, segmentSize);
    const stopLsn = parseLsn(m.stopLsn);
    requireRange(m.timeline, start, stop, m.id, () => `backup ${m.id} cannot be made consistent, it cannot be restored`);
    const breaks = (t: number) => (first: string) =>
      `recovery from backup ${m.id} along timeline ${t} stops before ${first}; later times are not recoverable from it`;
    const own = timelines.get(m.timeline);
    if (own !== undefined && own.newest > stop) requireRange(m.timeline, stop + 1n, own.newest, m.id, breaks(m.timeline));
    // Each later timeline that branched off this one after the backup: the path to its newest segment.
    for (const [t, wal] of timelines) {
      const at = wal.lineage.findIndex((s) => s.timeline === m.timeline);
      if (at < 0 || wal.lineage[at]!.switchLsn < stopLsn) continue;
      const path = [...wal.lineage.slice(at).map((s) => s.timeline), t];
      let from = stop + 1n;
      for (let i = 0; i < path.length; i++) {
        const onTimeline = path[i]!;
        const last = i < path.length - 1 ? segmentOf(wal.lineage[at + i]!.switchLsn) - 1n : wal.newest;
        if (last >= from) requireRange(onTimeline, from, last, m.id, breaks(t));
        if (i < path.length - 1) from = segmentOf(wal.lineage[at + i]!.switchLsn);
      }
    }
  }
  return { files: objects.length, bytesReread };
}
