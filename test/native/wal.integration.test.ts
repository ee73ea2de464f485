/**
 * The WAL parser on real WAL. PostgreSQL 15 (1 MiB segments) runs a workload that writes most kinds of
 * record (pgbench, DDL and indexes of every access method, TRUNCATE, a VACUUM that truncates, aborted
 * and prepared transactions, CREATE/DROP DATABASE with both strategies, compressed full-page images, a
 * restore point, CHECKPOINT, a logical message larger than two segments, a switch); then every completed
 * segment is read on its own and the result compared with pg_waldump over the same segments: each record
 * (LSN, prev-link, lengths, xid, rmgr and type, block references with forks and images), each commit's
 * time, restore point, checkpoint, truncation, creation, dropped relation and database record.
 * PostgreSQL 14, 16, 17 and 18 (no pg_waldump for their formats) are checked against what the server
 * itself reports. Real segments damaged on purpose must be refused with WAL_INVALID.
 */
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgfError } from '../../src/errors/index.js';
import { decompressFrame, encodeWalSegmentFile, frameBound, listWalRecords, summarizeWalSegment, summarizeWalSegmentFile, type WalRecordInfo, type WalSegmentContext, type WalSegmentSummary } from '../../src/native/index.js';
import { parseLsn, walSegmentNameOf } from '../../src/pg/lsn.js';
import { CommandError, run } from '../support/os-user.js';
import { startCluster, type Cluster, type PgVersion } from '../support/postgres.js';

const SEGMENT = 1 << 20;
const FORKS = ['main', 'fsm', 'vm', 'init'];

interface Segment {
  name: string;
  segno: bigint;
  bytes: Buffer;
}

interface WorkloadResult {
  segments: Segment[];
  systemIdentifier: string;
  startedUs: number;
  endedUs: number;
}

/** pg_waldump's line for one record. */
interface DumpRecord {
  rmgr: string;
  rec: number;
  tot: number;
  xid: number;
  lsn: bigint;
  prev: bigint;
  type: string;
  desc: string;
  blocks: Array<{ id: number; spc: number; db: number; rel: number; fork: number; block: number; image: boolean }>;
}

const LINE =
  /^rmgr: (\S+)\s+len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev ([0-9A-F]+\/[0-9A-F]+), desc: (UNKNOWN \([0-9a-f]+\)|\S+) ?(.*)$/;
const BLKREF = /blkref #(\d+): rel (\d+)\/(\d+)\/(\d+)(?: fork (\w+))? blk (\d+)( FPW)?/g;

function parseDump(stdout: string): DumpRecord[] {
  const records: DumpRecord[] = [];
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`unexpected pg_waldump line: ${line}`);
    const rest = m[8]!;
    const blocks = [...rest.matchAll(BLKREF)].map((b) => ({
      id: Number(b[1]),
      spc: Number(b[2]),
      db: Number(b[3]),
      rel: Number(b[4]),
      fork: b[5] ? FORKS.indexOf(b[5]) : 0,
      block: Number(b[6]),
      image: b[7] !== undefined,
    }));
    const blkref = rest.indexOf(', blkref #');
    records.push({
      rmgr: m[1]!,
      rec: Number(m[2]),
      tot: Number(m[3]),
      xid: Number(m[4]),
      lsn: parseLsn(m[5]!),
      prev: parseLsn(m[6]!),
      type: m[7]!.startsWith('UNKNOWN') ? `${m[1]}/UNKNOWN` : `${m[1]}/${m[7]}`,
      desc: blkref >= 0 ? rest.slice(0, blkref) : rest,
      blocks,
    });
  }
  return records;
}

/** pg_waldump's timestamptz_to_str with TZ=UTC, as microseconds since the Unix epoch. */
function dumpTimeUs(text: string): number {
  const m = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.(\d{6}) UTC/.exec(text);
  if (!m) throw new Error(`no timestamp in ${text}`);
  return Date.parse(`${m[1]}T${m[2]}Z`) * 1000 + Number(m[3]);
}

/** `base/<db>/<rel>[_fork]` and `global/<rel>` paths in a description. */
function relPaths(text: string): Array<{ spc: number; db: number; rel: number; fork: number }> {
  return [...text.matchAll(/(?:base\/(\d+)|global)\/(\d+)(?:_(fsm|vm|init))?/g)].map((m) => ({
    spc: m[1] ? 1663 : 1664,
    db: m[1] ? Number(m[1]) : 0,
    rel: Number(m[2]),
    fork: m[3] ? FORKS.indexOf(m[3]) : 0,
  }));
}

