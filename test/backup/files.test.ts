import { mkdtemp, mkdir, writeFile, symlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listDataFiles, parseRelationFileName } from '../../src/backup/files.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tree(root: string, files: Record<string, string | null>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    if (content === null) {
      await mkdir(full, { recursive: true });
    } else {
      await mkdir(join(full, '..'), { recursive: true });
      await writeFile(full, content);
    }
  }
}

describe('listDataFiles', () => {
  it('keeps what a restore needs and drops transient state', async () => {
    const pgdata = await mkdtemp(join(tmpdir(), 'pgf-files-'));
    const spc = await mkdtemp(join(tmpdir(), 'pgf-spc-'));
    dirs.push(pgdata, spc);
    await tree(pgdata, {
      PG_VERSION: '15\n',
      'global/pg_control': 'x',
      'global/1262': 'x',
      'global/pg_internal.init': 'x',
      'base/5/16384': 'x',
      'base/5/16384.1': 'x',
      'base/5/16384_fsm': 'x',
      'base/5/16390': 'x',
      'base/5/16390_init': 'x',
      'base/5/16390_fsm': 'x',
      'base/5/t3_16400': 'x',
      'base/5/pgsql_tmp/pgsql_tmp1.0': 'x',
      'base/5/pg_filenode.map': 'x',
      'pg_wal/000000010000000000000001': 'x',
      'pg_wal/archive_status/000000010000000000000001.ready': '',
      'pg_stat_tmp/global.stat': 'x',
      'pg_replslot/slot/state': 'x',
      'pg_xact/0000': 'x',
      'postmaster.pid': 'x',
      'backup_label': 'x',
      'pg_tblspc': null,
    });
    await tree(spc, { 'PG_15_202209061/5/16500': 'x', 'PG_15_202209061/5/16500_vm': 'x' });
    await symlink(spc, join(pgdata, 'pg_tblspc/16499'));

    const entries = await listDataFiles(pgdata);
    const paths = entries.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'PG_VERSION',
        'global/pg_control',
        'global/1262',
        'base/5/16384',
        'base/5/16384.1',
        'base/5/16384_fsm',
        'base/5/16390_init',
        'base/5/pg_filenode.map',
        'pg_wal',
        'pg_wal/archive_status',
        'pg_stat_tmp',
        'pg_replslot',
        'pg_xact/0000',
        'pg_tblspc/16499',
        'pg_tblspc/16499/PG_15_202209061/5/16500',
        'pg_tblspc/16499/PG_15_202209061/5/16500_vm',
      ]),
    );
    for (const gone of [
      'global/pg_internal.init',
      'base/5/16390',
      'base/5/16390_fsm',
      'base/5/t3_16400',
      'base/5/pgsql_tmp',
      'pg_wal/000000010000000000000001',
      'pg_wal/archive_status/000000010000000000000001.ready',
      'pg_stat_tmp/global.stat',
      'pg_replslot/slot',
      'postmaster.pid',
      'backup_label',
    ]) {
      expect(paths).not.toContain(gone);
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('base/5/16384.1')?.relation).toEqual({ fork: 'main', segment: 1 });
    expect(byPath.get('pg_tblspc/16499/PG_15_202209061/5/16500_vm')?.relation).toEqual({ fork: 'vm', segment: 0 });
    expect(byPath.get('base/5/pg_filenode.map')?.relation).toBeUndefined();
    expect(byPath.get('pg_xact/0000')?.relation).toBeUndefined();
    expect(byPath.get('pg_tblspc/16499')).toMatchObject({ kind: 'link', linkTarget: spc });
  });

  it('parses relation file names', () => {
    expect(parseRelationFileName('16384')).toEqual({ fork: 'main', segment: 0 });
    expect(parseRelationFileName('16384_vm.3')).toEqual({ fork: 'vm', segment: 3 });
    expect(parseRelationFileName('pg_filenode.map')).toBeUndefined();
  });
});
