/**
 * The whole loop on a real PostgreSQL 15: init, archiving through what `archive-command` prints, a
 * full backup, a workload, incremental backups, and restores of each backup that must equal the
 * source at its point, then pass amcheck and pg_checksums.
 */
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, makeServerUserDir } from '../support/os-user.js';
import { startCluster, startClusterFromDirectory, waitFor, type Cluster, type PgVersion } from '../support/postgres.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

interface BackupJson {
  id: string;
  detection: string;
  bytesStored: number;
  extentsReused: number;
  stopLsn: string;
}

describe.each([15, 17] as PgVersion[])('backup and restore on PostgreSQL %i', (version) => {
  let source: Cluster;
  let repo: string;
  const restored: Cluster[] = [];
  const scratch: string[] = [];

  const pgforever = async (args: string[]) => {
    const { stdout } = await run(process.execPath, [bin, ...args, '--repo', repo, '--log-level', 'warn'], {
      asServerUser: true,
      env: { ...process.env, ...source.env, PGFOREVER_PGDATA: source.pgdata },
    });
    return stdout;
  };

  /** Contents of the tables the workload touches, as one digest per table. */
  const digest = async (cluster: Cluster) => {
    const [row] = await cluster.query<{ accounts: string; events: string }>(
      `SELECT (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts) AS accounts,
              (SELECT coalesce(md5(string_agg(id || ':' || payload, ',' ORDER BY id)), '') FROM events) AS events`,
    );
    return row!;
  };

  const restoreInto = async (args: string[]) => {
    const partial = args.includes('--db-include');
    const target = await makeServerUserDir('pgf-restored-');
    scratch.push(target);
    const [space] = await source.query<{ oid: number }>(`SELECT oid::int AS oid FROM pg_tablespace WHERE spcname = 'fast'`);
    await pgforever(['restore', '--pgdata', join(target, 'data'), '--tablespace-map', `${space!.oid}=${join(target, 'fast')}`, ...args]);
    if (source.tools.pgVerifybackup && !partial) await run(source.tools.pgVerifybackup, ['-n', join(target, 'data')]);
    const cluster = await startClusterFromDirectory(join(target, 'data'));
    restored.push(cluster);
    await waitFor(async () => (await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery to end' });
    return cluster;
  };

  beforeAll(async () => {
    repo = await makeServerUserDir('pgf-repo-');
    scratch.push(repo);
    const { stdout } = await run(process.execPath, [bin, 'archive-command', '--json', '--repo', repo]);
    const commands = JSON.parse(stdout) as { archive_command: string };
    source = await startCluster({ version, tablespaces: ['fast'], settings: { wal_level: 'replica', archive_mode: 'on', archive_command: commands.archive_command } });
    await pgforever(['init']);
    await run(source.tools.pgbench, ['-i', '-s', '3', '-q'], { env: { ...process.env, ...source.env } });
    await source.query('CREATE TABLE events (id serial PRIMARY KEY, payload text) TABLESPACE fast');
    await source.query('CREATE EXTENSION amcheck');
    await source.query('CREATE DATABASE other');
    await source.psql(['-d', 'other', '-c', 'CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g']);
  });

  afterAll(async () => {
    for (const cluster of restored) await cluster.destroy();
    await source?.destroy();
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  it('restores a full and two incremental backups exactly, and the latest state through WAL', async () => {
    const full = JSON.parse(await pgforever(['backup', '--json'])) as BackupJson;
    expect(full.detection).toBe('full');
    const atFull = await digest(source);

    await source.query(`UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 97 = 0`);
    await source.query(`INSERT INTO events (payload) SELECT md5(g::text) FROM generate_series(1, 5000) g`);
    const incr1 = JSON.parse(await pgforever(['backup', '--json'])) as BackupJson;
    expect(incr1.detection).toBe('lsn');
    expect(incr1.extentsReused).toBeGreaterThan(0);
    expect(incr1.bytesStored).toBeLessThan(full.bytesStored);
    const atIncr1 = await digest(source);

    await source.query(`DELETE FROM events WHERE id % 3 = 0`);
    await source.query(`UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid < 500`);
    const incr2 = JSON.parse(await pgforever(['backup', '--json'])) as BackupJson;
    const atIncr2 = await digest(source);

    await source.query(`INSERT INTO events (payload) VALUES ('after the last backup')`);
    const latest = await digest(source);
    await source.waitForArchived(await source.switchWal());

    const info = JSON.parse(await pgforever(['info', '--json'])) as {
      backups: { id: string; detection: string }[];
      wal: { timeline: string; first: string; last: string }[];
      walGaps: string[];
      sizes: { dedupRatio: number };
    };
    expect(info.backups.map((b) => b.id)).toEqual([full.id, incr1.id, incr2.id]);
    expect(info.backups.map((b) => b.detection)).toEqual(['full', 'lsn', 'lsn']);
    expect(info.wal).toHaveLength(1);
    expect(info.walGaps).toEqual([]);
    expect(info.sizes.dedupRatio).toBeGreaterThan(1);

    const checks: [BackupJson, { accounts: string; events: string }][] = [
      [full, atFull],
      [incr1, atIncr1],
      [incr2, atIncr2],
    ];
    for (const [backup, expected] of checks) {
      const cluster = await restoreInto(['--set', backup.id, '--target', 'immediate']);
      expect(await digest(cluster)).toEqual(expected);
      await run(cluster.tools.pgAmcheck, ['--heapallindexed', '-d', 'postgres'], { env: { ...process.env, ...cluster.env } });
      await cluster.destroy();
    }

    // --delta over a restore of the full backup: unchanged files are left alone, the rest compared
    // extent by extent, and the result is the incremental's data.
    const deltaDir = await makeServerUserDir('pgf-delta-');
    scratch.push(deltaDir);
    const [space] = await source.query<{ oid: number }>(`SELECT oid::int AS oid FROM pg_tablespace WHERE spcname = 'fast'`);
    const deltaArgs = ['--pgdata', join(deltaDir, 'data'), '--tablespace-map', `${space!.oid}=${join(deltaDir, 'fast')}`, '--target', 'immediate'];
    const fresh = JSON.parse(await pgforever(['restore', '--json', ...deltaArgs, '--set', full.id])) as { extentsWritten: number };
    // A relation file the backup does not have, inside the tablespace (reached through its link).
    const [versionDir] = await readdir(join(deltaDir, 'fast'));
    const [databaseDir] = await readdir(join(deltaDir, 'fast', versionDir!));
    const stray = join(deltaDir, 'fast', versionDir!, databaseDir!, '999999');
    await writeFile(stray, 'not in the backup');
    const delta = JSON.parse(await pgforever(['restore', '--delta', '--json', ...deltaArgs, '--set', incr2.id])) as { filesKept: number; extentsWritten: number };
    await expect(stat(stray)).rejects.toThrow(/ENOENT/);
    expect(delta.filesKept).toBeGreaterThan(500);
    expect(delta.extentsWritten).toBeLessThan(fresh.extentsWritten / 2);
    // Its backup_manifest checks kept files by size, and files it wrote whole by checksum too.
    const deltaManifest = await readFile(join(deltaDir, 'data', 'backup_manifest'), 'utf8');
    expect(deltaManifest).toMatch(/"Path": "base\/\d+\/\d+", "Size": \d+, "Last-Modified": "[^"]+" \}/);
    expect(deltaManifest).toMatch(/"Path": "base\/\d+\/\d+", "Size": \d+, "Last-Modified": "[^"]+", "Checksum-Algorithm": "CRC32C"/);
    if (source.tools.pgVerifybackup) await run(source.tools.pgVerifybackup, ['-n', join(deltaDir, 'data')]);
    const deltaCluster = await startClusterFromDirectory(join(deltaDir, 'data'));
    restored.push(deltaCluster);
    await waitFor(async () => (await deltaCluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery after --delta' });
    expect(await digest(deltaCluster)).toEqual(atIncr2);
    await deltaCluster.destroy();

    const partial = await restoreInto(['--db-include', 'postgres']);
    expect(await digest(partial)).toEqual(latest);
    await partial.query('DROP DATABASE other');
    await partial.destroy();

    const replayed = await restoreInto([]);
    expect(await digest(replayed)).toEqual(latest);
    await replayed.psql(['-d', 'other', '-c', 'SELECT count(*) FROM t']);
    await replayed.stop();
    if (replayed.tools.pgChecksums) await run(replayed.tools.pgChecksums, ['--check', '-D', replayed.pgdata], { asServerUser: true });
  });
});