async function sql(cluster: Cluster, statements: string[]): Promise<void> {
  const client = await cluster.connect();
  try {
    for (const statement of statements) await client.query(statement);
  } finally {
    await client.end();
  }
}

async function pgbench(cluster: Cluster, args: string[], options: string): Promise<void> {
  await run(cluster.tools.pgbench, args, { env: { ...process.env, ...cluster.env, PGOPTIONS: options } });
}

/**
 * Runs the workload and returns every segment from the one holding the starting insert position to the one
 * the final switch completed. `compression` is the wal_compression used for the second half.
 */
async function workload(cluster: Cluster, compression: string): Promise<WorkloadResult> {
  const [start] = await cluster.query<{ lsn: string; sysid: string }>(
    'SELECT pg_current_wal_insert_lsn()::text AS lsn, system_identifier::text AS sysid FROM pg_control_system()',
  );
  const { lsn: startLsn, sysid } = start!;
  const startedUs = Date.now() * 1000;
  const v15plus = cluster.version >= 15;
  await pgbench(cluster, ['-i', '-s', '1', '-q'], '');
  // PostgreSQL 14's wal_compression is a boolean (pglz); later ones name the method.
  await pgbench(cluster, ['-c', '2', '-j', '1', '-t', '150', '-n'], `-c wal_compression=${v15plus ? 'pglz' : 'on'}`);
  await sql(cluster, [
    'CREATE TABLE wal_t (id int PRIMARY KEY, pad text, arr int[], p point, n int)',
    "INSERT INTO wal_t SELECT g, md5(g::text), ARRAY[g, g + 1], point(g, g), g FROM generate_series(1, 3000) g",
    'CREATE INDEX wal_t_hash ON wal_t USING hash (n)',
    'CREATE INDEX wal_t_gin ON wal_t USING gin (arr)',
    'CREATE INDEX wal_t_gist ON wal_t USING gist (p)',
    'CREATE INDEX wal_t_spgist ON wal_t USING spgist (pad)',
    'CREATE INDEX wal_t_brin ON wal_t USING brin (n)',
    'CHECKPOINT',
    `SET wal_compression = '${compression}'`,
    "UPDATE wal_t SET pad = pad || 'x' WHERE id % 3 = 0",
    'DELETE FROM wal_t WHERE id % 5 = 0',
    'RESET wal_compression',
    'CREATE SEQUENCE wal_seq',
    "SELECT nextval('wal_seq')",
    'BEGIN',
    'CREATE TABLE wal_rolled_back (a int)',
    'INSERT INTO wal_rolled_back VALUES (1)',
    'ROLLBACK',
    'CREATE TABLE wal_trunc AS SELECT g FROM generate_series(1, 20000) g',
    'DELETE FROM wal_trunc WHERE g > 100',
    'VACUUM wal_trunc',
    'TRUNCATE pgbench_history',
    'BEGIN',
    "INSERT INTO wal_t VALUES (100001, 'prepared', NULL, NULL, 1)",
    "PREPARE TRANSACTION 'wal_p1'",
    "COMMIT PREPARED 'wal_p1'",
    'BEGIN',
    "INSERT INTO wal_t VALUES (100002, 'rolled back', NULL, NULL, 2)",
    "PREPARE TRANSACTION 'wal_p2'",
    "ROLLBACK PREPARED 'wal_p2'",
    'DROP TABLE wal_t',
    v15plus ? 'CREATE DATABASE wal_db1 STRATEGY wal_log' : 'CREATE DATABASE wal_db1',
    v15plus ? 'CREATE DATABASE wal_db2 STRATEGY file_copy' : 'CREATE DATABASE wal_db2',
    'DROP DATABASE wal_db1',
    'DROP DATABASE wal_db2',
    "SELECT pg_create_restore_point('wal-test-point')",
    'CHECKPOINT',
    // A record longer than two segments: some segment lies wholly inside it.
    "SELECT pg_logical_emit_message(false, 'wal-test', repeat('x', 2500000))",
    "SELECT pg_logical_emit_message(true, 'wal-test', 'small')",
  ]);
  const lastName = await cluster.switchWal();
  const endedUs = Date.now() * 1000;
  const first = parseLsn(startLsn!) / BigInt(SEGMENT);
  const last = BigInt(`0x${lastName.slice(8, 16)}`) * (0x1_0000_0000n / BigInt(SEGMENT)) + BigInt(`0x${lastName.slice(16, 24)}`);
  const segments: Segment[] = [];
  for (let segno = first; segno <= last; segno++) {
    const name = walSegmentNameOf(1, segno, SEGMENT);
    segments.push({ name, segno, bytes: await readFile(join(cluster.pgdata, 'pg_wal', name)) });
  }
  expect(segments.at(-1)!.name).toBe(lastName);
  return { segments, systemIdentifier: sysid!, startedUs, endedUs };
}

