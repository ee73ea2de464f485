import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backupIdAt, type BackupManifest } from '../../src/repo/index.js';
import { renderBackupManifest } from '../../src/restore/backup-manifest.js';
import { deltaReferences } from '../../src/restore/run.js';
import { formatLsn } from '../../src/pg/lsn.js';

const hour = 3_600_000;
const base = Date.UTC(2026, 11, 1);

/**
 * 30 backups an hour apart. From the 20th on they are on timeline 2, which branched off before the
 * 10th: LSNs start again from there, so some backups of both timelines start at the same LSN.
 */
const manifests = Array.from({ length: 30 }, (_, i) => {
  const position = BigInt(i < 20 ? i + 1 : i - 10) * 0x1000000n;
  return {
    id: backupIdAt(new Date(base + i * hour)),
    timeline: i < 20 ? 1 : 2,
    startLsn: formatLsn(position + 0x28n),
    stopLsn: formatLsn(position + 0x800000n),
  };
}) as BackupManifest[];
const ids = manifests.map((m) => m.id);

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A data directory holding the backup_manifest a restore of `from` wrote (none when undefined). */
async function restoredFrom(from: BackupManifest | undefined, { files = 3 } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgf-delta-refs-'));
  dirs.push(dir);
  if (from !== undefined) {
    // Many files, so that the WAL range lies beyond the part of the manifest read first.
    const entries = Array.from({ length: files }, (_, i) => ({ path: `base/5/${16384 + i}`, size: 8192, mtime: new Date(base), crc32c: '00000000' }));
    await writeFile(join(dir, 'backup_manifest'), renderBackupManifest(entries, [{ timeline: from.timeline, startLsn: from.startLsn, endLsn: from.stopLsn }]));
  }
  return dir;
}

async function references(pgdata: string, chosen: string, unreadable: string[] = []): Promise<{ compared: string[]; read: number }> {
  const read = new Set<string>();
  const manifestOf = async (id: string) => {
    read.add(id);
    if (unreadable.includes(id)) throw new Error(`backup ${id} was expired meanwhile`);
    return manifests.find((m) => m.id === id)!;
  };
  const compared = (await deltaReferences(pgdata, ids, manifestOf, chosen)).map((m) => m.id).sort();
  return { compared, read: read.size };
}

describe('deltaReferences', () => {
  it('compares a directory pgforever restored with the backup restored and the two newest', async () => {
    const { compared, read } = await references(await restoredFrom(manifests[25], { files: 5000 }), ids[29]!);
    expect(compared).toEqual([ids[25], ids[27], ids[28]]);
    expect(read).toBeLessThanOrEqual(5);
  });

  it('does not compare with the backup being restored, when that is the one restored before', async () => {
    const { compared } = await references(await restoredFrom(manifests[29]), ids[29]!);
    expect(compared).toEqual([ids[27], ids[28]]);
  });

  it('finds an old backup restored long ago, and a backup older than the one being restored', async () => {
    expect((await references(await restoredFrom(manifests[2]), ids[29]!)).compared).toEqual([ids[2], ids[27], ids[28]]);
    expect((await references(await restoredFrom(manifests[20]), ids[10]!)).compared).toEqual([ids[20], ids[28], ids[29]]);
  });

  it('tells the timelines apart', async () => {
    // Backups 13 (timeline 1) and 24 (timeline 2) start at the same LSN.
    expect(manifests[13]!.startLsn).toBe(manifests[24]!.startLsn);
    expect((await references(await restoredFrom(manifests[13]), ids[29]!)).compared).toEqual([ids[13], ids[27], ids[28]]);
    expect((await references(await restoredFrom(manifests[24]), ids[29]!)).compared).toEqual([ids[24], ids[27], ids[28]]);
  });

  it('leaves out manifests it cannot read (expired meanwhile) instead of failing', async () => {
    expect((await references(await restoredFrom(manifests[25]), ids[29]!, [ids[28]!])).compared).toEqual([ids[25], ids[27]]);
    const all = ids.filter((id) => id !== ids[29] && id !== ids[3]).sort();
    expect((await references(await restoredFrom(undefined), ids[29]!, [ids[3]!])).compared).toEqual(all);
    // The backup restored was expired since: every other backup, as for an unknown directory.
    expect((await references(await restoredFrom(manifests[5]), ids[29]!, [ids[5]!])).compared).toEqual(all.filter((id) => id !== ids[5]).concat(ids[3]!).sort());
  });

  it('compares with every other backup when the directory has no backup_manifest, or one of no backup here', async () => {
    const all = ids.filter((id) => id !== ids[29]).sort();
    expect((await references(await restoredFrom(undefined), ids[29]!)).compared).toEqual(all);
    const foreign = { ...manifests[0]!, startLsn: '0/7777028' } as BackupManifest;
    expect((await references(await restoredFrom(foreign), ids[29]!)).compared).toEqual(all);
  });
});
