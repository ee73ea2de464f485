/**
 * Garbage collection on a real repository, both backends: what no backup references goes, in two
 * phases; what a backup stored between the phases references is rescued; every kept backup's
 * extents read back exactly.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { storageBackends } from '../support/backends.js';
import { Repository, keys, type BackupManifest } from '../../src/repo/index.js';
import { compressFrame, extentId } from '../../src/native/index.js';
import { createLogger } from '../../src/log/index.js';
import { markGarbage, sweepGarbage } from '../../src/retention/gc.js';
import { verifyRepository } from '../../src/verify/index.js';

const backends = storageBackends('pgf-gc');

const log = createLogger('silent');

async function extents(repo: Repository, count: number) {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const raw = randomBytes(20_000);
      return { raw, id: extentId(raw, repo.extentKey), frame: await compressFrame(raw, 1), rawLength: raw.length };
    }),
  );
}

type Extent = Awaited<ReturnType<typeof extents>>[number];

function manifest(id: string, lists: string[]): BackupManifest {
  return {
    format: 1, id, permanent: false, detection: 'full', detectionReason: 'test', systemIdentifier: '7000000000000000001', pgVersionNum: 150000,
    timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000100', startTime: id, stopTime: id, walStart: '000000010000000000000002', walStop: '000000010000000000000002',
    backupLabel: '', tablespaceMap: '', dataChecksums: true, tablespaces: [], databases: [], checksumFailures: [],
    stats: { files: lists.length, bytesRead: 0, bytesNew: 0, bytesStored: 0, logicalBytes: 0, extentsReused: 0, extentsNew: 0, durationMs: 0 },
    files: lists.map((list, i) => ({ path: `base/1/${i}`, kind: 'file', size: 0, mode: 0o600, mtimeMs: 0, extents: list })),
  };
}

describe.each(backends)('garbage collection on %s', (_backend, openBackend) => {
  it('deletes unreferenced packs and lists, repacks sparse packs, rescues what a later backup reuses', async () => {
    const storage = await openBackend();
    const repo = await Repository.init(storage, { systemIdentifier: '7000000000000000001', pgMajor: 15, walSegmentSize: 16 << 20, blockSize: 8192, compressLevel: 1 });
    // One pack per group: `dead` is used only by the expired backup, `sparse` one live extent in
    // nine, `live` wholly used, `reused` used by the expired backup and, later, by a new one.
    const [dead, sparse, live, reused] = await Promise.all([extents(repo, 8), extents(repo, 10), extents(repo, 8), extents(repo, 8)]);
    for (const group of [dead, sparse, live, reused]) {
      const writer = repo.packWriter(await repo.loadIndex({ forReuse: true }));
      await writer.add(group);
      await repo.recordIndex(await writer.finish());
    }
    const list = (group: Extent[]) => repo.writeExtentList(group.map((e) => e.id));
    const [deadList, sparseLiveList, liveList, reusedList, sparseAllList] = await Promise.all([list(dead), list(sparse.slice(0, 1)), list(live), list(reused), list(sparse)]);
    await repo.writeManifest(manifest('20260101T000000000Z', [deadList, sparseAllList, reusedList]));
    await repo.writeManifest(manifest('20260102T000000000Z', [sparseLiveList, liveList]));
    const packs = async () => {
      const found: string[] = [];
      for await (const o of storage.list(keys.packs)) found.push(o.key);
      return found.sort();
    };
    expect(await packs()).toHaveLength(4);

    await storage.delete(keys.manifest('20260101T000000000Z'));
    const mark = await markGarbage(repo, log, { repackBelow: 0.5, parallel: 2 });
    expect(mark.packsCondemned).toBe(2);
    expect(mark.packsRepacked).toBe(1);
    expect(mark.listsCondemned).toBe(3);
    // Between the phases a backup stores a manifest reusing extents the mark condemned.
    await repo.writeManifest(manifest('20260103T000000000Z', [reusedList, liveList]));

    const sweep = await sweepGarbage(repo, log, { graceMs: 0, parallel: 4 });
    expect(sweep.marksSwept).toBe(1);
    expect(sweep.packsRescued).toBe(1);
    expect(sweep.listsRescued).toBe(1);
    expect(sweep.packsDeleted).toBe(2);
    expect(sweep.bytesFreed).toBeGreaterThan(15 * 20_000);
    const remaining = await packs();
    expect(remaining).toHaveLength(3);
    expect(await storage.stat(keys.extentList(deadList))).toBeUndefined();

    const index = await repo.loadIndex({ forReuse: false });
    const wanted = [sparse[0]!, ...live, ...reused];
    const { extents: raws } = await repo.extentReader(index, { parallel: 2 }).fetch(wanted.map((e) => e.id));
    raws.forEach((raw, i) => expect(raw.equals(wanted[i]!.raw)).toBe(true));
    expect(index.get(dead[0]!.id)).toBeUndefined();

    const report = await verifyRepository(repo, { full: true, parallel: 2 });
    expect(report.problems.filter((p) => p.kind !== 'wal')).toEqual([]);
    expect(report.checked.packs).toBe(3);

    // A second pass finds nothing more to do.
    const again = await markGarbage(repo, log, { repackBelow: 0.5, parallel: 2 });
    expect(again.mark).toBeUndefined();
    await storage.close();
  });

  it('merges many index deltas into one, every extent still found', async () => {
    const storage = await openBackend();
    const repo = await Repository.init(storage, { systemIdentifier: '7000000000000000001', pgMajor: 15, walSegmentSize: 16 << 20, blockSize: 8192, compressLevel: 1 });
    // 20 backups' worth: a pack and an index delta each.
    const groups: Extent[][] = [];
    for (let i = 0; i < 20; i++) {
      const group = await extents(repo, 2);
      const writer = repo.packWriter(await repo.loadIndex({ forReuse: true }));
      await writer.add(group);
      await repo.recordIndex(await writer.finish());
      groups.push(group);
    }
    const all = groups.flat();
    await repo.writeManifest(manifest('20260101T000000000Z', [await repo.writeExtentList(all.map((e) => e.id))]));
    const deltas = async () => {
      const found: string[] = [];
      for await (const o of storage.list(keys.index)) found.push(o.key);
      return found;
    };
    expect(await deltas()).toHaveLength(20);

    const mark = await markGarbage(repo, log, { repackBelow: 0.5, parallel: 2 });
    expect(mark.packsCondemned).toBe(0);
    expect(mark.indexDeltasReplaced).toBe(20);
    const sweep = await sweepGarbage(repo, log, { graceMs: 0, parallel: 4 });
    expect(sweep.indexDeltasDeleted).toBe(20);
    expect(await deltas()).toHaveLength(1);

    const index = await repo.loadIndex({ forReuse: false });
    const { extents: raws } = await repo.extentReader(index, { parallel: 2 }).fetch(all.map((e) => e.id));
    raws.forEach((raw, i) => expect(raw.equals(all[i]!.raw)).toBe(true));
    // Below the threshold now: nothing more to merge.
    expect((await markGarbage(repo, log, { repackBelow: 0.5, parallel: 2 })).mark).toBeUndefined();
    await storage.close();
  });
});