function contextFor(cluster: Cluster, segment: Segment, systemIdentifier: string): WalSegmentContext {
  return { segmentSize: SEGMENT, pgMajor: cluster.version, timeline: 1, segmentNo: segment.segno, systemIdentifier };
}

async function rejection(promise: Promise<unknown>): Promise<PgfError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PgfError);
  return err as PgfError;
}

function key(r: { spc: number; db: number; rel: number; fork: number }): string {
  return `${r.spc}/${r.db}/${r.rel}/${r.fork}`;
}

/** Blocks per relation fork from summary ranges, as sorted block lists. */
function blocksOf(summary: WalSegmentSummary): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const r of summary.relations) {
    const blocks: number[] = [];
    for (let i = 0; i < r.ranges.length; i += 2) for (let b = r.ranges[i]!; b < r.ranges[i + 1]!; b++) blocks.push(b);
    expect(blocks).toHaveLength(r.blocks);
    out.set(key({ spc: r.spcOid, db: r.dbOid, rel: r.relNumber, fork: r.fork }), blocks);
  }
  return out;
}

describe('WAL segments against pg_waldump (PostgreSQL 15)', () => {
  let cluster: Cluster;
  let result: WorkloadResult;
  let dump: DumpRecord[];
  const ours: WalRecordInfo[][] = [];
  const summaries: WalSegmentSummary[] = [];

  beforeAll(async () => {
    cluster = await startCluster({
      version: 15,
      walSegSizeMb: 1,
      settings: { wal_level: 'replica', max_prepared_transactions: 5, wal_keep_size: '1GB', max_wal_size: '1GB' },
    });
    result = await workload(cluster, 'lz4');
    const { segments } = result;
    const args = ['-p', join(cluster.pgdata, 'pg_wal'), segments[0]!.name, segments.at(-1)!.name];
    let stdout: string;
    try {
      stdout = (await run(cluster.tools.pgWaldump!, args, { env: { ...process.env, TZ: 'UTC' } })).stdout;
    } catch (err) {
      // pg_waldump may complain at the very end of its range; every record it printed still counts.
      if (!(err instanceof CommandError)) throw err;
      stdout = err.stdout;
    }
    dump = parseDump(stdout);
    for (const [i, segment] of segments.entries()) {
      const context = contextFor(cluster, segment, result.systemIdentifier);
      // Up to three segments before: enough for the 2.5 MB message that spans four.
      const previous = i === 0 ? undefined : Buffer.concat(segments.slice(Math.max(0, i - 3), i).map((s) => s.bytes));
      ours.push((await listWalRecords(segment.bytes, context, { previous })).records);
      summaries.push(await summarizeWalSegment(segment.bytes, context, { previous }));
    }
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  /** pg_waldump's records that segment `i` covers: those ending in it (the lists line up one to one). */
  const dumpOf = (i: number) => {
    const offset = ours.slice(0, i).reduce((n, list) => n + list.length, 0);
    return dump.slice(offset, offset + ours[i]!.length);
  };

  it('reads every record pg_waldump reads, with the same header fields and block references', () => {
    expect(result.segments.length).toBeGreaterThan(10);
    // Each record once, in the summary of the segment it ends in: together, exactly pg_waldump's records.
    const all = ours.flat();
    expect(all.length).toBe(dump.length);
    expect(all.length).toBeGreaterThan(5000);
    for (let i = 0; i < all.length; i++) {
      const mine = all[i]!;
      const theirs = dump[i]!;
      const got = {
        lsn: mine.lsn,
        prev: mine.prev,
        tot: mine.totLen,
        rec: mine.totLen - mine.fpiLen,
        xid: mine.xid,
        type: mine.type ?? `${theirs.rmgr}/UNKNOWN`,
        blocks: mine.blocks.map((b) => ({ id: b.id, spc: b.spcOid, db: b.dbOid, rel: b.relNumber, fork: b.fork, block: b.block, image: b.image })),
      };
      const want = { lsn: theirs.lsn, prev: theirs.prev, tot: theirs.tot, rec: theirs.rec, xid: theirs.xid, type: theirs.type, blocks: theirs.blocks };
      if (JSON.stringify(got, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v)) !== JSON.stringify(want, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v))) {
        expect(got, `record ${i} at ${theirs.lsn.toString(16)}`).toEqual(want);
      }
    }
    // The workload wrote the record kinds this test is about.
    const types = new Set(dump.map((r) => r.type));
    for (const type of [
      'Heap2/MULTI_INSERT',
      'Heap/HOT_UPDATE',
      'Btree/INSERT_LEAF',
      'Hash/INSERT',
      'Gin/UPDATE_META_PAGE',
      'Gist/PAGE_UPDATE',
      'SPGist/ADD_LEAF',
      'BRIN/CREATE_INDEX',
      'Sequence/LOG',
      'Storage/CREATE',
      'Storage/TRUNCATE',
      'Database/CREATE_WAL_LOG',
      'Database/CREATE_FILE_COPY',
      'Database/DROP',
      'Transaction/COMMIT',
      'Transaction/ABORT',
      'Transaction/PREPARE',
      'Transaction/COMMIT_PREPARED',
      'Transaction/ABORT_PREPARED',
      'XLOG/RESTORE_POINT',
      'XLOG/CHECKPOINT_ONLINE',
      'XLOG/FPI',
      'XLOG/FPI_FOR_HINT',
      'XLOG/SWITCH',
      'LogicalMessage/MESSAGE',
    ]) {
      expect(types, type).toContain(type);
    }
    expect(dump.some((r) => r.blocks.some((b) => b.image))).toBe(true);
    expect(dump.some((r) => r.blocks.some((b) => b.fork !== 0))).toBe(true);
  });

  it('summarises each segment as pg_waldump sees it', () => {
    let crossing = 0;
    let inside = 0;
    for (const [i, summary] of summaries.entries()) {
      const records = dumpOf(i);
      const name = result.segments[i]!.name;
      expect(summary.records, name).toBe(records.length);
      expect(summary.firstRecordLsn, name).toBe(records[0]?.lsn);
      expect(summary.lastRecordLsn, name).toBe(records.at(-1)?.lsn);
      expect(summary.systemIdentifier).toBe(result.systemIdentifier);
      // Per rmgr: records, bytes and full-page images.
      const rmgrs = new Map<string, { records: number; bytes: number; fpi: number }>();
      for (const r of records) {
        const c = rmgrs.get(r.rmgr) ?? { records: 0, bytes: 0, fpi: 0 };
        c.records++;
        c.bytes += r.tot;
        c.fpi += r.blocks.filter((b) => b.image).length;
        rmgrs.set(r.rmgr, c);
      }
      expect(new Map(summary.rmgrs.map((r) => [r.name, { records: r.records, bytes: r.bytes, fpi: r.fpi }])), name).toEqual(rmgrs);
      // Per type.
      const types = new Map<string, number>();
      for (const r of records) types.set(r.type, (types.get(r.type) ?? 0) + 1);
      expect(new Map(summary.types.map((t) => [t.name ?? '?', t.records])), name).toEqual(types);
      // Distinct blocks per relation fork.
      const blocks = new Map<string, Set<number>>();
      for (const r of records) {
        for (const b of r.blocks) {
          const k = key(b);
          if (!blocks.has(k)) blocks.set(k, new Set());
          blocks.get(k)!.add(b.block);
        }
      }
      const want = new Map([...blocks].map(([k, set]) => [k, [...set].sort((a, b) => a - b)]));
      expect(blocksOf(summary), name).toEqual(want);
      expect(summary.blockReferences).toBe(records.reduce((n, r) => n + r.blocks.length, 0));
      // Where each record starts: in this segment, except a leading one read from the previous segments.
      const start = result.segments[i]!.segno * BigInt(SEGMENT);
      const end = start + BigInt(SEGMENT);
      for (const [j, r] of records.entries()) {
        expect(r.lsn < end).toBe(true);
        expect(r.lsn >= start || (j === 0 && summary.leadingRecordLsn === r.lsn), `${name} record ${j}`).toBe(true);
      }
      // How the segment ends, and how the next one begins.
      if (i === summaries.length - 1) {
        expect(summary.endReason).toBe('switch');
        expect(summary.switchLsn).toBe(records.at(-1)!.lsn);
        expect(summary.endLsn).toBe(records.at(-1)!.lsn + BigInt((records.at(-1)!.tot + 7) & ~7));
      } else {
        expect(['continues', 'segment-end'], `${name}: ${summary.endReason} ${summary.endDetail ?? ''}`).toContain(summary.endReason);
        expect(summary.endLsn).toBe(end);
        expect(summary.switchLsn).toBeUndefined();
        const next = summaries[i + 1]!;
        expect(next.continuedFromPrevious).toBe(summary.endReason === 'continues');
        if (summary.endReason === 'continues') {
          crossing++;
          // Read by the next segment, unless that one lies wholly inside the record.
          if (next.records > 0) expect(next.leadingRecordLsn).toBe(summary.continuedRecordLsn);
          else expect(next.leadingRecordSkipped).toBeDefined();
        }
      }
      if (summary.records === 0) inside++;
      if (i > 0 && summary.continuedFromPrevious && summary.records > 0) expect(summary.leadingRecordSkipped, name).toBeUndefined();
      expect(summary.undecoded).toEqual([]);
      expect(summary.abortedRecords).toEqual([]);
      expect(summary.unhandledSpecialUpdates).toEqual([]);
    }
    expect(crossing).toBeGreaterThan(5);
    // The 2.5 MB logical message covers at least one segment end to end.
    expect(inside).toBeGreaterThanOrEqual(1);
  });

  it('finds the transaction ends, with the times pg_waldump prints', () => {
    const kinds: Record<string, string> = {
      COMMIT: 'commit',
      ABORT: 'abort',
      PREPARE: 'prepare',
      COMMIT_PREPARED: 'commit-prepared',
      ABORT_PREPARED: 'abort-prepared',
    };
    const want = dump
      .filter((r) => r.rmgr === 'Transaction' && r.type.slice('Transaction/'.length) in kinds)
      .map((r) => {
        const kind = kinds[r.type.slice('Transaction/'.length)]!;
        // COMMIT_PREPARED / ABORT_PREPARED print the prepared transaction's xid first.
        const twophase = /^(\d+): /.exec(r.desc);
        const xid = kind === 'prepare' || !twophase ? r.xid : Number(twophase[1]);
        return { lsn: r.lsn, kind, xid, timeUs: dumpTimeUs(r.desc) };
      });
    const got = summaries.flatMap((s) => s.transactions);
    expect(got).toEqual(want);
    expect(got.filter((t) => t.kind === 'commit').length).toBeGreaterThan(300);
    for (const t of got) {
      if (t.kind !== 'commit') continue;
      expect(t.timeUs).toBeGreaterThanOrEqual(result.startedUs - 1_000_000);
      expect(t.timeUs).toBeLessThanOrEqual(result.endedUs + 1_000_000);
    }
    // Relations dropped by commits and aborts ("rels:" in pg_waldump's description).
    const dropped = dump
      .filter((r) => r.rmgr === 'Transaction' && /; rels:/.test(r.desc))
      .flatMap((r) => {
        const rels = r.desc.slice(r.desc.indexOf('; rels:') + '; rels:'.length).split(';')[0]!;
        return relPaths(rels).map((p) => `${r.lsn}:${key(p)}`);
      });
    const mine = summaries.flatMap((s) => s.droppedRelations.map((d) => `${d.lsn}:${key({ spc: d.spcOid, db: d.dbOid, rel: d.relNumber, fork: 0 })}`));
    expect(mine).toEqual(dropped);
    expect(summaries.flatMap((s) => s.droppedRelations).some((d) => d.kind === 'abort')).toBe(true);
  });

  it('finds restore points, checkpoints, relation and database records', () => {
    const points = dump.filter((r) => r.type === 'XLOG/RESTORE_POINT').map((r) => ({ lsn: r.lsn, name: r.desc.trim() }));
    expect(summaries.flatMap((s) => s.restorePoints.map((p) => ({ lsn: p.lsn, name: p.name })))).toEqual(points);
    expect(points.map((p) => p.name)).toContain('wal-test-point');

    const checkpoints = dump
      .filter((r) => r.type.startsWith('XLOG/CHECKPOINT_'))
      .map((r) => {
        const m = /redo ([0-9A-F]+\/[0-9A-F]+); tli (\d+); prev tli (\d+)/.exec(r.desc)!;
        return { lsn: r.lsn, redo: parseLsn(m[1]!), timeline: Number(m[2]), prevTimeline: Number(m[3]), online: r.type === 'XLOG/CHECKPOINT_ONLINE' };
      });
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    expect(summaries.flatMap((s) => s.checkpoints.map(({ lsn, redo, timeline, prevTimeline, online }) => ({ lsn, redo, timeline, prevTimeline, online })))).toEqual(
      checkpoints,
    );

    const creations = dump.filter((r) => r.type === 'Storage/CREATE').map((r) => `${r.lsn}:${key(relPaths(r.desc)[0]!)}`);
    expect(summaries.flatMap((s) => s.creations.map((c) => `${c.lsn}:${key({ spc: c.spcOid, db: c.dbOid, rel: c.relNumber, fork: c.fork })}`))).toEqual(creations);

    const truncations = dump.filter((r) => r.type === 'Storage/TRUNCATE').map((r) => {
      const m = / to (\d+) blocks flags (\d+)/.exec(r.desc)!;
      return `${r.lsn}:${key(relPaths(r.desc)[0]!)}:${m[1]}:${m[2]}`;
    });
    expect(truncations.length).toBeGreaterThanOrEqual(1);
    expect(
      summaries.flatMap((s) => s.truncations.map((t) => `${t.lsn}:${key({ spc: t.spcOid, db: t.dbOid, rel: t.relNumber, fork: 0 })}:${t.blocks}:${t.flags}`)),
    ).toEqual(truncations);

    const creates = dump
      .filter((r) => r.type.startsWith('Database/CREATE'))
      .map((r) => {
        const copy = /copy dir (\d+)\/(\d+) to (\d+)\/(\d+)/.exec(r.desc);
        if (copy) return { lsn: r.lsn, spcOid: Number(copy[3]), dbOid: Number(copy[4]), strategy: 'file-copy', sourceSpcOid: Number(copy[1]), sourceDbOid: Number(copy[2]) };
        const dir = /create dir (\d+)\/(\d+)/.exec(r.desc)!;
        return { lsn: r.lsn, spcOid: Number(dir[1]), dbOid: Number(dir[2]), strategy: 'wal-log' };
      });
    // initdb's own CREATE DATABASE records may be in the first segment too.
    expect(creates.slice(-2).map((c) => c.strategy)).toEqual(['wal-log', 'file-copy']);
    expect(summaries.flatMap((s) => s.databaseCreates)).toEqual(creates);
    const drops = dump
      .filter((r) => r.type === 'Database/DROP')
      .map((r) => {
        const dirs = [...r.desc.matchAll(/(\d+)\/(\d+)/g)];
        return { lsn: r.lsn, dbOid: Number(dirs[0]![2]), spcOids: dirs.map((d) => Number(d[1])) };
      });
    expect(drops.slice(-2).map((d) => d.dbOid)).toEqual(creates.slice(-2).map((c) => c.dbOid));
    expect(summaries.flatMap((s) => s.databaseDrops)).toEqual(drops);
  });

  it('refuses damaged real segments with WAL_INVALID and keeps working', async () => {
    const segment = result.segments[1]!;
    const context = contextFor(cluster, segment, result.systemIdentifier);
    const previous = result.segments[0]!.bytes;
    const wrongMagic = Buffer.from(segment.bytes);
    wrongMagic.writeUInt16LE(0xd116, 0);
    expect((await rejection(summarizeWalSegment(wrongMagic, context))).message).toMatch(/PostgreSQL 17's/);
    expect((await rejection(summarizeWalSegment(segment.bytes.subarray(0, SEGMENT / 2), context))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(segment.bytes, { ...context, segmentNo: segment.segno + 1n }))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(segment.bytes, { ...context, pgMajor: 16 }))).code).toBe('WAL_INVALID');
    expect((await rejection(summarizeWalSegment(segment.bytes, { ...context, systemIdentifier: '1' }))).code).toBe('WAL_INVALID');
    // Damage after the first page only ends valid WAL early.
    const damaged = Buffer.from(segment.bytes);
    damaged.fill(0xa5, 100_000, 100_100);
    const summary = await summarizeWalSegment(damaged, context, { previous });
    expect(['crc', 'invalid-record', 'invalid-page']).toContain(summary.endReason);
    expect(summary.endLsn).toBeLessThanOrEqual(segment.segno * BigInt(SEGMENT) + 100_100n);
    expect(summary.records).toBeLessThan(summaries[1]!.records);
    expect((await summarizeWalSegment(segment.bytes, context, { previous })).records).toBe(summaries[1]!.records);
  });

  it('reads a segment file by mapping it into the same summary, frame and tail as from memory, or the summary alone, or all but the summary', async () => {
    const tailBytes = 64 * 1024;
    for (const [i, segment] of result.segments.entries()) {
      const path = join(cluster.pgdata, 'pg_wal', segment.name);
      const previous = i === 0 ? undefined : Buffer.concat(result.segments.slice(Math.max(0, i - 3), i).map((s) => s.bytes));
      const room = Buffer.alloc(frameBound(SEGMENT));
      const tail = Buffer.alloc(tailBytes);
      const handle = await open(path, 'r');
      try {
        const context = contextFor(cluster, segment, result.systemIdentifier);
        const read = await encodeWalSegmentFile(handle.fd, path, context, { level: 1, summarize: true }, { room, tail, ...(previous ? { previous } : {}) });
        expect(read.stat.size).toBe(BigInt(SEGMENT));
        expect(read.head.equals(segment.bytes.subarray(0, read.head.length))).toBe(true);
        expect(read.summary, segment.name).toEqual(summaries[i]);
        expect(read.summaryError).toBeUndefined();
        const stored = await decompressFrame(read.frame);
        expect(stored.equals(segment.bytes.subarray(0, read.zeroFrom)), segment.name).toBe(true);
        expect(segment.bytes.subarray(read.zeroFrom).every((b) => b === 0)).toBe(true);
        expect(read.zeroFrom === SEGMENT || segment.bytes[read.zeroFrom - 1] !== 0).toBe(true);
        expect(tail.equals(segment.bytes.subarray(SEGMENT - tailBytes))).toBe(true);

        const frame = Buffer.from(read.frame);
        const unsummarized = await encodeWalSegmentFile(handle.fd, path, context, { level: 1, summarize: false }, { room, ...(previous ? { previous } : {}) });
        expect(unsummarized.summary).toBeUndefined();
        expect(unsummarized.summaryError).toBeUndefined();
        expect(unsummarized.frame.equals(frame), segment.name).toBe(true);
        const later = await summarizeWalSegmentFile(handle.fd, path, context, previous);
        expect(later.stat).toEqual(read.stat);
        expect(later.summary, segment.name).toEqual(summaries[i]);
        expect(later.summaryError).toBeUndefined();
      } finally {
        await handle.close();
      }
    }
    // A file of another size: nothing read beyond its header, for the caller's checks to refuse.
    const short = join(cluster.pgdata, 'short-segment');
    await writeFile(short, result.segments[0]!.bytes.subarray(0, 8192));
    const handle = await open(short, 'r');
    try {
      const context = contextFor(cluster, result.segments[0]!, result.systemIdentifier);
      const read = await encodeWalSegmentFile(handle.fd, short, context, { level: 1, summarize: true }, { room: Buffer.alloc(frameBound(SEGMENT)) });
      expect(read.stat.size).toBe(8192n);
      expect(read.frame.length).toBe(0);
      expect(read.summary).toBeUndefined();
      expect(read.summaryError?.code).toBe('WAL_INVALID');
      expect((await rejection(summarizeWalSegmentFile(handle.fd, short, context))).message).toMatch(/8192 bytes, not a whole segment/);
      // What the native side writes may not overlap what it reads or writes elsewhere.
      const room = Buffer.alloc(frameBound(SEGMENT));
      const encoding = { level: 1, summarize: true };
      expect((await rejection(encodeWalSegmentFile(handle.fd, short, context, encoding, { room, tail: room.subarray(0, 4096) }))).code).toBe('INVALID_ARGUMENT');
      expect((await rejection(encodeWalSegmentFile(handle.fd, short, context, encoding, { room, previous: room.subarray(8192, 16384) }))).code).toBe('INVALID_ARGUMENT');
    } finally {
      await handle.close();
    }
  });
});

