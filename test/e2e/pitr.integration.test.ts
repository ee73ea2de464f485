/**
 * Point-in-time recovery, proven exact: a workload commits numbered rows while backups and WAL
 * archiving run; restores to times, LSNs, transaction ids and named restore points each hold exactly
 * the rows committed up to the target; a restore promoted onto a new timeline keeps archiving, and a
 * later restore of that timeline holds its history and not the abandoned one. Recovery pauses or
 * shuts down at the target when asked, and a standby restore keeps replaying what is archived.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeServerUserDir, run } from '../support/os-user.js';
import { DEBIAN_PG15_BIN, startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';

const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

interface Commit {
  phase: string;
  id: number;
  at: string;
  xid: string;
  lsn: string;
}

describe('point-in-time recovery', () => {
  let source: Cluster;
  let repo: string;
  let archiveCommand: string;
  const clusters: Cluster[] = [];
  const dirs: string[] = [];
  const commits: Commit[] = [];
  /** The restore promoted onto timeline 2, still archiving into the repository after the first test. */
  let forked: Cluster;

  const pgforever = async (cluster: Cluster, args: string[]) =>
    (await run(process.execPath, [bin, ...args, '--repo', repo, '--log-level', 'warn'], { asServerUser: true, env: { ...process.env, ...cluster.env, PGFOREVER_PGDATA: cluster.pgdata } })).stdout;

  /** n rows, one transaction each, remembering when, in which transaction and where each committed. */
  const commitRows = async (cluster: Cluster, n: number, phase: string) => {
    const client = await cluster.connect();
    try {
      for (let i = 0; i < n; i++) {
        const { rows } = await client.query<{ id: number; xid: string }>(`INSERT INTO ledger (phase) VALUES ($1) RETURNING id, txid_current()::text AS xid`, [phase]);
        const after = await client.query<{ at: string; lsn: string }>(`SELECT clock_timestamp()::text AS at, pg_current_wal_insert_lsn()::text AS lsn`);
        commits.push({ phase, id: rows[0]!.id, xid: rows[0]!.xid, at: after.rows[0]!.at, lsn: after.rows[0]!.lsn });
      }
    } finally {
      await client.end();
    }
  };

  const ids = async (cluster: Cluster, phase?: string) =>
    (await cluster.query<{ id: number }>(`SELECT id FROM ledger ${phase ? 'WHERE phase = $1' : ''} ORDER BY id`, phase ? [phase] : [])).map((r) => r.id);

  const restore = async (from: Cluster, args: string[], settings: Record<string, string> = {}) => {
    const target = await makeServerUserDir('pgf-pitr-');
    dirs.push(target);
    await pgforever(from, ['restore', '--pgdata', join(target, 'data'), ...args]);
    const cluster = await startClusterFromDirectory(join(target, 'data'), { settings });
    clusters.push(cluster);
    await waitFor(async () => (await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery to end' });
    return cluster;
  };

  /** pg_dump of the database, and the ledger sequence's position apart from it. */
  const dump = async (cluster: Cluster) => {
    const { stdout } = await run(cluster.tools.psql.replace(/psql$/, 'pg_dump'), ['--no-sync', '--restrict-key=pgforever', '-d', 'postgres'], { env: { ...process.env, ...cluster.env } });
    const setval = /^SELECT pg_catalog\.setval\('public\.ledger_id_seq', (\d+), true\);$/m;
    return { text: stdout.replace(setval, '(sequence position)'), sequence: Number(setval.exec(stdout)?.[1]) };
  };

  const archiveEverything = async (cluster: Cluster) => cluster.waitForArchived(await cluster.switchWal(), { deadlineMs: 60_000 });

  const byId = (id: number) => commits.find((c) => c.phase === 'one' && c.id === id)!;

  /** Ids of the first timeline's rows committed up to row `last`. */
  const upTo = (last: number) => commits.filter((c) => c.phase === 'one' && c.id <= last).map((c) => c.id);

  beforeAll(async () => {
    repo = await makeServerUserDir('pgf-pitr-repo-');
    dirs.push(repo);
    const { stdout } = await run(process.execPath, [bin, 'archive-command', '--json', '--repo', repo]);
    archiveCommand = (JSON.parse(stdout) as { archive_command: string }).archive_command;
    source = await startCluster({ version: 15, settings: { archive_mode: 'on', archive_command: archiveCommand } });
    await pgforever(source, ['init']);
    await source.query(`CREATE TABLE ledger (id serial PRIMARY KEY, phase text NOT NULL)`);
  });

  afterAll(async () => {
    for (const cluster of clusters) await cluster.destroy();
    await source?.destroy();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('restores exactly to times, LSNs, xids and named restore points across backups and timelines', async () => {
    await commitRows(source, 20, 'one');
    await pgforever(source, ['backup', '--json']);
    await commitRows(source, 20, 'one');
    await source.query(`SELECT pg_create_restore_point('before-reports')`);
    const dumpAtPoint = await dump(source);
    await commitRows(source, 20, 'one');
    const backupB = JSON.parse(await pgforever(source, ['backup', '--json'])) as { id: string };
    await commitRows(source, 20, 'one');
    await archiveEverything(source);

    const isoZ = (at: string) => {
      expect(at).toMatch(/^\S+ \S+\+00$/);
      return `${at.replace(' ', 'T').slice(0, -3)}Z`;
    };
    const nowhere = await makeServerUserDir('pgf-pitr-refused-');
    dirs.push(nowhere);
    await expect(pgforever(source, ['restore', '--pgdata', join(nowhere, 'data'), '--target-time', '2999-01-01 00:00:00+00'])).rejects.toThrow(/RESTORE_TARGET: target time .* is beyond the archived WAL: the last archived transaction ended at /);
    await expect(pgforever(source, ['restore', '--pgdata', join(nowhere, 'data'), '--target-time', byId(5).at])).rejects.toThrow(/RESTORE_TARGET: target time .* is before the oldest backup finished/);
    await expect(pgforever(source, ['restore', '--pgdata', join(nowhere, 'data'), '--target-time', '2026-11-25 03:00:00'])).rejects.toThrow(/USAGE: --target-time .* has no UTC offset/);
    await writeFile(join(nowhere, 'stray'), 'x');
    await expect(pgforever(source, ['restore', '--pgdata', nowhere])).rejects.toThrow(/RESTORE_TARGET_DIR: .* is not empty: restore into an empty directory, or pass --delta/);
    await expect(pgforever(source, ['restore', '--pgdata', '/etc'])).rejects.toThrow(/RESTORE_TARGET_DIR: \/etc belongs to uid 0, not to this user/);
    await expect(pgforever(source, ['restore', '--delta', '--pgdata', source.pgdata])).rejects.toThrow(/RESTORE_TARGET_DIR: a PostgreSQL server \(pid \d+\) is using/);
    const targets: { args: string[]; last: number }[] = [
      { args: ['--target-time', byId(30).at], last: 30 },
      // ISO 8601 with Z: PostgreSQL refuses zone abbreviations in recovery_target_time as it starts.
      { args: ['--target-time', isoZ(byId(70).at)], last: 70 },
      { args: ['--target-lsn', byId(45).lsn], last: 45 },
      { args: ['--target-lsn', byId(61).lsn], last: 61 },
      { args: ['--target-xid', byId(65).xid], last: 65 },
      // Both before the newest backup: the archived WAL's summaries say which backup reaches them.
      { args: ['--target-xid', byId(33).xid], last: 33 },
    ];
    for (const { args, last } of targets) {
      const cluster = await restore(source, args);
      expect(await ids(cluster), args.join(' ')).toEqual(upTo(last));
      await cluster.destroy();
    }

    await expect(pgforever(source, ['restore', '--pgdata', join(nowhere, 'data'), '--target-name', 'no-such-point'])).rejects.toThrow(/RESTORE_TARGET: restore point "no-such-point" is not in the archived WAL/);
    await expect(pgforever(source, ['restore', '--pgdata', join(nowhere, 'data'), '--target-xid', byId(33).xid, '--set', backupB.id])).rejects.toThrow(/RESTORE_TARGET: the target \(at [0-9A-F]+\/[0-9A-F]+\) is before backup .* was consistent/);
    const atPoint = await restore(source, ['--target-name', 'before-reports']);
    expect(await ids(atPoint)).toEqual(upTo(40));
    const restoredDump = await dump(atPoint);
    expect(restoredDump.text).toEqual(dumpAtPoint.text);
    // Sequences are WAL-logged up to 32 values ahead, so after any recovery nextval continues past
    // the values handed out: PostgreSQL's own behaviour, never a reuse.
    expect(restoredDump.sequence).toBeGreaterThanOrEqual(dumpAtPoint.sequence);
    await atPoint.destroy();

    // Promote at row 50 onto timeline 2, keep writing and archiving into the same repository.
    forked = await restore(source, ['--target-time', byId(50).at], { archive_mode: 'on', archive_command: archiveCommand });
    await commitRows(forked, 10, 'two');
    const onTwo = JSON.parse(await pgforever(forked, ['backup', '--json'])) as { id: string; timeline: number; detection: string };
    expect(onTwo.timeline).toBe(2);
    expect(onTwo.detection).toBe('lsn');
    await commitRows(forked, 5, 'two');
    await archiveEverything(forked);
    const phaseTwo = commits.filter((c) => c.phase === 'two').map((c) => c.id);

    const latest = await restore(forked, ['--target-timeline', 'latest']);
    expect(await ids(latest, 'one')).toEqual(upTo(50));
    expect(await ids(latest, 'two')).toEqual(phaseTwo);
    const [{ tli }] = (await latest.query<{ tli: number }>('SELECT timeline_id AS tli FROM pg_control_checkpoint()')) as [{ tli: number }];
    expect(tli).toBeGreaterThanOrEqual(3);
  });

  it('pauses or shuts down at the target as --target-action says, and a --type standby restore keeps following the archive', async () => {
    // Rows up to 50 are history shared by both timelines: recovery to them follows the newest one.
    const pausedDir = await makeServerUserDir('pgf-pitr-pause-');
    dirs.push(pausedDir);
    await pgforever(source, ['restore', '--pgdata', join(pausedDir, 'data'), '--target-xid', byId(35).xid, '--target-action', 'pause']);
    const paused = await startClusterFromDirectory(join(pausedDir, 'data'));
    clusters.push(paused);
    const pauseState = async () => (await paused.query<{ s: string }>('SELECT pg_get_wal_replay_pause_state() AS s'))[0]?.s;
    await waitFor(async () => (await pauseState()) === 'paused', { deadlineMs: 60_000, what: 'recovery to pause at the target' });
    expect(await ids(paused)).toEqual(upTo(35));
    await paused.destroy();

    // A server that shuts down at the target never stays up: it runs in the foreground until it exits.
    const stopDir = await makeServerUserDir('pgf-pitr-shutdown-');
    dirs.push(stopDir);
    const stopData = join(stopDir, 'data');
    await pgforever(source, ['restore', '--pgdata', stopData, '--target-xid', byId(38).xid, '--target-action', 'shutdown']);
    let exit: { stderr: string } | { error: unknown } | undefined;
    void run(join(DEBIAN_PG15_BIN, 'postgres'), ['-D', stopData, '-c', 'listen_addresses=', '-c', `unix_socket_directories=${stopDir}`, '-c', 'archive_mode=off'], { asServerUser: true, cwd: stopData }).then(
      ({ stderr }) => (exit = { stderr }),
      (error: unknown) => (exit = { error }),
    );
    try {
      await waitFor(() => exit !== undefined, { deadlineMs: 60_000, what: 'the server to shut down at the target' });
    } finally {
      if (exit === undefined) await run(join(DEBIAN_PG15_BIN, 'pg_ctl'), ['-D', stopData, '-m', 'immediate', 'stop'], { asServerUser: true }).catch(() => undefined);
    }
    if (exit === undefined || 'error' in exit) throw new Error('the server did not exit cleanly at the target', { cause: exit?.error });
    const { stderr } = exit;
    expect(stderr).toMatch(new RegExp(`recovery stopping after commit of transaction ${byId(38).xid},`));
    expect(stderr).toMatch(/shutdown at recovery target/);
    const { stdout: control } = await run(join(DEBIAN_PG15_BIN, 'pg_controldata'), [stopData], { asServerUser: true });
    expect(control).toMatch(/Database cluster state:\s+shut down in recovery/);

    // A standby of the newest timeline: in recovery for good, replaying what the primary archives.
    const standbyDir = await makeServerUserDir('pgf-pitr-standby-');
    dirs.push(standbyDir);
    await pgforever(forked, ['restore', '--pgdata', join(standbyDir, 'data'), '--type', 'standby']);
    const standby = await startClusterFromDirectory(join(standbyDir, 'data'));
    clusters.push(standby);
    await commitRows(forked, 5, 'three');
    await archiveEverything(forked);
    const expected = await ids(forked);
    await waitFor(async () => JSON.stringify(await ids(standby)) === JSON.stringify(expected), { deadlineMs: 60_000, what: 'the standby to replay the archived rows' });
    expect((await standby.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r).toBe(true);
    await standby.destroy();
  });
});
