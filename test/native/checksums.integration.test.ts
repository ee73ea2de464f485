/**
 * Our page checksum verifier against PostgreSQL's own, on a real PostgreSQL 15 cluster made with
 * --data-checksums: every page of every relation file passes, we look at exactly the files and blocks
 * pg_checksums looks at, and one byte corrupted on purpose is flagged by both at the same block, with the
 * same computed and stored checksums.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENT_PAGES, PAGE_SIZE, pageChecksum, scanExtents, verifyPages, type ChecksumFailure } from '../../src/native/index.js';
import { CommandError, run } from '../support/os-user.js';
import { startCluster, type Cluster } from '../support/postgres.js';

/** Blocks per relation segment file (RELSEG_SIZE with 8 KiB pages). */
const SEGMENT_BLOCKS = 131072;
const CHUNK_BYTES = 8 << 20;
/** `<relfilenode>[_fork][.segment]`; everything else (pg_filenode.map, PG_VERSION, pg_internal.init...) is not a relation. */
const RELATION_FILE = /^\d+(?:_(?:fsm|vm|init))?(?:\.(\d+))?$/;

interface FileFailure extends ChecksumFailure {
  file: string;
}

interface ClusterCheck {
  files: number;
  blocks: number;
  failures: FileFailure[];
}

async function relationFiles(pgdata: string): Promise<string[]> {
  const dirs = [join(pgdata, 'global')];
  for (const db of await readdir(join(pgdata, 'base'))) dirs.push(join(pgdata, 'base', db));
  for (const tablespace of await readdir(join(pgdata, 'pg_tblspc'))) {
    const root = join(pgdata, 'pg_tblspc', tablespace);
    for (const versionDir of await readdir(root)) {
      for (const db of await readdir(join(root, versionDir))) dirs.push(join(root, versionDir, db));
    }
  }
  const files: string[] = [];
  for (const dir of dirs) {
    for (const name of await readdir(dir)) if (RELATION_FILE.test(name)) files.push(join(dir, name));
  }
  return files.sort();
}

function segmentFirstBlock(file: string): number {
  const segment = RELATION_FILE.exec(file.slice(file.lastIndexOf('/') + 1))?.[1];
  return Number(segment ?? 0) * SEGMENT_BLOCKS;
}

