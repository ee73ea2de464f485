// The physical limits of this machine, next to which the tools' figures can be read: sequential read
// of a cluster's relation files (page cache dropped), zstd per core on the same data, the cost of
// starting a process (what a one-process-per-segment archive_command pays) and the archiver's own loop
// (the `/bin/true` row of the archive drain).
import { rmSync, openSync, readSync, closeSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { measure, run } from '../lib/proc.js';
import { dropCaches, log, median } from '../lib/util.js';
import { useCluster } from '../lib/world.js';
import { scratchDir } from './backups.js';

const SAMPLE_BYTES = 256 * 1024 * 1024;

/** The first SAMPLE_BYTES of the largest relation files, concatenated: input for `zstd -b`. */
function writeSample(files, path) {
  const sorted = files.map((f) => ({ f, size: statSync(f).size })).sort((a, b) => b.size - a.size);
  const buffer = Buffer.alloc(8 * 1024 * 1024);
  const out = openSync(path, 'w');
  let written = 0;
  for (const { f } of sorted) {
    const fd = openSync(f, 'r');
    let n;
    while (written < SAMPLE_BYTES && (n = readSync(fd, buffer, 0, Math.min(buffer.length, SAMPLE_BYTES - written))) > 0) {
      writeFileSync(out, buffer.subarray(0, n));
      written += n;
    }
    closeSync(fd);
    if (written >= SAMPLE_BYTES) break;
  }
  closeSync(out);
  return written;
}

/** `zstd -b` at levels 1 and 3 on one core: compression and decompression MB/s, ratio. */
async function zstdBench(sample) {
  // -q: one plain line per level ("-1  <compressed> (<ratio>) <c> MB/s  <d> MB/s  <file>"); without it,
  // zstd 1.5 writes only progress lines when stdout is not a terminal.
  const { stdout } = await run('zstd', ['-q', '-b1', '-e3', '-i3', sample]);
  const levels = {};
  for (const m of stdout.matchAll(/^-(\d+)\s+\d+\s+\(([\d.]+)\)\s+([\d.]+) MB\/s\s+([\d.]+) MB\/s/gm)) {
    levels[m[1]] = { ratio: Number(m[2]), compressMBs: Number(m[3]), decompressMBs: Number(m[4]) };
  }
  if (!levels['1'] || !levels['3']) throw new Error(`zstd -b: unexpected output: ${stdout.slice(0, 200)}`);
  return levels;
}

/** Reads `files` with `streams` parallel `cat`s; page cache dropped first when allowed. */
async function sequentialRead(world, files, streams) {
  const list = join(world.dir, 'files.txt');
  writeFileSync(list, files.join('\0'));
  const bytes = files.reduce((n, f) => n + statSync(f).size, 0);
  const dropped = dropCaches(world.cfg.dropCaches);
  const m = await measure('/bin/sh', ['-c', `xargs -0 -P ${streams} -n 8 cat < ${list} > /dev/null`], { scratch: scratchDir(world), asServer: false });
  return { bytes, seconds: m.wallS, bytesPerSecond: bytes / m.wallS, diskBytes: m.readBytes, dropped };
}

/** Median wall time of starting a program 20 times (the fixed cost of one archive_command call). */
async function startCost(file, args) {
  const times = [];
  for (let i = 0; i < 20; i++) {
    const t0 = process.hrtime.bigint();
    await run(file, args);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

/** Sequential read and zstd speed on the relation files of the cluster `name`. */
export async function limitsOn(ctx, name) {
  const world = await useCluster(name, ctx);
  await world.cluster.query('CHECKPOINT');
  const files = world.cluster.relationFiles();
  log(`limits on ${name}: sequential read of ${files.length} files`);
  const read1 = await sequentialRead(world, files, 1);
  const read2 = await sequentialRead(world, files, 2);
  const sample = join(world.dir, 'zstd-sample.bin');
  const sampleBytes = writeSample(files, sample);
  log(`limits on ${name}: zstd -b on ${(sampleBytes / 1e6).toFixed(0)} MB`);
  const zstd = await zstdBench(sample);
  rmSync(sample);
  return { read1, read2, zstd, sampleBytes };
}

/** Fixed cost of starting a program, the floor of a one-process-per-segment archive_command. */
export async function processStartCosts() {
  return {
    true: await startCost('/bin/true', []),
    node: await startCost(process.execPath, ['-e', '0']),
    pgbackrest: await startCost('pgbackrest', ['version']),
  };
}
