import { describe, expect, it } from 'vitest';
import { backupIdAt, backupStartOf, type BackupManifest } from '../../src/repo/index.js';
import { chooseBackup } from '../../src/restore/run.js';
import type { RecoveryTarget } from '../../src/restore/recovery.js';
import { formatLsn, parseLsn } from '../../src/pg/lsn.js';

const hour = 3_600_000;
const base = Date.UTC(2026, 11, 1, 0, 0, 0, 0);

/**
 * 40 backups an hour apart, each taking 10 minutes. At the 25th a point-in-time restore branched
 * timeline 2 off an earlier position, so LSNs fall back there while times go on rising.
 */
function repository(): { ids: string[]; manifests: Map<string, BackupManifest> } {
  const manifests = new Map<string, BackupManifest>();
  for (let i = 0; i < 40; i++) {
    const start = base + i * hour;
    const lsn = BigInt((i < 25 ? i : i - 10) * 0x1000000 + 0x800000);
    const manifest = {
      id: backupIdAt(new Date(start)),
      timeline: i < 25 ? 1 : 2,
      startTime: new Date(start).toISOString(),
      stopTime: new Date(start + 600_000).toISOString(),
      startLsn: formatLsn(lsn - 0x100000n),
      stopLsn: formatLsn(lsn),
    } as BackupManifest;
    manifests.set(manifest.id, manifest);
  }
  return { ids: [...manifests.keys()], manifests };
}

/** chooseBackup over the repository, with the ids of the manifests it read. */
async function choose(target: RecoveryTarget): Promise<{ chosen: string; read: Set<string> }> {
  const { ids, manifests } = repository();
  const read = new Set<string>();
  const manifestOf = async (id: string) => {
    read.add(id);
    return manifests.get(id)!;
  };
  return { chosen: (await chooseBackup(ids, manifestOf, target)).id, read };
}

/** What reading every manifest gives: the newest that finished before the target. */
function expected(target: RecoveryTarget): string {
  const all = [...repository().manifests.values()];
  const before = all.filter((m) =>
    target.kind === 'time' ? Date.parse(m.stopTime) <= Date.parse(target.value) : target.kind === 'lsn' ? parseLsn(m.stopLsn) <= parseLsn(target.value) : true,
  );
  return before.at(-1)!.id;
}

describe('backup ids', () => {
  it('are the start time to the millisecond, and give it back', () => {
    const at = new Date(Date.UTC(2026, 11, 2, 7, 5, 0, 123));
    expect(backupIdAt(at)).toBe('20261202T070500123Z');
    expect(backupStartOf(backupIdAt(at))).toBe(at.getTime());
    expect(backupStartOf('20261202T070500Z')).toBeUndefined();
    expect(backupStartOf('manual-backup')).toBeUndefined();
  });
});

describe('chooseBackup', () => {
  it('reads one manifest for a restore to the end of WAL or to consistency', async () => {
    for (const target of [{ kind: 'latest' }, { kind: 'immediate' }] as const) {
      const { chosen, read } = await choose(target);
      expect(chosen).toBe(backupIdAt(new Date(base + 39 * hour)));
      expect(read.size).toBe(1);
    }
  });

  it('chooses for a time target what reading every manifest would, without reading those that started after it', async () => {
    for (const offset of [10 * 60_000, 30 * 60_000, 59 * 60_000, 5 * hour + 10 * 60_000, 5 * hour + 9 * 60_000, 38 * hour, 45 * hour]) {
      const value = new Date(base + offset).toISOString();
      const { chosen, read } = await choose({ kind: 'time', value });
      expect(chosen, value).toBe(expected({ kind: 'time', value }));
      expect(read.size, value).toBeLessThanOrEqual(5);
      for (const id of read) expect(backupStartOf(id)!, value).toBeLessThanOrEqual(base + offset);
    }
  });

  it('chooses for an LSN target what reading every manifest would, across the timeline switch', async () => {
    for (const value of ['0/800000', '0/1800000', '0/9000000', '0/18000000', '0/E900000', '0/1D800000', '0/1D7FFFFF', '0/F000000', '1/0']) {
      const { chosen } = await choose({ kind: 'lsn', value });
      expect(chosen, value).toBe(expected({ kind: 'lsn', value }));
    }
  });

  it('reads on past an id that is not a start time (it might have finished before the target)', async () => {
    const { ids, manifests } = repository();
    const manual = { ...manifests.get(ids[39]!)!, id: 'zz-manual', stopTime: new Date(base + 2 * hour).toISOString() } as BackupManifest;
    const target = { kind: 'time', value: new Date(base + 5 * hour).toISOString() } as const;
    const chosen = await chooseBackup([...ids, manual.id], async (id) => (id === manual.id ? manual : manifests.get(id)!), target);
    expect(chosen.id).toBe('zz-manual');
  });

  it('refuses a target before the oldest backup finished, saying what the backups cover', async () => {
    await expect(choose({ kind: 'time', value: new Date(base + 9 * 60_000).toISOString() })).rejects.toMatchObject({
      code: 'RESTORE_TARGET',
      message: expect.stringMatching(/^target time .* is before the oldest backup finished: backups cover 2026-12-01T00:10:00.000Z \(0\/800000\) onwards$/),
    });
    await expect(choose({ kind: 'lsn', value: '0/7FFFFF' })).rejects.toMatchObject({ code: 'RESTORE_TARGET', message: expect.stringMatching(/^target LSN 0\/7FFFFF is before the oldest backup finished/) });
  });

  it('says so when there is no backup', async () => {
    await expect(chooseBackup([], async () => ({}) as BackupManifest, { kind: 'latest' })).rejects.toMatchObject({ code: 'RESTORE_NO_BACKUP' });
  });
});
