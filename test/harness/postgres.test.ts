import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { access, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  makeServerUserDir,
  PG_VERSIONS,
  serverOsUser,
  startCluster,
  startClusterFromDirectory,
  waitFor,
  type Cluster,
} from '../support/postgres.js';

const execFileAsync = promisify(execFile);

const clusters: Cluster[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const cluster of clusters.splice(0)) await cluster.destroy();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function track(cluster: Promise<Cluster>): Promise<Cluster> {
  const started = await cluster;
  clusters.push(started);
  return started;
}

async function postmasterUid(pgdata: string): Promise<number> {
  const pid = (await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0];
  return (await stat(`/proc/${pid}`)).uid;
}

describe('startCluster', () => {
  for (const version of PG_VERSIONS) {
    it(`starts PostgreSQL ${version} with data checksums, as the server OS user, and stops it`, async () => {
      const cluster = await track(startCluster({ version }));
      const [row] = await cluster.query<{ num: string; checksums: string }>(
        "SELECT current_setting('server_version_num') AS num, current_setting('data_checksums') AS checksums",
      );
      expect(Math.floor(Number(row?.num) / 10000)).toBe(version);
      expect(row?.checksums).toBe('on');
      expect(await postmasterUid(cluster.pgdata)).toBe((await serverOsUser()).uid);
      expect((await cluster.psql(['-Atc', 'SELECT 40 + 2'])).stdout.trim()).toBe('42');
      await cluster.query('CREATE EXTENSION amcheck');

      await cluster.stop();
      expect(cluster.running).toBe(false);
      await expect(access(join(cluster.pgdata, 'postmaster.pid'))).rejects.toThrow();
    });
  }

  it('initialises without checksums when asked, even where initdb enables them by default', async () => {
    const cluster = await track(startCluster({ version: 18, dataChecksums: false }));
    const [row] = await cluster.query<{ data_checksums: string }>('SHOW data_checksums');
    expect(row?.data_checksums).toBe('off');
  });

  it('applies settings, WAL segment size and tablespaces, archives switched segments, restarts with new settings', async () => {
    const archive = await makeServerUserDir('pgf-harness-archive-');
    dirs.push(archive);
    const cluster = await track(
      startCluster({
        version: 15,
        walSegSizeMb: 1,
        tablespaces: ['ts_one'],
        settings: { wal_level: 'replica', archive_mode: 'on', archive_command: `cp %p ${archive}/%f` },
      }),
    );
    const [sizes] = await cluster.query<{ wal_segment_size: string }>('SHOW wal_segment_size');
    expect(sizes?.wal_segment_size).toBe('1MB');
    await cluster.query('CREATE TABLE t (id int) TABLESPACE ts_one');
    await cluster.query('INSERT INTO t SELECT generate_series(1, 1000)');
    const [location] = await cluster.query<{ location: string }>(
      "SELECT pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname = 'ts_one'",
    );
    expect(location?.location).toBe(cluster.tablespaces.ts_one);

    const walFile = await cluster.switchWal();
    await cluster.waitForArchived(walFile);
    expect((await stat(join(archive, walFile))).size).toBe(1024 * 1024);

    await cluster.restartWith({ archive_timeout: 77 });
    const [timeout] = await cluster.query<{ archive_timeout: string }>('SHOW archive_timeout');
    expect(timeout?.archive_timeout).toBe('77s');
    const [count] = await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM t');
    expect(count?.n).toBe(1000);

    await cluster.stop();
    const pgChecksums = cluster.tools.pgChecksums;
    expect(pgChecksums).not.toBeNull();
    const checked = await execFileAsync(pgChecksums ?? '', ['--check', '-D', cluster.pgdata]);
    expect(checked.stdout).toMatch(/Bad checksums:\s+0/);
  });

  it('treats a server that died under the test as stopped', async () => {
    const cluster = await track(startCluster({ version: 15 }));
    const pid = Number((await readFile(join(cluster.pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !existsSync(`/proc/${pid}`), { what: `postmaster ${pid} to exit` });
    await cluster.stop();
    expect(cluster.running).toBe(false);
  });

  it('reports a server that fails to start with the tail of its log', async () => {
    await expect(startCluster({ version: 15, settings: { shared_buffers: 'not-a-size' } })).rejects.toThrow(
      /invalid value for parameter "shared_buffers"/,
    );
  });
});

describe('startClusterFromDirectory', () => {
  for (const version of [15, 17] as const) {
    it(`starts a copy of a stopped PostgreSQL ${version} cluster on a new port`, async () => {
      const source = await track(startCluster({ version }));
      await source.query('CREATE TABLE kept AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 500) g');
      await source.stop();

      const parent = await mkdtemp(join(tmpdir(), 'pgf-harness-copy-'));
      dirs.push(parent);
      const copy = join(parent, 'pgdata');
      await execFileAsync('cp', ['-a', source.pgdata, copy]);
      const restored = await track(startClusterFromDirectory(copy));

      expect(restored.version).toBe(version);
      expect(restored.pgdata).toBe(copy);
      const [row] = await restored.query<{ n: number; checksums: string }>(
        "SELECT count(*)::int AS n, current_setting('data_checksums') AS checksums FROM kept",
      );
      expect(row).toEqual({ n: 500, checksums: 'on' });
      expect(((await stat(copy)).mode & 0o777).toString(8)).toBe('700');
      expect(await postmasterUid(copy)).toBe((await serverOsUser()).uid);
    });
  }

  it('restarts a crashed (immediately stopped) copy through crash recovery', async () => {
    const source = await track(startCluster({ version: 16 }));
    await source.query('CREATE TABLE crashed AS SELECT generate_series(1, 100) AS id');
    await source.stop('immediate');
    const parent = await makeServerUserDir('pgf-harness-crash-');
    dirs.push(parent);
    const copy = join(parent, 'pgdata');
    await execFileAsync('cp', ['-a', source.pgdata, copy]);
    const restored = await track(startClusterFromDirectory(copy));
    const [row] = await restored.query<{ n: number }>('SELECT count(*)::int AS n FROM crashed');
    expect(row?.n).toBe(100);
    expect(await restored.logTail(200)).toMatch(/database system was not properly shut down/);
    expect(await readdir(join(copy, 'pg_wal'))).not.toHaveLength(0);
  });
});
