// The in-memory extent index at repository scale: memory and lookups for N extents (default 10
// million, about a 1.2 TiB cluster of 128 KiB extents). Run after `npm run build:ts`:
//   node --expose-gc bench/repo/index.js [N]
import { randomBytes } from 'node:crypto';
import { ExtentIndex, encodeIndexDelta } from '../../dist/repo/extent-index.js';

const n = Number(process.argv[2] ?? 10_000_000);
const gc = globalThis.gc ?? (() => {});
gc();
const before = process.memoryUsage();
const index = new ExtentIndex();
const ids = randomBytes(32 * n);
const packs = Array.from({ length: Math.ceil(n / 500) }, () => randomBytes(16).toString('hex'));
let t = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  index.add({ id: ids.subarray(i * 32, i * 32 + 32), pack: packs[Math.floor(i / 500)], offset: (i % 500) * 40_000, length: 40_000, rawLength: 131_072 });
}
const insertSeconds = Number(process.hrtime.bigint() - t) / 1e9;
gc();
const after = process.memoryUsage();
const lookups = Math.min(n, 2_000_000);
t = process.hrtime.bigint();
let found = 0;
for (let i = 0; i < lookups; i++) {
  const j = (i * 7919) % n;
  if (index.has(ids.subarray(j * 32, j * 32 + 32))) found++;
}
const hitSeconds = Number(process.hrtime.bigint() - t) / 1e9;
const misses = randomBytes(32 * 1_000_000);
t = process.hrtime.bigint();
for (let i = 0; i < 1_000_000; i++) if (index.has(misses.subarray(i * 32, i * 32 + 32))) found++;
const missSeconds = Number(process.hrtime.bigint() - t) / 1e9;
// Loading, as restore and backup do: from index deltas of 100,000 entries (one per backup).
const deltas = [];
for (let first = 0; first < n; first += 100_000) {
  const entries = [];
  for (let i = first; i < Math.min(n, first + 100_000); i++) {
    entries.push({ id: ids.subarray(i * 32, i * 32 + 32), pack: packs[Math.floor(i / 500)], offset: (i % 500) * 40_000, length: 40_000, rawLength: 131_072 });
  }
  deltas.push(encodeIndexDelta(entries));
}
t = process.hrtime.bigint();
const loaded = new ExtentIndex();
for (const delta of deltas) loaded.addDelta(delta);
const loadSeconds = Number(process.hrtime.bigint() - t) / 1e9;
const table = index.memoryBytes;
const heapAndExternal = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers - ids.length;
console.log(JSON.stringify({
  extents: n,
  tableBytesPerExtent: +(table / n).toFixed(1),
  processBytesPerExtent: +(heapAndExternal / n).toFixed(1),
  rssMiB: Math.round(after.rss / 1048576),
  insertsPerSecond: Math.round(n / insertSeconds),
  loadedFromDeltasPerSecond: Math.round(loaded.size / loadSeconds),
  hitLookupsPerSecond: Math.round(lookups / hitSeconds),
  missLookupsPerSecond: Math.round(1_000_000 / missSeconds),
  found,
}));
