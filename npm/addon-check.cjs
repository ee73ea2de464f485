// Prints what an addon build computes from fixed inputs, as one line of JSON: npm/pack.sh compares a
// cross-built addon's line (run in that architecture's Node under qemu) with the host build's.
// Usage: node npm/addon-check.cjs ADDON.node
'use strict';
const { createHash } = require('node:crypto');

const addon = require(require('node:path').resolve(process.argv[2]));

/** Bytes from a fixed xorshift sequence, with long runs of one byte so that zstd has matches to find. */
function fixedBytes(length, seed) {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; ) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const run = 1 + (x % 64);
    out.fill(x & 0xff, i, Math.min(length, i + run));
    i += run;
  }
  return out;
}

const digest = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

async function main() {
  const data = fixedBytes(3 * 128 * 1024 + 5000, 7);
  const key = Buffer.alloc(32, 9);
  const results = {};
  results.crc32c = [0, 1, 7, 100, 1023, 1024, 1025, 70000, data.length].map((length) => addon.crc32cAppend(0x1234, data.subarray(0, length)));
  results.frameBound = addon.frameBound(data.length);
  const frame = await addon.compressFrame(data, 1);
  results.frame = digest(frame);
  results.frameRoundTrip = Buffer.compare(await addon.decompressFrame(frame), data) === 0;
  const frames = await addon.compressFrames([data.subarray(0, 8192), data.subarray(8192, 65536)], 3);
  results.frames = digest(Buffer.from(JSON.stringify(frames, (_, v) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? digest(v) : v))));
  results.extentIds = digest(await addon.extentIds(data.subarray(0, 3 * 128 * 1024), key));
  results.extentId = digest(addon.extentId(data.subarray(0, 8192), key));
  results.pageChecksums = [0, 1, 1000].map((block) => addon.pageChecksum(data.subarray(block % 3 * 8192, block % 3 * 8192 + 8192), block));
  try {
    await addon.summarizeWalSegment(data.subarray(0, 65536), { segmentSize: 16777216, pgMajor: 16, timeline: 1, segmentNo: 3n });
    results.garbageWal = 'accepted';
  } catch (err) {
    results.garbageWal = String(err.message).split(':')[0];
  }
  console.log(JSON.stringify(results));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