/** Reads a relation file in 8 MiB chunks and verifies them; `scan` uses the extent scan instead. */
async function checkFile(file: string, how: 'verifyPages' | 'scan'): Promise<{ blocks: number; failures: ChecksumFailure[] }> {
  const handle = await open(file, 'r');
  const failures: ChecksumFailure[] = [];
  let blocks = 0;
  try {
    const firstBlock = segmentFirstBlock(file);
    for (let offset = 0; ; ) {
      const buffer = Buffer.alloc(CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, offset);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      const block = firstBlock + offset / PAGE_SIZE;
      if (how === 'verifyPages') {
        failures.push(...(await verifyPages(chunk, block)));
      } else {
        const scan = await scanExtents(chunk, { firstBlock: block, verifyChecksums: true });
        expect(scan.extents).toHaveLength(Math.ceil(bytesRead / (EXTENT_PAGES * PAGE_SIZE)));
        failures.push(...scan.checksumFailures);
      }
      blocks += bytesRead / PAGE_SIZE;
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return { blocks, failures };
}

async function checkCluster(pgdata: string, how: 'verifyPages' | 'scan'): Promise<ClusterCheck> {
  const files = await relationFiles(pgdata);
  const result: ClusterCheck = { files: files.length, blocks: 0, failures: [] };
  for (const file of files) {
    const { blocks, failures } = await checkFile(file, how);
    result.blocks += blocks;
    result.failures.push(...failures.map((failure) => ({ ...failure, file: relative(pgdata, file) })));
  }
  return result;
}

interface PgChecksumsReport {
  ok: boolean;
  output: string;
}

async function pgChecksums(cluster: Cluster): Promise<PgChecksumsReport> {
  const tool = cluster.tools.pgChecksums;
  if (tool === null) throw new Error('pg_checksums is not available for this cluster');
  try {
    const { stdout, stderr } = await run(tool, ['--check', '-D', cluster.pgdata], { asServerUser: true });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    if (error instanceof CommandError && error.exitCode !== null && error.exitCode !== 0) {
      return { ok: false, output: error.stdout + error.stderr };
    }
    throw error;
  }
}

function counted(output: string, label: string): number {
  const match = new RegExp(`${label}:\\s+(\\d+)`).exec(output);
  if (!match) throw new Error(`pg_checksums printed no "${label}":\n${output}`);
  return Number(match[1]);
}

describe('page checksums against pg_checksums on a real PostgreSQL 15 cluster', () => {
  let cluster: Cluster;
  let wideFile: string;

  beforeAll(async () => {
    cluster = await startCluster({ version: 15, dataChecksums: true, tablespaces: ['ts_native'] });
    await run(cluster.tools.pgbench, ['-i', '-q', '-s', '3'], { env: { ...process.env, ...cluster.env } });
    await cluster.query('CREATE TABLE in_tablespace TABLESPACE ts_native AS SELECT g AS id FROM generate_series(1, 50000) g');
    // One 700-byte row per page (fillfactor 10) past 131072 pages: the relation gets a second segment
    // file, whose block numbers start at 131072 in the checksum.
    await cluster.query('CREATE TABLE wide (id int, pad text) WITH (fillfactor = 10)');
    await cluster.query("INSERT INTO wide SELECT g, repeat('x', 700) FROM generate_series(1, 135000) g");
    const [row] = await cluster.query<{ path: string; size: string }>(
      "SELECT pg_relation_filepath('wide') AS path, pg_relation_size('wide')::text AS size",
    );
    expect(Number(row?.size)).toBeGreaterThan(SEGMENT_BLOCKS * PAGE_SIZE);
    wideFile = `${row!.path}.1`;
    await cluster.stop('fast');
  });

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('passes every page of every relation file, over the same files and blocks as pg_checksums', async () => {
    const reference = await pgChecksums(cluster);
    expect(reference.ok, reference.output).toBe(true);
    expect(counted(reference.output, 'Bad checksums')).toBe(0);

    const ours = await checkCluster(cluster.pgdata, 'verifyPages');
    expect(ours.failures).toEqual([]);
    expect(ours.files).toBe(counted(reference.output, 'Files scanned'));
    expect(ours.blocks).toBe(counted(reference.output, 'Blocks scanned'));
    expect((await stat(join(cluster.pgdata, wideFile))).size).toBeGreaterThan(0);

    const scanned = await checkCluster(cluster.pgdata, 'scan');
    expect(scanned.failures).toEqual([]);
    expect(scanned.blocks).toBe(ours.blocks);
  });

  it('flags a corrupted byte at the same block as pg_checksums, with the same checksums', async () => {
    const blockInFile = 100;
    const path = join(cluster.pgdata, wideFile);
    const handle = await open(path, 'r+');
    const page = Buffer.alloc(PAGE_SIZE);
    try {
      await handle.read(page, 0, PAGE_SIZE, blockInFile * PAGE_SIZE);
      page[8000]! ^= 0xff; // inside the row's data, far from the header
      await handle.write(page, 0, PAGE_SIZE, blockInFile * PAGE_SIZE);
    } finally {
      await handle.close();
    }
    const relationBlock = SEGMENT_BLOCKS + blockInFile;
    const stored = page.readUInt16LE(8);
    const computed = pageChecksum(page, relationBlock);
    expect(computed).not.toBe(stored);

    const reference = await pgChecksums(cluster);
    expect(reference.ok).toBe(false);
    expect(counted(reference.output, 'Bad checksums')).toBe(1);
    const reported = /checksum verification failed in file "([^"]+)", block (\d+): calculated checksum ([0-9A-F]+) but block contains ([0-9A-F]+)/.exec(
      reference.output,
    );
    expect(reported, reference.output).not.toBeNull();
    expect(relative(cluster.pgdata, reported![1]!)).toBe(wideFile);
    expect(Number(reported![2])).toBe(blockInFile);
    expect(parseInt(reported![3]!, 16)).toBe(computed);
    expect(parseInt(reported![4]!, 16)).toBe(stored);

    for (const how of ['verifyPages', 'scan'] as const) {
      const ours = await checkCluster(cluster.pgdata, how);
      expect(ours.failures, how).toEqual([
        { file: wideFile, block: relationBlock, expected: computed, found: stored, lsn: ours.failures[0]?.lsn },
      ]);
      expect(ours.failures[0]!.lsn).toBeGreaterThan(0n);
    }
  });
});
