/**
 * expire, garbage collection and verify on a real PostgreSQL 15, with the repository in a directory
 * and in an S3 bucket: what retention keeps restores exactly (a backup taken while expire ran
 * included), faults and kills during gc leave a valid repository, verify names the damage it
 * finds, and a restore that meets damage stops without leaving a startable directory.
 */
import { spawn } from 'node:child_process';
import { chmod, open, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, makeServerUserDir, run, serverOsUser } from '../support/os-user.js';
import { startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';
import { startS3Server, type S3Server } from '../support/s3server.js';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { S3Storage } from '../../src/storage/s3.js';
import { keys, readGcMarks, readPackFooter, packIdOf } from '../../src/repo/index.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

interface BackupJson {
  id: string;
  walStart?: string;
}
interface ExpireJson {
  backups: { keep: { id: string }[]; expire: string[] };
  wal: { segmentsRemoved: number };
  mark?: { packsCondemned: number; packsRepacked: number };
  sweep?: { marksSwept: number; bytesFreed: number; deferred?: string };
}
interface VerifyJson {
  ok: boolean;
  problems: { kind: string; object: string; message: string; backups: string[] }[];
}

describe.each(['posix', 's3'] as const)('expire, gc and verify on a %s repository', (backend) => {
  let s3: S3Server | undefined;
  let source: Cluster;
  let repo: string;
  let storage: Storage;
  let env: Record<string, string>;
  const clusters: Cluster[] = [];
  const dirs: string[] = [];
  /** Digest of the data at each backup, by backup id. */
  const expected = new Map<string, string>();

  const spawnPgforever = (args: string[]) => {
    const user = process.getuid?.() === 0 ? serverOsUser() : undefined;
    return { args: [bin, ...args, '--repo', repo, '--log-level', 'warn'], user };
  };
  const pgforever = async (args: string[]) => (await run(process.execPath, spawnPgforever(args).args, { asServerUser: true, env: { ...process.env, ...env } })).stdout;
  const failing = async (args: string[]) => {
    const failure = await pgforever(args).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(CommandError);
    return failure as CommandError;
  };
  const backup = async (extra: string[] = []) => {
    const b = JSON.parse(await pgforever(['backup', '--json', ...extra])) as BackupJson;
    expected.set(b.id, await digest(source));
    return b;
  };
  const digest = async (cluster: Cluster) =>
    (await cluster.query<{ d: string }>(`SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) AS d FROM pgbench_accounts`))[0]!.d;
  const restoreAndCheck = async (id: string | undefined) => {
    const target = await makeServerUserDir('pgf-retention-restored-');
    dirs.push(target);
    await pgforever(['restore', '--pgdata', join(target, 'data'), ...(id !== undefined ? ['--set', id, '--target', 'immediate'] : [])]);
    const cluster = await startClusterFromDirectory(join(target, 'data'), { env });
    clusters.push(cluster);
    await waitFor(async () => (await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery' });
    const got = await digest(cluster);
    await cluster.destroy();
    return got;
  };
  const walSegments = async () => {
    const names: string[] = [];
    for await (const o of storage.list(keys.wal)) {
      const m = /^wal\/00000001\/([0-9A-F]{24})\.zst$/.exec(o.key);
      if (m) names.push(m[1]!);
    }
    return names.sort();
  };
  const packs = async () => {
    const found: { key: string; size: number }[] = [];
    for await (const o of storage.list(keys.packs)) found.push({ key: o.key, size: o.size });
    return found.sort((a, b) => a.size - b.size);
  };
  /** Flips one bit of a stored object in place (on a directory, keeping its owner and mode). */
  const flipByte = async (key: string, at: number) => {
    if (backend === 'posix') {
      const file = await open(join(repo, key), 'r+');
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0x10;
      await file.write(byte, 0, 1, at);
      await file.close();
    } else {
      const bytes = await storage.read(key);
      bytes[at] = bytes[at]! ^ 0x10;
      await storage.write(key, bytes);
    }
  };
  const updateSome = (salt: number) => source.query(`UPDATE pgbench_accounts SET abalance = abalance + ${salt} WHERE aid % 41 = ${salt % 41}`);

  beforeAll(async () => {
    if (backend === 's3') {
      s3 = await startS3Server();
      const prefix = `retention-${randomBytes(4).toString('hex')}`;
      repo = `s3://${s3.bucket}/${prefix}`;
      env = { PGFOREVER_S3_ENDPOINT: s3.endpoint, PGFOREVER_S3_ACCESS_KEY_ID: s3.accessKeyId, PGFOREVER_S3_SECRET_ACCESS_KEY: s3.secretAccessKey, PGFOREVER_S3_REGION: s3.region };
      storage = new S3Storage({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    } else {
      repo = await makeServerUserDir('pgf-retention-repo-');
      dirs.push(repo);
      env = {};
      storage = await openStorage(repo);
    }
    const { stdout } = await run(process.execPath, [bin, 'archive-command', '--json', '--repo', repo]);
    const archiveCommand = (JSON.parse(stdout) as { archive_command: string }).archive_command;
    source = await startCluster({ version: 15, env, settings: { archive_mode: 'on', archive_command: archiveCommand } });
    env = { ...env, ...source.env, PGFOREVER_PGDATA: source.pgdata };
    await pgforever(['init']);
    await run(source.tools.pgbench, ['-i', '-s', '2', '-q'], { env: { ...process.env, ...source.env } });
  });

  afterAll(async () => {
    for (const c of clusters) await c.destroy();
    await source?.destroy();
    await storage?.close();
    await s3?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('expires by rule, collects garbage while a backup runs, and every kept backup restores exactly', async () => {
    const b1 = await backup();
    // A rewritten table: the old file's extents are referenced by b1 alone.
    await source.query('VACUUM FULL pgbench_accounts');
    const b2 = await backup(['--permanent']);
    await updateSome(1);
    const b3 = await backup();
    await updateSome(2);
    const b4 = await backup();

    const dry = JSON.parse(await pgforever(['expire', '--retain-full', '1', '--dry-run', '--json'])) as ExpireJson;
    expect(dry.backups.expire).toEqual([b1.id, b3.id]);
    expect(dry.backups.keep.map((k) => k.id)).toEqual([b2.id, b4.id]);
    expect(dry.mark).toBeUndefined();
    expect((JSON.parse(await pgforever(['info', '--json'])) as { backups: unknown[] }).backups).toHaveLength(4);

    // A backup starts; expire and gc run while it holds its lease.
    await updateSome(3);
    const { args, user } = spawnPgforever(['backup', '--json']);
    const u = await user;
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'], ...(u ? { uid: u.uid, gid: u.gid } : {}) });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    const atB5 = await digest(source);
    await waitFor(async () => {
      for await (const lease of storage.list(keys.leases)) if (lease.key.includes('backup')) return true;
      return undefined;
    }, { deadlineMs: 60_000, what: 'the backup lease' });
    const first = JSON.parse(await pgforever(['expire', '--retain-full', '1', '--gc-grace-minutes', '0', '--json'])) as ExpireJson;
    expect(first.backups.expire).toEqual([b1.id, b3.id]);
    expect(first.wal.segmentsRemoved).toBeGreaterThan(0);
    expect(await exited).toBe(0);
    const b5 = JSON.parse(out) as BackupJson;
    expected.set(b5.id, atB5);

    const second = JSON.parse(await pgforever(['expire', '--retain-full', '2', '--gc-grace-minutes', '0', '--json'])) as ExpireJson;
    expect(second.backups.expire).toEqual([]);
    expect((first.sweep?.bytesFreed ?? 0) + (second.sweep?.bytesFreed ?? 0)).toBeGreaterThan(0);
    expect(await readGcMarks(storage)).toEqual([]);
    expect((await walSegments())[0]! >= b2.walStart!).toBe(true);

    await pgforever(['verify']);
    for (const b of [b2, b4, b5]) expect(await restoreAndCheck(b.id)).toBe(expected.get(b.id));
    await updateSome(4);
    const latest = await digest(source);
    await source.waitForArchived(await source.switchWal());
    expect(await restoreAndCheck(undefined)).toBe(latest);
  });

  it('leaves a valid repository when gc fails or is killed, and the next run finishes the job', async () => {
    await source.query('VACUUM FULL pgbench_accounts');
    await updateSome(5);
    const kept = await backup();
    await pgforever(['expire', '--retain-full', '1', '--gc-grace-minutes', '60']);
    const [mark] = await readGcMarks(storage);
    expect(mark?.packs.length).toBeGreaterThan(0);

    if (backend === 'posix') {
      // The repository's pack folders turn read-only: every delete of the sweep fails.
      const folders = (await readdir(join(repo, 'packs'))).map((d) => join(repo, 'packs', d));
      for (const f of folders) await chmod(f, 0o555);
      const failure = await failing(['expire', '--retain-full', '1', '--gc-grace-minutes', '0']);
      expect(failure.stderr).toMatch(/STORAGE_/);
      for (const f of folders) await chmod(f, 0o700);
    } else {
      // The sweep is killed as soon as it has deleted its first pack.
      const { args, user } = spawnPgforever(['expire', '--retain-full', '1', '--gc-grace-minutes', '0']);
      const u = await user;
      const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: 'ignore', ...(u ? { uid: u.uid, gid: u.gid } : {}) });
      const exited = new Promise((r) => child.once('exit', r));
      await waitFor(
        async () => {
          if (child.exitCode !== null) return true;
          const stats = await Promise.all(mark!.packs.map((p) => storage.stat(keys.pack(p))));
          return stats.some((stat) => stat === undefined) || undefined;
        },
        { deadlineMs: 60_000, intervalMs: 5, what: 'the sweep to delete a pack' },
      );
      child.kill('SIGKILL');
      await exited;
    }
    await pgforever(['verify']);
    expect(await restoreAndCheck(kept.id)).toBe(expected.get(kept.id));

    const finish = JSON.parse(await pgforever(['expire', '--retain-full', '1', '--gc-grace-minutes', '0', '--json'])) as ExpireJson;
    expect(finish.sweep?.deferred).toBeUndefined();
    expect(await readGcMarks(storage)).toEqual([]);
    for (const p of mark!.packs) expect(await storage.stat(keys.pack(p))).toBeUndefined();
    await pgforever(['verify', '--full']);
  });

  it('verify names a missing WAL segment, a missing pack and a flipped byte in an extent, and a restore stops at that byte', async () => {
    const older = new Set((await packs()).map((p) => p.key));
    await updateSome(9);
    const newest = await backup();
    for (let i = 0; i < 3; i++) {
      await updateSome(10 + i);
      await source.waitForArchived(await source.switchWal());
    }
    const segments = await walSegments();
    const lost = segments[segments.length - 2]!;
    await storage.delete(keys.walSegment(lost.slice(0, 8), lost));

    const all = await packs();
    const smallest = all.find((p) => older.has(p.key))!;
    const own = all.find((p) => !older.has(p.key))!;
    // A frame of the newest backup's own pack: every extent there is one that backup stored.
    const [entry] = await readPackFooter(storage, packIdOf(own.key), own.size);
    await flipByte(own.key, entry!.offset + Math.floor(entry!.length / 2));

    // Restoring that backup stops at the damaged extent, and PostgreSQL cannot start what it left:
    // pg_control is the restore's last file.
    const target = await makeServerUserDir('pgf-retention-damaged-');
    dirs.push(target);
    const refused = await failing(['restore', '--pgdata', join(target, 'data'), '--set', newest.id, '--target', 'immediate']);
    expect(refused.stderr).toMatch(new RegExp(`REPO_CORRUPT: pack ${own.key} is damaged .*: run pgforever verify`));
    expect(await readdir(join(target, 'data', 'global')).catch(() => [])).not.toContain('pg_control');

    await storage.delete(smallest.key);

    const quick = await failing(['verify', '--json']);
    expect(quick.stderr).toContain('VERIFY_FAILED');
    const found = (JSON.parse(quick.stdout) as VerifyJson).problems;
    const wal = found.find((p) => p.kind === 'wal' && p.object.startsWith(lost));
    expect(wal?.backups).toContain(newest.id);
    expect(wal?.message).toMatch(/recovery from backup/);
    expect(found.find((p) => p.kind === 'pack' && p.object === smallest.key)?.backups.length).toBeGreaterThan(0);
    expect(found.some((p) => p.object.startsWith(own.key))).toBe(false);

    const full = (JSON.parse((await failing(['verify', '--full', '--json'])).stdout) as VerifyJson).problems;
    const flipped = full.find((p) => p.kind === 'extent' && p.object === `${own.key}@${entry!.offset}`);
    expect(flipped?.message).toContain(entry!.id.toString('hex'));
    expect(flipped?.backups.length).toBeGreaterThan(0);
  });
});
