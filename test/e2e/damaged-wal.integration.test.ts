/**
 * A damaged archive during a restore: PostgreSQL takes a restore_command status up to 125 for "not
 * in the archive" and would end recovery there, promoting early with later transactions left out.
 * archive-get fails with 200 instead while the data directory is in archive recovery, so recovery
 * stops with an error; once the object is sound again, starting the same directory recovers it all.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantToServerUser, makeServerUserDir, run } from '../support/os-user.js';
import { DEBIAN_PG15_BIN, startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';
import { pgforever as pgforeverCommand, runConfigured } from '../wal-archive/support.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

describe('a damaged archived segment during a restore (PostgreSQL 15)', () => {
  let source: Cluster;
  let repo: string;
  let commands: { archive_command: string; restore_command: string };
  const clusters: Cluster[] = [];
  const dirs: string[] = [];

  const pgforever = async (args: string[]) =>
    (await run(process.execPath, [bin, ...args, '--repo', repo, '--log-level', 'warn'], { asServerUser: true, env: { ...process.env, ...source.env, PGFOREVER_PGDATA: source.pgdata } })).stdout;

  const rows = async (cluster: Cluster) => Number((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM ledger'))[0]!.n);

  beforeAll(async () => {
    repo = await makeServerUserDir('pgf-damaged-repo-');
    dirs.push(repo);
    const { stdout } = await run(process.execPath, [bin, 'archive-command', '--json', '--repo', repo]);
    commands = JSON.parse(stdout) as { archive_command: string; restore_command: string };
    source = await startCluster({ version: 15, walSegSizeMb: 1, settings: { archive_mode: 'on', archive_command: commands.archive_command } });
    await pgforever(['init']);
    await source.query('CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL)');
  });

  afterAll(async () => {
    for (const cluster of clusters) await cluster.destroy();
    await source?.destroy();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('stops recovery at a damaged segment instead of ending it early, and recovers everything once the segment is sound', async () => {
    await source.query(`INSERT INTO ledger (note) SELECT 'before the backup' FROM generate_series(1, 100)`);
    await pgforever(['backup']);
    const segments: string[] = [];
    for (let i = 0; i < 3; i++) {
      await source.query(`INSERT INTO ledger (note) SELECT 'after the backup' FROM generate_series(1, 1000)`);
      segments.push(await source.switchWal());
    }
    await source.waitForArchived(segments.at(-1)!, { deadlineMs: 60_000 });
    const total = await rows(source);

    const object = join(repo, 'wal', '00000001', `${segments[1]}.zst`);
    const sound = await readFile(object);
    const damaged = Buffer.from(sound);
    damaged[damaged.length >> 1]! ^= 0xff;
    await writeFile(object, damaged);

    // archive-get itself, outside recovery, as a standby and in archive recovery.
    const probe = await makeServerUserDir('pgf-damaged-probe-');
    dirs.push(probe);
    await mkdir(join(probe, 'pg_wal'), { recursive: true });
    await grantToServerUser(probe);
    const fetch = () =>
      Promise.all([
        runConfigured(commands.restore_command, { f: segments[1]!, p: 'pg_wal/RECOVERYXLOG' }, probe),
        pgforeverCommand(['archive-get', segments[1]!, 'pg_wal/RECOVERYXLOG', '--repo', repo], {}, probe),
      ]);
    const expectFailures = (results: { code: number; stderr: string }[], code: number) => {
      for (const result of results) {
        expect(result.code).toBe(code);
        expect(result.stderr.trim().split('\n')).toHaveLength(1);
        expect(result.stderr).toContain(`REPO_CORRUPT: archived WAL object wal/00000001/${segments[1]}.zst is damaged`);
      }
    };
    expectFailures(await fetch(), 1);
    await writeFile(join(probe, 'recovery.signal'), '');
    await grantToServerUser(probe);
    expectFailures(await fetch(), 200);
    await writeFile(join(probe, 'standby.signal'), '');
    await grantToServerUser(probe);
    expectFailures(await fetch(), 1);

    // A restore to the end of the archive: recovery must stop at the damaged segment, not promote.
    const target = await makeServerUserDir('pgf-damaged-restore-');
    dirs.push(target);
    const pgdata = join(target, 'data');
    await pgforever(['restore', '--pgdata', pgdata]);
    // pg_ctl -w returns once archive recovery has started; recovery can fail before or after that.
    const started: Cluster | Error = await startClusterFromDirectory(pgdata).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    let log: string;
    if (started instanceof Error) {
      log = started.message;
    } else {
      const cluster = started;
      dirs.push(dirname(cluster.logFile));
      log = await waitFor(
        async () => {
          const text = await readFile(cluster.logFile, 'utf8');
          return text.includes('database system is shut down') && text;
        },
        { deadlineMs: 60_000, what: 'the server to stop' },
      );
      await cluster.stop();
    }
    expect(log).toContain(`could not restore file "${segments[1]}" from archive: child process exited with exit code 200`);
    expect(log).not.toMatch(/selected new timeline ID|archive recovery complete/);
    const { stdout: control } = await run(join(DEBIAN_PG15_BIN, 'pg_controldata'), [pgdata]);
    expect(control).toMatch(/Database cluster state:\s+in archive recovery/);

    await writeFile(object, sound);
    const recovered = await startClusterFromDirectory(pgdata);
    clusters.push(recovered);
    await waitFor(async () => (await recovered.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery to end' });
    expect(await rows(recovered)).toBe(total);
  });
});