describe.each([14, 16, 17, 18] as PgVersion[])('WAL segments of PostgreSQL %i against the server', (version) => {
  let cluster: Cluster;
  let result: WorkloadResult;
  let summaries: WalSegmentSummary[];

  beforeAll(async () => {
    cluster = await startCluster({
      version,
      walSegSizeMb: 1,
      settings: { wal_level: 'replica', max_prepared_transactions: 5, wal_keep_size: '1GB', max_wal_size: '1GB' },
    });
    result = await workload(cluster, version === 14 ? 'on' : 'pglz');
    summaries = [];
    for (const [i, segment] of result.segments.entries()) {
      const previous = i === 0 ? undefined : Buffer.concat(result.segments.slice(Math.max(0, i - 3), i).map((s) => s.bytes));
      summaries.push(await summarizeWalSegment(segment.bytes, contextFor(cluster, segment, result.systemIdentifier), { previous }));
    }
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('reads every segment to its end and finds what the workload did', async () => {
    for (const [i, s] of summaries.entries()) {
      const last = i === summaries.length - 1;
      expect(s.endReason, `${result.segments[i]!.name}: ${s.endDetail ?? ''}`).toBe(last ? 'switch' : s.endReason === 'continues' ? 'continues' : 'segment-end');
      expect(s.undecoded).toEqual([]);
      expect(s.unhandledSpecialUpdates).toEqual([]);
      if (i > 0) expect(s.continuedFromPrevious).toBe(summaries[i - 1]!.endReason === 'continues');
      // Given the segments before, the record crossing into this one is read here.
      if (i > 0 && s.continuedFromPrevious && s.records > 0) expect(s.leadingRecordLsn).toBe(summaries[i - 1]!.continuedRecordLsn);
    }
    const types = new Set(summaries.flatMap((s) => s.types.map((t) => t.name)));
    expect(types.has(null as unknown as string)).toBe(false);
    for (const type of ['Heap/INSERT', 'Btree/INSERT_LEAF', 'Storage/TRUNCATE', 'Transaction/COMMIT_PREPARED', 'XLOG/RESTORE_POINT']) expect(types).toContain(type);

    const points = summaries.flatMap((s) => s.restorePoints);
    expect(points.map((p) => p.name)).toEqual(['wal-test-point']);
    const transactions = summaries.flatMap((s) => s.transactions);
    expect(transactions.filter((t) => t.kind === 'commit').length).toBeGreaterThan(300);
    for (const t of transactions) {
      expect(t.timeUs).toBeGreaterThanOrEqual(result.startedUs - 1_000_000);
      expect(t.timeUs).toBeLessThanOrEqual(result.endedUs + 1_000_000);
    }
    expect(transactions.filter((t) => t.kind === 'commit-prepared')).toHaveLength(1);
    expect(transactions.filter((t) => t.kind === 'abort-prepared')).toHaveLength(1);
    expect(points[0]!.timeUs).toBeGreaterThanOrEqual(result.startedUs - 1_000_000);

    // The last checkpoint is the one pg_control knows.
    const [control] = await cluster.query<{ checkpoint: string; redo: string }>(
      'SELECT checkpoint_lsn::text AS checkpoint, redo_lsn::text AS redo FROM pg_control_checkpoint()',
    );
    const checkpoint = summaries.flatMap((s) => s.checkpoints).find((c) => c.lsn === parseLsn(control!.checkpoint));
    expect(checkpoint?.redo).toBe(parseLsn(control!.redo));

    // Blocks of pgbench_accounts (its current file) were referenced; wal_trunc was truncated.
    const [accounts] = await cluster.query<{ rel: number; db: number }>(
      "SELECT pg_relation_filenode('pgbench_accounts')::int AS rel, (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS db",
    );
    const relations = summaries.flatMap((s) => s.relations);
    expect(relations.some((r) => r.relNumber === accounts!.rel && r.dbOid === accounts!.db && r.fork === 0)).toBe(true);
    expect(summaries.flatMap((s) => s.truncations).length).toBeGreaterThanOrEqual(1);
    // The workload's two databases (initdb's own CREATE DATABASE records may come first).
    const creates = summaries.flatMap((s) => s.databaseCreates).slice(-2);
    expect(creates.map((c) => c.strategy)).toEqual(version >= 15 ? ['wal-log', 'file-copy'] : ['file-copy', 'file-copy']);
    expect(summaries.flatMap((s) => s.databaseDrops).map((d) => d.dbOid)).toEqual(creates.map((c) => c.dbOid));
    expect(summaries.flatMap((s) => s.droppedRelations).some((d) => d.kind === 'abort')).toBe(true);
    expect(summaries.some((s) => s.records === 0)).toBe(true);
  });
});
