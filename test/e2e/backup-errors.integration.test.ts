/**
 * What a DBA meets when something is off: each failure is one line with a stable code and what to
 * do, exit status 1, and nothing written that a restore would pick.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, grantToServerUser, makeServerUserDir, run } from '../support/os-user.js';
import { freePort, startCluster, type Cluster } from '../support/postgres.js';
import { openStorage } from '../../src/storage/index.js';
import { acquireLease } from '../../src/repo/index.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

describe('backup refuses clearly', () => {
  let plain: Cluster;
  let other: Cluster;
  const dirs: string[] = [];

  const pgforever = async (cluster: Cluster, args: string[], env: Record<string, string> = {}) => {
    try {
      await run(process.execPath, [bin, ...args], { asServerUser: true, env: { ...process.env, ...cluster.env, ...env } });
      return { code: 0, stderr: '' };
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      return { code: err.exitCode, stderr: err.stderr };
    }
  };

  const repoDir = async () => {
    const dir = await makeServerUserDir('pgf-errors-');
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    [plain, other] = await Promise.all([startCluster({ version: 15 }), startCluster({ version: 15, settings: { archive_mode: 'on', archive_command: '/bin/true' } })]);
  });
  afterAll(async () => {
    await Promise.all([plain?.destroy(), other?.destroy()]);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('names an unreachable server', async () => {
    const repo = await repoDir();
    const result = await pgforever(plain, ['backup', '--repo', repo], { PGPORT: String(await freePort()) });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/PG_UNREACHABLE: cannot connect to PostgreSQL at 127\.0\.0\.1:\d+/);
  });

  it('asks for init on an empty repository', async () => {
    const repo = await repoDir();
    const result = await pgforever(other, ['backup', '--repo', repo]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('REPO_NOT_INITIALIZED');
    expect(result.stderr).toContain('pgforever init');
  });

  it('refuses a server without archiving', async () => {
    const repo = await repoDir();
    expect((await pgforever(plain, ['init', '--repo', repo])).code).toBe(0);
    const result = await pgforever(plain, ['backup', '--repo', repo]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('PG_SETTING: archive_mode is off');
  });

  it("refuses another cluster's repository and a data directory of another cluster", async () => {
    const repo = await repoDir();
    expect((await pgforever(plain, ['init', '--repo', repo])).code).toBe(0);
    const wrongRepo = await pgforever(other, ['backup', '--repo', repo]);
    expect(wrongRepo.code).toBe(1);
    expect(wrongRepo.stderr).toContain('REPO_CLUSTER_MISMATCH');

    const ownRepo = await repoDir();
    expect((await pgforever(other, ['init', '--repo', ownRepo])).code).toBe(0);
    const wrongData = await pgforever(other, ['backup', '--repo', ownRepo, '--pgdata', plain.pgdata]);
    expect(wrongData.code).toBe(1);
    expect(wrongData.stderr).toContain('PGDATA_MISMATCH');
  });

  it('names the backup already running', async () => {
    const repo = await repoDir();
    expect((await pgforever(other, ['init', '--repo', repo])).code).toBe(0);
    const lease = await acquireLease(await openStorage(repo), 'backup', { command: 'backup' });
    // The lease was written by this (root) process; the backup runs as the server user.
    await grantToServerUser(repo);
    try {
      const result = await pgforever(other, ['backup', '--repo', repo]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('REPO_LOCKED: another backup is running');
      expect(result.stderr).toContain(`pid ${process.pid}`);
    } finally {
      await lease.release();
    }
  });

  it('treats bad flags as usage errors', async () => {
    const result = await pgforever(other, ['backup', '--no-such-flag']);
    expect(result.code).toBe(2);
  });
});
