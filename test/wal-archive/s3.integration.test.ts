/**
 * Archiving to a real S3-compatible server on loopback, through what `archive-command` prints:
 * a pusher killed while its upload hangs loses nothing, and a store that is unreachable or stalls
 * makes archive-push fail with one clear line instead of hanging.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Storage } from '../../src/storage/s3.js';
import { Repository } from '../../src/repo/index.js';
import { parseWalFileName } from '../../src/wal/names.js';
import { loadWalFile } from '../../src/wal/repository.js';
import { defaultSpool } from '../../src/wal/spool.js';
import { freePort } from '../support/postgres.js';
import { grantToServerUser } from '../support/os-user.js';
import { startCluster, waitFor, type Cluster } from '../support/postgres.js';
import { startS3Server, type S3Server } from '../support/s3server.js';
import { acceptedConnections, archiveCommandsFor, daemonPid, pgforever, pidListeningOn, runConfigured } from './support.js';

describe('archiving to an S3 repository (PostgreSQL 15)', () => {
  const repoUrl = 's3://pgforever-test/wal-archive';
  let s3: S3Server;
  let s3Env: Record<string, string>;
  let cluster: Cluster;
  let repo: Repository;
  let commands: { archive_command: string; restore_command: string };
  let scratch: string;
  let stopped: number | undefined;

  const pause = async () => {
    stopped = await pidListeningOn(Number(new URL(s3.endpoint).port));
    process.kill(stopped, 'SIGSTOP');
  };
  const resume = () => {
    if (stopped !== undefined) process.kill(stopped, 'SIGCONT');
    stopped = undefined;
  };

  /** A directory shaped like a data directory, with one WAL file in its pg_wal. */
  const looseSegment = async (label: string, name: string, content: Buffer) => {
    const pgdata = join(scratch, label);
    await mkdir(join(pgdata, 'pg_wal', 'archive_status'), { recursive: true });
    await writeFile(join(pgdata, 'pg_wal', name), content);
    await grantToServerUser(pgdata);
    return pgdata;
  };

  beforeAll(async () => {
    s3 = await startS3Server();
    s3Env = {
      PGFOREVER_S3_ENDPOINT: s3.endpoint,
      PGFOREVER_S3_ACCESS_KEY_ID: s3.accessKeyId,
      PGFOREVER_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      PGFOREVER_S3_REGION: s3.region,
    };
    scratch = await mkdtemp(join(tmpdir(), 'pgf-wal-s3-'));
    await grantToServerUser(scratch);
    commands = await archiveCommandsFor(repoUrl);
    cluster = await startCluster({
      version: 15,
      walSegSizeMb: 1,
      env: s3Env,
      settings: { wal_level: 'replica', archive_mode: 'on', archive_command: commands.archive_command, wal_keep_size: '256MB' },
    });
    const init = await pgforever(['init', '--repo', repoUrl, '--log-level', 'warn'], { ...cluster.env, ...s3Env });
    expect(init.stderr).toBe('');
    repo = await Repository.open(new S3Storage({ bucket: s3.bucket, prefix: 'wal-archive', endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true }));
  });

  afterAll(async () => {
    resume();
    await repo?.storage.close();
    await cluster?.destroy();
    await s3?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('loses nothing when the pusher is killed in the middle of an upload', async () => {
    const first = await cluster.switchWal();
    await cluster.waitForArchived(first, { deadlineMs: 60_000 });
    const spool = defaultSpool('pg_wal', repoUrl);
    // The daemon logs its start line once it has answered its first request.
    const killed = await waitFor(() => daemonPid(join(cluster.pgdata, spool)), { what: 'the daemon\'s start line' });

    await pause();
    const name = await cluster.switchWal();
    // The archiver's client has connected and waits: the daemon is stuck in the upload.
    await waitFor(async () => (await acceptedConnections(join(spool, 'pusher.sock'))) > 0, { what: 'the archiver to ask the daemon' });
    process.kill(killed, 'SIGKILL');
    resume();

    await cluster.waitForArchived(name, { deadlineMs: 60_000 });
    const stored = await loadWalFile(repo, parseWalFileName(name)!);
    expect(stored?.equals(await readFile(join(cluster.pgdata, 'pg_wal', name)))).toBe(true);
    // The replacement logs its start line only after its first reply, so it can trail the archiving.
    const replacement = await waitFor(async () => {
      const pid = await daemonPid(join(cluster.pgdata, spool));
      return pid !== killed && pid;
    }, { what: 'a replacement daemon\'s start line' });
    expect(replacement).toBeGreaterThan(0);
  });

  it('fails with one clear line when the endpoint is unreachable', async () => {
    const name = await cluster.switchWal();
    await cluster.waitForArchived(name, { deadlineMs: 60_000 });
    const pgdata = await looseSegment('unreachable', name, await readFile(join(cluster.pgdata, 'pg_wal', name)));
    const nowhere = { ...s3Env, PGFOREVER_S3_ENDPOINT: `http://127.0.0.1:${await freePort()}` };
    for (const result of [
      await runConfigured(commands.archive_command, { p: `pg_wal/${name}` }, pgdata, nowhere),
      await pgforever(['archive-push', join(pgdata, 'pg_wal', name), '--repo', repoUrl], nowhere),
    ]) {
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toContain('STORAGE_UNREACHABLE: cannot reach the object store');
    }
  });

  it('answers within its timeout when the store stalls', async () => {
    const name = await cluster.switchWal();
    await cluster.waitForArchived(name, { deadlineMs: 60_000 });
    const content = await readFile(join(cluster.pgdata, 'pg_wal', name));
    const viaClient = await looseSegment('stalled-client', name, content);
    const viaNode = await looseSegment('stalled-node', name, content);
    await pause();
    try {
      for (const result of [
        await runConfigured(`${commands.archive_command.replace(' "%p"', '')} --timeout 5 "%p"`, { p: `pg_wal/${name}` }, viaClient, s3Env),
        await pgforever(['archive-push', join(viaNode, 'pg_wal', name), '--repo', repoUrl, '--timeout', '5'], s3Env),
      ]) {
        expect(result.code).toBe(1);
        expect(result.stderr.trim().split('\n')).toHaveLength(1);
        expect(result.stderr).toMatch(/within 5 s/);
      }
    } finally {
      resume();
    }
  });
});
