/**
 * A repository in a real S3-compatible bucket, archiving included, and a backup killed half way:
 * it leaves no manifest, the next backup succeeds, and every backup restores exactly.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeServerUserDir, run, serverOsUser } from '../support/os-user.js';
import { startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';
import { startS3Server, type S3Server } from '../support/s3server.js';
import { S3Storage } from '../../src/storage/s3.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

describe('S3 repository', () => {
  let s3: S3Server;
  let source: Cluster;
  const clusters: Cluster[] = [];
  const dirs: string[] = [];
  const repo = 's3://pgforever-test/cluster-a';
  let s3Env: Record<string, string>;

  const pgforever = async (args: string[]) =>
    (await run(process.execPath, [bin, ...args, '--repo', repo, '--log-level', 'warn'], { asServerUser: true, env: { ...process.env, ...source.env, ...s3Env, PGFOREVER_PGDATA: source.pgdata } })).stdout;

  const digest = async (cluster: Cluster) =>
    (await cluster.query<{ d: string }>(`SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) AS d FROM pgbench_accounts`))[0]!.d;

  beforeAll(async () => {
    s3 = await startS3Server();
    s3Env = { PGFOREVER_S3_ENDPOINT: s3.endpoint, PGFOREVER_S3_ACCESS_KEY_ID: s3.accessKeyId, PGFOREVER_S3_SECRET_ACCESS_KEY: s3.secretAccessKey, PGFOREVER_S3_REGION: s3.region };
    const { stdout } = await run(process.execPath, [bin, 'archive-command', '--json', '--repo', repo]);
    const archiveCommand = (JSON.parse(stdout) as { archive_command: string }).archive_command;
    source = await startCluster({ version: 15, env: s3Env, settings: { archive_mode: 'on', archive_command: archiveCommand } });
    await pgforever(['init']);
    await run(source.tools.pgbench, ['-i', '-s', '4', '-q'], { env: { ...process.env, ...source.env } });
  });

  afterAll(async () => {
    for (const c of clusters) await c.destroy();
    await source?.destroy();
    await s3?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('survives a killed backup and restores every backup exactly', async () => {
    const storage = new S3Storage({ bucket: 'pgforever-test', prefix: 'cluster-a', endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    const user = await serverOsUser();
    const child = spawn(process.execPath, [bin, 'backup', '--repo', repo, '--log-level', 'warn'], {
      env: { ...process.env, ...source.env, ...s3Env, PGFOREVER_PGDATA: source.pgdata },
      stdio: 'ignore',
      ...(process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {}),
    });
    const exited = new Promise((r) => child.once('exit', r));
    await waitFor(async () => {
      for await (const lease of storage.list('locks/')) return lease.key;
      return undefined;
    }, { deadlineMs: 60_000, what: 'the backup to start' });
    child.kill('SIGKILL');
    await exited;
    const manifests: string[] = [];
    for await (const o of storage.list('backups/')) manifests.push(o.key);
    expect(manifests).toEqual([]);

    // The killed backup's lease names a process that is gone: the next backup clears it.
    const full = JSON.parse(await pgforever(['backup', '--json'])) as { id: string };
    const atFull = await digest(source);
    await source.query('UPDATE pgbench_accounts SET abalance = abalance + 3 WHERE aid % 50 = 0');
    const incremental = JSON.parse(await pgforever(['backup', '--json'])) as { id: string; detection: string };
    expect(incremental.detection).toBe('lsn');
    const atIncremental = await digest(source);
    await storage.close();

    for (const [id, expected] of [
      [full.id, atFull],
      [incremental.id, atIncremental],
    ] as const) {
      const target = await makeServerUserDir('pgf-s3-restored-');
      dirs.push(target);
      await pgforever(['restore', '--pgdata', join(target, 'data'), '--set', id, '--target', 'immediate']);
      const cluster = await startClusterFromDirectory(join(target, 'data'), { env: s3Env });
      clusters.push(cluster);
      await waitFor(async () => (await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery' });
      expect(await digest(cluster)).toBe(expected);
    }
  });
});
