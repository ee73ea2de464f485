import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { storageBackends } from '../support/backends.js';
import { Repository, acquireLease, keys } from '../../src/repo/index.js';
import { compressFrame, crc32cAppend, extentId } from '../../src/native/index.js';
import { isPgfError } from '../../src/errors/index.js';

const backends = storageBackends('pgf-repo');

describe.each(backends)('repository on %s', (_backend, openBackend) => {
async function freshRepo() {
  const storage = await openBackend();
  const repo = await Repository.init(storage, { systemIdentifier: '7000000000000000001', pgMajor: 15, walSegmentSize: 16 << 20, blockSize: 8192, compressLevel: 3 });
  return { storage, repo };
}

async function extents(repo: Repository, count: number) {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const raw = randomBytes(1000 + Math.floor(Math.random() * 5000));
      return { raw, id: extentId(raw, repo.extentKey), frame: await compressFrame(raw, 3), rawLength: raw.length };
    }),
  );
}

  it('refuses a second init and another cluster', async () => {
    const { storage } = await freshRepo();
    await expect(Repository.init(storage, { systemIdentifier: '1', pgMajor: 15, walSegmentSize: 1, blockSize: 8192, compressLevel: 3 })).rejects.toMatchObject({ code: 'REPO_ALREADY_INITIALIZED' });
    await expect(Repository.open(storage, { systemIdentifier: '2' })).rejects.toMatchObject({ code: 'REPO_CLUSTER_MISMATCH' });
    const reopened = await Repository.open(storage, { systemIdentifier: '7000000000000000001' });
    expect(reopened.config.pgMajor).toBe(15);
  });

  it('round-trips extents through packs, index deltas and coalesced reads', async () => {
    const { repo } = await freshRepo();
    const index = await repo.loadIndex({ forReuse: true });
    const writer = repo.packWriter(index, { targetBytes: 20_000, maxInFlight: 2 });
    const items = await extents(repo, 40);
    await writer.add(items);
    const durable = await writer.finish();
    expect(durable).toHaveLength(40);
    expect(writer.packsWritten).toBeGreaterThan(1);
    await repo.recordIndex(durable);

    const again = await repo.loadIndex({ forReuse: true });
    expect(again.size).toBe(40);
    const reader = repo.extentReader(again, { parallel: 3 });
    const wanted = [...items].reverse();
    const { extents: raws, crc32c } = await reader.fetch(wanted.map((i) => i.id));
    raws.forEach((raw, i) => expect(raw.equals(wanted[i]!.raw)).toBe(true));
    expect([...crc32c]).toEqual(wanted.map((w) => crc32cAppend(0, w.raw)));
    expect(reader.stats.requests).toBeLessThanOrEqual(writer.packsWritten);
  });

  it('rebuilds the index from packs a killed writer left without an index delta', async () => {
    const { repo } = await freshRepo();
    const writer = repo.packWriter(await repo.loadIndex({ forReuse: true }));
    const items = await extents(repo, 5);
    await writer.add(items);
    await writer.finish();
    const index = await repo.loadIndex({ forReuse: true });
    expect(items.every((i) => index.has(i.id))).toBe(true);
  });

  it('reads extents on the index deltas, listing the packs only for one that no delta names', async () => {
    const { storage, repo } = await freshRepo();
    const indexed = await extents(repo, 4);
    const first = repo.packWriter(await repo.loadIndex({ forReuse: true }));
    await first.add(indexed);
    await repo.recordIndex(await first.finish());
    // A backup killed after its pack was durable and before its index delta: later backups reuse these.
    const left = await extents(repo, 3);
    const second = repo.packWriter(await repo.loadIndex({ forReuse: true }));
    await second.add(left);
    await second.finish();

    const listsBefore = storage.stats.list;
    const reader = await repo.extentReaderFromDeltas({ parallel: 2 });
    const fromDeltas = await reader.fetch(indexed.map((i) => i.id));
    fromDeltas.extents.forEach((raw, i) => expect(raw.equals(indexed[i]!.raw)).toBe(true));
    expect(storage.stats.list - listsBefore).toBe(1);

    const mixed = [left[0]!, indexed[1]!, left[2]!];
    const { extents: raws } = await reader.fetch(mixed.map((i) => i.id));
    raws.forEach((raw, i) => expect(raw.equals(mixed[i]!.raw)).toBe(true));
    expect(storage.stats.list - listsBefore).toBe(2);

    const unknown = extentId(randomBytes(100), repo.extentKey);
    await expect(reader.fetch([unknown])).rejects.toMatchObject({ code: 'REPO_CORRUPT' });
    expect(storage.stats.list - listsBefore).toBe(2);
  });

  it('detects one flipped byte in a pack, a list and a manifest', async () => {
    const { storage, repo } = await freshRepo();
    const index = await repo.loadIndex({ forReuse: true });
    const writer = repo.packWriter(index);
    const items = await extents(repo, 3);
    await writer.add(items);
    await repo.recordIndex(await writer.finish());
    const listId = await repo.writeExtentList([items[0]!.id, null, items[1]!.id]);
    expect(await repo.readExtentList(listId)).toEqual([items[0]!.id, null, items[1]!.id]);

    const flip = async (key: string, at: number) => {
      const bytes = await storage.read(key);
      bytes[at] = bytes[at]! ^ 0x40;
      await storage.write(key, bytes);
    };
    const packKeys: string[] = [];
    for await (const object of storage.list('packs/')) packKeys.push(object.key);
    const packKey = packKeys[0]!;
    const pack = packKey.slice(packKey.lastIndexOf('/') + 1);
    await flip(packKey, 30);
    const reader = repo.extentReader(await repo.loadIndex({ forReuse: true }), { parallel: 1 });
    const failure = await reader.fetch([items[0]!.id]).catch((e: unknown) => e);
    expect(isPgfError(failure, 'REPO_CORRUPT')).toBe(true);
    expect((failure as Error).message).toContain(pack);

    await flip(keys.extentList(listId), 40);
    await expect(repo.readExtentList(listId)).rejects.toMatchObject({ code: 'REPO_CORRUPT' });
  });

  it('keeps both sets when two writers add packs and index deltas at once', async () => {
    const { storage, repo } = await freshRepo();
    const other = await Repository.open(storage);
    const [a, b] = await Promise.all([extents(repo, 30), extents(repo, 30)]);
    await Promise.all(
      [
        [repo, a],
        [other, b],
      ].map(async ([r, items]) => {
        const writer = (r as Repository).packWriter(await (r as Repository).loadIndex({ forReuse: true }), { targetBytes: 30_000, maxInFlight: 2 });
        await writer.add(items as typeof a);
        await (r as Repository).recordIndex(await writer.finish());
      }),
    );
    const index = await repo.loadIndex({ forReuse: true });
    expect(index.size).toBe(60);
    const all = [...a, ...b];
    const { extents: raws } = await repo.extentReader(index, { parallel: 4 }).fetch(all.map((i) => i.id));
    raws.forEach((raw, i) => expect(raw.equals(all[i]!.raw)).toBe(true));
  });

  it('detects a flipped byte in a manifest', async () => {
    const { storage, repo } = await freshRepo();
    const manifest = {
      format: 1, id: '20260101T000000000Z', permanent: false, detection: 'full' as const, detectionReason: 'test', systemIdentifier: '1', pgVersionNum: 150000,
      timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000100', startTime: '', stopTime: '', walStart: '', walStop: '', backupLabel: '', tablespaceMap: '',
      dataChecksums: true, tablespaces: [], databases: [], checksumFailures: [], files: [],
      stats: { files: 0, bytesRead: 0, bytesNew: 0, bytesStored: 0, logicalBytes: 0, extentsReused: 0, extentsNew: 0, durationMs: 0 },
    };
    await repo.writeManifest(manifest);
    expect(await repo.readManifest(manifest.id)).toEqual(manifest);
    const key = keys.manifest(manifest.id);
    const bytes = await storage.read(key);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 1;
    await storage.write(key, bytes);
    const failure = await repo.readManifest(manifest.id).catch((e: unknown) => e);
    expect(isPgfError(failure, 'REPO_CORRUPT')).toBe(true);
    expect((failure as Error).message).toContain(key);
  });

  it('lets one backup lease at a time and names the holder', async () => {
    const { storage } = await freshRepo();
    const first = await acquireLease(storage, 'backup', { command: 'backup' });
    const second = await acquireLease(storage, 'backup', { command: 'backup' }).catch((e: unknown) => e);
    expect(isPgfError(second, 'REPO_LOCKED')).toBe(true);
    expect((second as Error).message).toContain(`pid ${process.pid}`);
    const gc = await acquireLease(storage, 'expire', { command: 'expire' });
    await gc.release();
    await first.release();
    const third = await acquireLease(storage, 'backup', { command: 'backup', ttlMs: 1 });
    // An expired lease no longer blocks.
    const fourth = await acquireLease(storage, 'backup', { command: 'backup' });
    await fourth.release();
    await third.release();
  });
});
