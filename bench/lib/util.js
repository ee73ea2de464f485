import { lstatSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

/** Apparent bytes of every file under `path` (what object storage would bill); 0 when absent. */
export function dirBytes(path) {
  if (!existsSync(path)) return 0;
  const info = lstatSync(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of readdirSync(path)) total += dirBytes(join(path, entry));
  return total;
}

let dropAllowed;
/**
 * Writes dirty pages back and empties the page cache, so that the next measured command reads from
 * the disk as a backup of a cluster larger than memory would. Returns false when not allowed.
 */
export function dropCaches(enabled) {
  spawnSync('sync');
  if (!enabled || dropAllowed === false) return false;
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropAllowed = true;
  } catch {
    dropAllowed = false;
  }
  return dropAllowed;
}

/** Whether this run has dropped the page cache before its measurements (false with DROP_CACHES=0). */
export function cachesDropped() {
  return dropAllowed === true;
}

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Per-field median of measurement objects (numbers only; other fields from the first). */
export function medianOf(samples) {
  const out = { ...samples[0], samples: samples.length };
  for (const key of Object.keys(samples[0])) {
    if (typeof samples[0][key] === 'number') out[key] = median(samples.map((s) => s[key]));
  }
  out.wallMin = Math.min(...samples.map((s) => s.wallS));
  out.wallMax = Math.max(...samples.map((s) => s.wallS));
  return out;
}

export function log(...args) {
  const t = new Date().toISOString().slice(11, 19);
  process.stderr.write(`[bench ${t}] ${args.join(' ')}\n`);
}

/**
 * `list` rotated left by `by` places: the tools go in a different order each round, so that none is
 * always the one that runs right after the same other tool (or first after a set-up step).
 */
export function rotated(list, by) {
  const shift = ((by % list.length) + list.length) % list.length;
  return [...list.slice(shift), ...list.slice(0, shift)];
}
