/**
 * WAL archiving on a real PostgreSQL 15 (1 MiB segments) whose archive_command is exactly what
 * `pgforever archive-command` prints: the pgforever-archive client and its daemon. Every archived
 * segment must equal the original; re-pushes, conflicts, bad input and archive-get behave as the
 * CLI contract says.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PosixStorage } from '../../src/storage/posix.js';
import { keys, Repository } from '../../src/repo/index.js';
import { parseWalFileName } from '../../src/wal/names.js';
import { defaultSpool, Spool } from '../../src/wal/spool.js';
import { WalPusher } from '../../src/wal/push.js';
import { createLogger } from '../../src/log/index.js';
import { decodeWalObject, loadWalFile, loadWalSummary, walObjectKey } from '../../src/wal/repository.js';
import { previousSegmentName, summarizeSegmentFile, type StoredWalSummary } from '../../src/wal/summary.js';
import { lastArchivedTransaction, locateTarget } from '../../src/wal/positions.js';
import { formatLsn } from '../../src/pg/lsn.js';
import { CommandError, grantToServerUser, makeServerUserDir, run } from '../support/os-user.js';
import { DEBIAN_PG15_BIN, startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';
import { archiveCommandsFor, bin, pgforever, runConfigured } from './support.js';

const SEGMENT = 1 << 20;

describe('archiving through what archive-command prints (PostgreSQL 15)', () => {
  let cluster: Cluster;
  let repoDir: string;
  let repo: Repository;
  let commands: { archive_command: string; restore_command: string };
  let scratch: string;
  const archived: string[] = [];

  const segmentsInRepo = async () => {
    const names: string[] = [];
    for await (const object of repo.storage.list('wal/00000001/')) names.push(object.key.slice('wal/00000001/'.length, -'.zst'.length));
    return names.filter((name) => parseWalFileName(name)?.kind === 'segment').sort();
  };

  beforeAll(async () => {
    repoDir = await makeServerUserDir('pgf-wal-repo-');
    scratch = await mkdtemp(join(tmpdir(), 'pgf-wal-scratch-'));
    await grantToServerUser(scratch);
    commands = await archiveCommandsFor(repoDir);
    cluster = await startCluster({
      version: 15,
      walSegSizeMb: 1,
      settings: { wal_level: 'replica', archive_mode: 'on', archive_command: commands.archive_command, wal_keep_size: '512MB', max_wal_size: '1GB' },
    });
    const init = await pgforever(['init', '--repo', repoDir, '--log-level', 'warn'], cluster.env);
    expect(init.stderr).toBe('');
    repo = await Repository.open(new PosixStorage(repoDir));
  });

  const others: Cluster[] = [];

  afterAll(async () => {
    for (const other of others) await other.destroy();
    await cluster?.destroy();
    for (const dir of [repoDir, scratch]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * The summary archive-push recorded for a segment: in its description, or beside it once the
   * daemon has summarised what it pushed during a backlog.
   */
  const recordedSummary = (name: string) =>
    waitFor(
      async () => {
        const file = parseWalFileName(name)!;
        const { description } = await decodeWalObject(name, await repo.storage.read(walObjectKey(file)));
        return description.summary ?? (await loadWalSummary(repo, file));
      },
      { deadlineMs: 60_000, what: `the summary of ${name}` },
    );

  /** The stored file once the repository has it. */
  const archivedCopy = (name: string) =>
    waitFor(() => loadWalFile(repo, parseWalFileName(name)!), { deadlineMs: 60_000, what: `${name} in the repository` });

  it('prints the pgforever-archive fast path with a per-repository spool', () => {
    expect(commands.archive_command).toMatch(/\/pgforever-archive push --spool pg_wal\/pgforever\/[0-9a-f]{12} .*--repo .* "%p"$/);
    expect(commands.restore_command).toMatch(/\/pgforever-archive get --spool pg_wal\/pgforever\/[0-9a-f]{12} .* %f "%p"$/);
  });

  it('archives every segment of a workload, each equal to the original, switch tails stored as nothing', async () => {
    const beforeWorkload = await cluster.switchWal();
    await cluster.waitForArchived(beforeWorkload, { deadlineMs: 60_000 });
    await cluster.query('CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 150000) g');
    for (let i = 0; i < 3; i++) {
      await cluster.query(`INSERT INTO filler SELECT g, 'switch ${i}' FROM generate_series(1, 100) g`);
      await cluster.switchWal();
    }
    await cluster.query('UPDATE filler SET h = upper(h) WHERE g % 3 = 0');
    const last = await cluster.switchWal();
    await cluster.waitForArchived(last, { deadlineMs: 120_000 });

    const names = await segmentsInRepo();
    expect(names.length).toBeGreaterThanOrEqual(20);
    let trimmed = 0;
    const summaries: StoredWalSummary[] = [];
    for (const name of names) {
      const original = await readFile(join(cluster.pgdata, 'pg_wal', name));
      const stored = await loadWalFile(repo, parseWalFileName(name)!);
      expect(stored?.equals(original), name).toBe(true);
      const object = await repo.storage.read(walObjectKey(parseWalFileName(name)!));
      const { description } = await decodeWalObject(name, object);
      const summary = await recordedSummary(name);
      if (description.zeroFrom !== undefined && description.zeroFrom < SEGMENT / 2) {
        trimmed++;
        expect(object.length, name).toBeLessThan(SEGMENT / 8);
        expect(summary.endReason, name).toBe('switch');
      }
      expect(summary.records, name).toBeGreaterThan(0);
      // The pusher reuses its buffers for the tails it reads records from: each summary must be
      // the one read afresh from the original files.
      const before = previousSegmentName(name, SEGMENT);
      const previous = before === undefined ? undefined : await readFile(join(cluster.pgdata, 'pg_wal', before)).catch(() => undefined);
      expect(summary, name).toEqual(await summarizeSegmentFile(parseWalFileName(name)!, original, repo.config, previous));
      if (name > beforeWorkload) summaries.push(summary);
      archived.push(name);
    }
    expect(trimmed).toBeGreaterThanOrEqual(4);
    // Each record is summarised once, in the segment it ends in, with the previous segment's tail
    // kept by the pusher: no summary of the workload's segments has a gap at its start.
    expect(summaries.filter((s) => s.leadingRecordSkipped !== undefined).map((s) => [s.firstRecordLsn, s.leadingRecordSkipped])).toEqual([]);
    expect(summaries.flatMap((s) => s.transactions).filter(([, kind]) => kind === 'commit').length).toBeGreaterThanOrEqual(5);
    expect(summaries.flatMap((s) => s.blocks).length).toBeGreaterThan(0);
  });

  it('re-pushing an identical segment succeeds, through the client and the Node CLI', async () => {
    const name = archived[2]!;
    const copy = join(scratch, 'again', 'pg_wal');
    await rm(join(scratch, 'again'), { recursive: true, force: true });
    await mkdir(copy, { recursive: true });
    await copyFile(join(cluster.pgdata, 'pg_wal', name), join(copy, name));
    await grantToServerUser(join(scratch, 'again'));
    const viaClient = await runConfigured(commands.archive_command, { p: `pg_wal/${name}` }, join(scratch, 'again'));
    expect(viaClient).toMatchObject({ code: 0, stderr: '' });
    const viaNode = await pgforever(['archive-push', join(copy, name), '--repo', repoDir]);
    expect(viaNode).toMatchObject({ code: 0, stderr: '' });
  });

  it('refuses different content under an archived name and overwrites nothing', async () => {
    let target: string | undefined;
    for (const name of archived) {
      const { description } = await decodeWalObject(name, await repo.storage.read(walObjectKey(parseWalFileName(name)!)));
      if (description.zeroFrom !== undefined && description.zeroFrom < SEGMENT - 8192) target = name;
    }
    expect(target).toBeDefined();
    const name = target!;
    const key = walObjectKey(parseWalFileName(name)!);
    const before = await repo.storage.read(key);
    const { description } = await decodeWalObject(name, before);
    // A byte in the padding after the switch: the header still checks out, the content differs.
    const altered = await readFile(join(cluster.pgdata, 'pg_wal', name));
    altered[description.zeroFrom! + 4000] = 0x5a;
    const dir = join(scratch, 'conflict', 'pg_wal');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), altered);
    await grantToServerUser(join(scratch, 'conflict'));

    for (const result of [
      await runConfigured(commands.archive_command, { p: `pg_wal/${name}` }, join(scratch, 'conflict')),
      await pgforever(['archive-push', join(dir, name), '--repo', repoDir]),
    ]) {
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toContain(`WAL_CONFLICT: ${name} is already archived`);
    }
    expect((await repo.storage.read(key)).equals(before)).toBe(true);
  });

  it('rejects garbage, another cluster\'s segment and a misnamed segment with one clear line', async () => {
    const dir = join(scratch, 'bad', 'pg_wal');
    await mkdir(dir, { recursive: true });
    const real = await readFile(join(cluster.pgdata, 'pg_wal', archived[1]!));
    const garbage = Buffer.alloc(SEGMENT, 0x42);
    const foreign = Buffer.from(real);
    foreign.writeBigUInt64LE(foreign.readBigUInt64LE(24) ^ 0xffffn, 24);
    const cases: [string, Buffer, string][] = [
      ['000000010000000000000F01', garbage, 'page magic 0x4242 is not PostgreSQL'],
      ['000000010000000000000F02', foreign, 'system identifier'],
      ['000000010000000000000F03', real, 'its name says f03000'],
    ];
    for (const [name, content] of cases) await writeFile(join(dir, name), content);
    await grantToServerUser(join(scratch, 'bad'));
    for (const [name, , reason] of cases) {
      for (const result of [
        await runConfigured(commands.archive_command, { p: `pg_wal/${name}` }, join(scratch, 'bad')),
        await pgforever(['archive-push', join(dir, name), '--repo', repoDir]),
      ]) {
        expect(result.code, name).toBe(1);
        expect(result.stderr.trim().split('\n'), name).toHaveLength(1);
        expect(result.stderr, name).toContain(`WAL_INVALID: ${name} is not a valid WAL segment for this repository`);
        expect(result.stderr.toLowerCase(), name).toContain(reason.toLowerCase());
      }
      expect(await repo.storage.stat(`wal/00000001/${name}.zst`)).toBeUndefined();
    }
  });

  it('archive-get restores segments exactly (prefetching ahead); a missing one exits 1 and writes nothing', async () => {
    const restoreDir = join(scratch, 'restore');
    await mkdir(restoreDir, { recursive: true });
    await grantToServerUser(restoreDir);
    for (const name of archived.slice(0, 6)) {
      const dest = join(restoreDir, 'RECOVERYXLOG');
      const result = await runConfigured(commands.restore_command, { f: name, p: dest }, cluster.pgdata);
      expect(result, name).toMatchObject({ code: 0, stderr: '' });
      expect((await readFile(dest)).equals(await readFile(join(cluster.pgdata, 'pg_wal', name))), name).toBe(true);
      await rm(dest);
    }

    const viaNode = await pgforever(['archive-get', archived[7]!, join(restoreDir, 'node-copy'), '--repo', repoDir]);
    expect(viaNode).toMatchObject({ code: 0, stderr: '' });
    expect((await readFile(join(restoreDir, 'node-copy'))).equals(await readFile(join(cluster.pgdata, 'pg_wal', archived[7]!)))).toBe(true);

    for (const result of [
      await runConfigured(commands.restore_command, { f: '000000010000000A00000000', p: join(restoreDir, 'RECOVERYXLOG') }, cluster.pgdata),
      await pgforever(['archive-get', '000000010000000A00000000', join(restoreDir, 'RECOVERYXLOG'), '--repo', repoDir]),
      await runConfigured(commands.restore_command, { f: '00000009.history', p: join(restoreDir, 'RECOVERYHISTORY') }, cluster.pgdata),
    ]) {
      expect(result).toMatchObject({ code: 1, stdout: '', stderr: '' });
    }
    expect((await readdir(restoreDir)).sort()).toEqual(['node-copy']);
  });

  it('prefetch has the daemon fetch one file ahead (as restore does), which archive-get then takes from the spool', async () => {
    const name = archived[8]!;
    const prefetchCommand = commands.restore_command.replace(' get ', ' prefetch ').replace(' %f "%p"', ' %f');
    expect(prefetchCommand).toMatch(/pgforever-archive prefetch .* %f$/);
    expect(await runConfigured(prefetchCommand, { f: name, p: '' }, cluster.pgdata)).toMatchObject({ code: 0, stderr: '' });
    const spooled = join(cluster.pgdata, defaultSpool('pg_wal', repoDir), 'prefetch', name);
    await waitFor(() => existsSync(spooled), { what: `${name} prefetched into the spool` });

    const restoreDir = join(scratch, 'prefetched');
    await mkdir(restoreDir, { recursive: true });
    await grantToServerUser(restoreDir);
    const dest = join(restoreDir, 'RECOVERYXLOG');
    expect(await runConfigured(commands.restore_command, { f: name, p: dest }, cluster.pgdata)).toMatchObject({ code: 0, stderr: '' });
    expect((await readFile(dest)).equals(await readFile(join(cluster.pgdata, 'pg_wal', name)))).toBe(true);
    expect(existsSync(spooled)).toBe(false);
    expect((await runConfigured(prefetchCommand, { f: 'RECOVERYXLOG', p: '' }, cluster.pgdata)).code).toBe(2);
    // Run by anyone but the data directory's owner (the tests run as root), it starts nothing.
    const foreign = await runConfigured(prefetchCommand, { f: archived[0]!, p: '' }, cluster.pgdata, {}, false);
    expect(foreign).toMatchObject({ code: 1 });
    expect(foreign.stderr).toContain("runs as the data directory's owner");
    expect(existsSync(join(cluster.pgdata, defaultSpool('pg_wal', repoDir), 'prefetch', archived[0]!))).toBe(false);
  });

  it('a daemon whose data directory is removed before it opens the spool fails with one line instead of spinning', async () => {
    const gone = await makeServerUserDir('pgf-gone-');
    // The client starts the daemon in the data directory; a restore's directory can be removed
    // before the daemon's Node has started (Node's recursive mkdir then retries forever).
    const script = [
      `process.chdir(${JSON.stringify(gone)});`,
      `(await import('node:fs')).rmSync(${JSON.stringify(gone)}, { recursive: true });`,
      `process.argv = [process.execPath, ${JSON.stringify(bin)}, 'archive-daemon', '--spool', 'pg_wal/pgforever/gone', '--repo', ${JSON.stringify(repoDir)}];`,
      `await import(${JSON.stringify(pathToFileURL(bin).href)});`,
    ].join('\n');
    const failure = await run(process.execPath, ['--input-type=module', '-e', script], { asServerUser: true }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(CommandError);
    expect((failure as CommandError).stderr.trim()).toMatch(/^pgforever: ARCHIVE_SPOOL: cannot create the spool pg_wal\/pgforever\/gone: ENOENT[^\n]*$/);
  });

  it('archives backup history, timeline history and .partial files; a standby replays through restore_command', async () => {
    const session = await cluster.connect();
    try {
      await session.query("SELECT pg_backup_start('pgforever-test', true)");
      await session.query('SELECT * FROM pg_backup_stop(true)');
    } finally {
      await session.end();
    }
    const backupHistory = (await readdir(join(cluster.pgdata, 'pg_wal'))).filter((f) => f.endsWith('.backup')).sort().at(-1)!;
    expect((await archivedCopy(backupHistory)).equals(await readFile(join(cluster.pgdata, 'pg_wal', backupHistory)))).toBe(true);

    const base = await makeServerUserDir('pgf-wal-standby-');
    await run(join(DEBIAN_PG15_BIN, 'pg_basebackup'), ['-h', cluster.host, '-p', String(cluster.port), '-U', cluster.user, '-D', join(base, 'data'), '-X', 'none', '-R'], { asServerUser: true });
    await cluster.query('INSERT INTO filler SELECT g, \'after the base backup\' FROM generate_series(1, 50000) g');
    await cluster.switchWal();
    const standby = await startClusterFromDirectory(join(base, 'data'), {
      settings: { archive_mode: 'on', archive_command: commands.archive_command, restore_command: commands.restore_command },
    });
    others.push(standby);
    const count = async (c: Cluster, h: string) => (await c.query<{ n: string }>('SELECT count(*)::text AS n FROM filler WHERE h = $1', [h]))[0]!.n;
    await waitFor(async () => (await count(standby, 'after the base backup')) === '50000', { deadlineMs: 60_000, what: 'the standby to replay' });
    // The base backup carries no WAL (-X none): the standby got it through restore_command.
    const standbySpool = join(standby.pgdata, defaultSpool('pg_wal', repoDir));
    expect(await readFile(join(standbySpool, 'pusher.log'), 'utf8')).toContain('archive daemon started');
    // Promoted mid-segment (streamed, not switched): the old timeline's last segment becomes .partial.
    await cluster.query("INSERT INTO filler SELECT g, 'streamed' FROM generate_series(1, 1000) g");
    await waitFor(async () => (await count(standby, 'streamed')) === '1000', { deadlineMs: 60_000, what: 'the standby to stream' });

    await standby.query('SELECT pg_promote()');
    const history = await archivedCopy('00000002.history');
    expect(history.equals(await readFile(join(standby.pgdata, 'pg_wal', '00000002.history')))).toBe(true);
    const partial = (await readdir(join(standby.pgdata, 'pg_wal'))).find((f) => f.endsWith('.partial'))!;
    expect(partial).toMatch(/^00000001[0-9A-F]{16}\.partial$/);
    expect((await archivedCopy(partial)).equals(await readFile(join(standby.pgdata, 'pg_wal', partial)))).toBe(true);
  });

  /**
   * Switches archive_command away (a planned outage) and writes `segments` segments of `rows` rows
   * each, which pile up as .ready; their names.
   */
  const pileUp = async (segments: number, rows: number): Promise<string[]> => {
    await cluster.query(`ALTER SYSTEM SET archive_command = '/bin/false'`);
    await cluster.query('SELECT pg_reload_conf()');
    const names: string[] = [];
    for (let i = 0; i < segments; i++) {
      await cluster.query(`INSERT INTO filler SELECT g, 'outage ${i}' FROM generate_series(1, ${rows}) g`);
      names.push(await cluster.switchWal());
    }
    const status = join(cluster.pgdata, 'pg_wal', 'archive_status');
    await waitFor(async () => names.every((n) => existsSync(join(status, `${n}.ready`))), { what: 'the segments to be ready' });
    return names;
  };

  /** archive_command back to pgforever, until it has archived `last`. */
  const resumeArchiving = async (last: string) => {
    await cluster.query(`ALTER SYSTEM SET archive_command = '${commands.archive_command.replace(/'/g, "''")}'`);
    await cluster.query('SELECT pg_reload_conf()');
    await cluster.waitForArchived(last, { deadlineMs: 60_000 });
  };

  it('pushes ready files ahead only while PostgreSQL keeps asking', async () => {
    const names = await pileUp(3, 100);
    const side = await Repository.init(new PosixStorage(join(scratch, 'ahead')), { ...repo.config, compressLevel: 1 });
    const log = createLogger('silent');
    const path = (name: string) => join(cluster.pgdata, 'pg_wal', name);
    const stored = async (name: string) => (await loadWalFile(side, parseWalFileName(name)!)) !== undefined;

    // The daemon's pusher: asked once, it has pushed nothing ahead once the window has passed.
    const idle = new WalPusher(side, { parallel: 2, log, pushAheadWindowMs: 0 });
    await idle.push(path(names[0]!));
    await idle.settle();
    expect([await stored(names[0]!), await stored(names[1]!), await stored(names[2]!)]).toEqual([true, false, false]);
    // While requests keep coming, the ready files beside the requested one go too.
    const asked = new WalPusher(side, { parallel: 2, log, pushAheadWindowMs: 60_000 });
    await asked.push(path(names[0]!));
    await asked.settle();
    expect([await stored(names[1]!), await stored(names[2]!)]).toEqual([true, true]);
    await resumeArchiving(names[2]!);
  });

  it('drains a backlog without summarising (as the daemon does), then records every summary beside its segment', async () => {
    const names = await pileUp(12, 8000);
    const side = await Repository.init(new PosixStorage(join(scratch, 'backlog')), { ...repo.config, compressLevel: 1 });
    const spool = await Spool.open(join(scratch, 'backlog-spool'));
    const pusher = new WalPusher(side, { parallel: 3, log: createLogger('silent'), spool, pushAheadWindowMs: 60_000, deferSummaries: true });
    // PostgreSQL's archiver asks for one file after another; the pusher takes the next ones along.
    for (const name of names) await pusher.push(join(cluster.pgdata, 'pg_wal', name));
    await pusher.settle();

    let beside = 0;
    const summaries: StoredWalSummary[] = [];
    for (const name of names) {
      const file = parseWalFileName(name)!;
      const { description, content } = await decodeWalObject(name, await side.storage.read(walObjectKey(file)));
      expect(content.equals(await readFile(join(cluster.pgdata, 'pg_wal', name))), name).toBe(true);
      const separate = await loadWalSummary(side, file);
      if (description.summary === undefined) beside++;
      else expect(separate, name).toBeUndefined();
      const summary = description.summary ?? separate;
      const previous = await readFile(join(cluster.pgdata, 'pg_wal', previousSegmentName(name, SEGMENT)!));
      expect(summary, name).toEqual(await summarizeSegmentFile(file, content, repo.config, previous));
      summaries.push(summary!);
    }
    // Pushed three at a time: all but the first went without a summary, each summarised once idle.
    expect(beside).toBeGreaterThanOrEqual(names.length / 2);
    expect(summaries.filter((s) => s.leadingRecordSkipped !== undefined)).toEqual([]);
    expect(summaries.flatMap((s) => s.transactions).filter(([, kind]) => kind === 'commit').length).toBeGreaterThanOrEqual(12);
    // What restore looks up in summaries finds them beside the segments.
    const [lsn, , xid] = summaries[6]!.transactions.at(-1)!;
    expect(formatLsn(await locateTarget(side, { kind: 'xid', value: String(xid) }, [names[0]!]))).toBe(lsn);
    expect((await lastArchivedTransaction(side))?.segment).toBe(names.at(-1));

    // Every summary stored, nothing left waiting in the spool. A daemon killed before it got to a
    // summary leaves its marker: the next one stores the summary, from the stored copy when the
    // file is no longer the one pushed (PostgreSQL recycled it).
    expect(await spool.listUnsummarized()).toEqual([]);
    const left = names.find((name, i) => i > 0 && existsSync(join(scratch, 'backlog', keys.walSummary('00000001', name))))!;
    const leftFile = parseWalFileName(left)!;
    await side.storage.delete(keys.walSummary('00000001', left));
    await spool.markUnsummarized(left, join(cluster.pgdata, 'pg_wal', left), 'an identity the file no longer has');
    const next = new WalPusher(side, { parallel: 3, log: createLogger('silent'), spool, deferSummaries: true });
    await next.resumeSummaries();
    await next.settle();
    expect(await loadWalSummary(side, leftFile)).toEqual(summaries[names.indexOf(left)]);
    expect(await spool.listUnsummarized()).toEqual([]);
    await resumeArchiving(names.at(-1)!);
  });
});
