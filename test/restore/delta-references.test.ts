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

/** 30 backups an hour apart on timeline 1. */
const manifests = Array.from({ length: 30 }, (_, i) => ({
  id: backupIdAt(new Date(base + i * hour)),
  timeline: 1,
  startLsn: formatLsn(BigInt(i + 1) * 0x1000000n + 0x28n),
  stopLsn: formatLsn(BigInt(i + 1) * 0x1000000n + 0x800000n),
})) as BackupManifest[];
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

async function references(pgdata: string, chosen: string): Promise<{ compared: string[]; read: number }> {
  const read = new Set<string>();
  const manifestOf = async (id: string) => {
    read.add(id);
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

  it('compares with every other backup when the directory has no backup_manifest, or one of no backup here', async () => {
    const all = ids.filter((id) => id !== ids[29]).sort();
    expect((await references(await restoredFrom(undefined), ids[29]!)).compared).toEqual(all);
    const foreign = { ...manifests[0]!, startLsn: '0/7777028' } as BackupManifest;
    expect((await references(await restoredFrom(foreign), ids[29]!)).compared).toEqual(all);
  });
});
