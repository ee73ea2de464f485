// The native core measured through napi, as the backup pipeline calls it: 8 MiB chunks of the relation
// files of a real cluster, one call per chunk. Usage: node bench/core/napi.mjs <PGDATA>
// (after `npm run build:native && npm run build:ts`; bench/core/run.sh does all of it).
// Prints markdown table rows. Timings are wall clock on the JavaScript thread.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  EXTENT_BYTES,
  PAGE_SIZE,
  compressExtents,
  extentId,
  pageChecksum,
  scanAndIdentifyExtents,
  scanExtents,
  verifyPages,
} from '../../dist/native/index.js';

const pgdata = process.argv[2];
if (!pgdata) throw new Error('usage: node bench/core/napi.mjs <PGDATA>');

const SEGMENT_BLOCKS = 131072;
const CHUNK_BYTES = 8 << 20;
const MIN_MS = 2000;
const RELATION_FILE = /^\d+(?:_(?:fsm|vm|init))?(?:\.(\d+))?$/;
const KEY = Buffer.alloc(32, 0x42);

function relationFiles() {
  const dirs = [join(pgdata, 'global'), ...readdirSync(join(pgdata, 'base')).map((d) => join(pgdata, 'base', d))];
  return dirs.flatMap((dir) => readdirSync(dir).filter((n) => RELATION_FILE.test(n)).map((n) => join(dir, n)));
}

let cold = false;
try {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  cold = true;
} catch {
  // not root: the read below is warm
}
const readStart = performance.now();
const chunks = [];
let total = 0;
for (const file of relationFiles()) {
  const bytes = readFileSync(file);
  const segment = Number(RELATION_FILE.exec(file.slice(file.lastIndexOf('/') + 1))[1] ?? 0);
  for (let at = 0; at < bytes.length; at += CHUNK_BYTES) {
    chunks.push({ bytes: bytes.subarray(at, at + CHUNK_BYTES), firstBlock: segment * SEGMENT_BLOCKS + at / PAGE_SIZE });
  }
  total += bytes.length;
}
const readGbps = total / ((performance.now() - readStart) / 1000) / 1e9;

const fullChunks = chunks.filter((c) => c.bytes.length === CHUNK_BYTES);

/** Calls `call` on every chunk of `set`, `inFlight` calls at a time, until MIN_MS passed; GB/s. */
async function throughput(call, inFlight = 1, set = chunks) {
  const start = performance.now();
  let bytes = 0;
  while (performance.now() - start < MIN_MS) {
    let next = 0;
    const worker = async () => {
      while (next < set.length) {
        const chunk = set[next++];
        await call(chunk);
        bytes += chunk.bytes.length;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  }
  return bytes / ((performance.now() - start) / 1000) / 1e9;
}

function perCallMicros(fn, calls) {
  const start = performance.now();
  for (let i = 0; i < calls; i++) fn(i);
  return ((performance.now() - start) * 1000) / calls;
}

async function perAsyncCallMicros(fn, calls) {
  const start = performance.now();
  for (let i = 0; i < calls; i++) await fn(i);
  return ((performance.now() - start) * 1000) / calls;
}

const row = (what, value, note = '') => console.log(`| ${what} | ${value} | ${note} |`);
const gbps = (v) => `${v.toFixed(2)} GB/s`;

console.log(
  `${chunks.length} chunks of up to 8 MiB (${fullChunks.length} full ones), ${(total / 2 ** 20).toFixed(1)} MiB\n`,
);
console.log('| measurement (through napi) | result | notes |\n|---|---|---|');
row(
  `readFileSync of the same files, ${cold ? 'page cache dropped' : 'page cache warm (could not drop)'}`,
  gbps(readGbps),
);
const verify = (c) => verifyPages(c.bytes, c.firstBlock);
row('verifyPages, 1 call in flight, all files', gbps(await throughput(verify)), 'one call per file or 8 MiB chunk');
row('verifyPages, 1 call in flight, full 8 MiB chunks', gbps(await throughput(verify, 1, fullChunks)), '');
row(
  'scanExtents, nothing changed, 1 in flight',
  gbps(await throughput((c) => scanExtents(c.bytes, { firstBlock: c.firstBlock, changedSince: 2n ** 63n, verifyChecksums: false }))),
  'incremental fast path: page LSNs only',
);
const identify = (c) => scanAndIdentifyExtents(c.bytes, { firstBlock: c.firstBlock, verifyChecksums: true }, KEY);
row('scanAndIdentifyExtents (checksums + BLAKE3), 1 in flight, all files', gbps(await throughput(identify)), 'no parent: every extent hashed');
row('scanAndIdentifyExtents, 1 in flight, full 8 MiB chunks', gbps(await throughput(identify, 1, fullChunks)), '');
row('scanAndIdentifyExtents, 2 in flight, full 8 MiB chunks', gbps(await throughput(identify, 2, fullChunks)), 'both cores (libuv pool, 4 threads)');

const nonZero = new Map(
  await Promise.all(
    chunks.map(async (c) => {
      const scan = await scanExtents(c.bytes, { firstBlock: c.firstBlock, verifyChecksums: false });
      return [c, scan.extents.filter((e) => !e.allZero).map((e) => e.index)];
    }),
  ),
);
for (const level of [1, 3, 6]) {
  let raw = 0;
  let stored = 0;
  const start = performance.now();
  while (performance.now() - start < MIN_MS) {
    for (const chunk of chunks) {
      const indexes = nonZero.get(chunk);
      const frames = await compressExtents(chunk.bytes, indexes, level);
      for (const index of indexes) raw += Math.min(EXTENT_BYTES, chunk.bytes.length - index * EXTENT_BYTES);
      for (const frame of frames) stored += frame.length;
    }
  }
  const rate = raw / ((performance.now() - start) / 1000) / 1e9;
  row(`compressExtents zstd level ${level}, 1 in flight`, gbps(rate), `ratio ${(raw / stored).toFixed(2)}`);
}

const first = chunks.find((c) => c.bytes.length >= PAGE_SIZE);
const page = first.bytes.subarray(0, PAGE_SIZE);
const onePage = Buffer.from(page);
const empty = Buffer.alloc(0);
row('sync call: extentId of 0 bytes', `${perCallMicros(() => extentId(empty, KEY), 200_000).toFixed(2)} µs/call`, 'napi crossing + keyed hasher setup');
row('sync call: pageChecksum of one page', `${perCallMicros((i) => pageChecksum(page, i), 200_000).toFixed(2)} µs/call`, 'crossing + ~0.1-0.4 µs of checksum');
row(
  'async call: verifyPages of one page, awaited',
  `${(await perAsyncCallMicros(() => verifyPages(onePage, first.firstBlock), 20_000)).toFixed(1)} µs/call`,
  'libuv queue + thread hop + promise: the fixed cost of one chunk',
);
