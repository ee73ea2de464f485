import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignedBuffer } from '../../src/native/index.js';
import { DIRECT_IO_ALIGNMENT, openDirect, writeAt, writeCallBytes, writeThroughStaging } from '../../src/storage/file-writes.js';

describe('writeAt', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgf-writes-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes buffers of any size back to back at the position, across the per-call cap', async () => {
    const buffers = [randomBytes(3), Buffer.alloc(0), randomBytes(writeCallBytes - 3), randomBytes(2 * writeCallBytes + 17), randomBytes(5)];
    const path = join(dir, 'file');
    const handle = await open(path, 'w');
    try {
      await writeAt(handle.fd, buffers, 4096);
    } finally {
      await handle.close();
    }
    const written = await readFile(path);
    expect(written.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(written.subarray(4096).equals(Buffer.concat(buffers))).toBe(true);
  });
});

describe('writeThroughStaging', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgf-direct-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const staging = alignedBuffer(4 * DIRECT_IO_ALIGNMENT, DIRECT_IO_ALIGNMENT);
  const cases: [string, Buffer[]][] = [
    ['less than a block', [randomBytes(100)]],
    ['exactly one staging buffer', [randomBytes(staging.length)]],
    ['whole blocks over several staging buffers', [randomBytes(3 * DIRECT_IO_ALIGNMENT), randomBytes(7 * DIRECT_IO_ALIGNMENT)]],
    ['pieces of odd sizes ending in a partial block', [randomBytes(24), Buffer.alloc(0), randomBytes(5 * DIRECT_IO_ALIGNMENT + 1), randomBytes(staging.length - 7), randomBytes(4099)]],
  ];
  for (const [name, buffers] of cases) {
    it(`writes ${name} byte for byte`, async () => {
      const path = join(dir, name.replace(/ /g, '-'));
      const handle = await open(path, 'wx');
      try {
        const directFd = await openDirect(path);
        // /tmp on tmpfs refuses O_DIRECT: the fallback (every byte through the page cache) is what runs there.
        if (directFd === undefined) await writeAt(handle.fd, buffers, 0);
        else {
          try {
            await writeThroughStaging(handle.fd, directFd, buffers, staging);
          } finally {
            closeSync(directFd);
          }
        }
      } finally {
        await handle.close();
      }
      expect((await readFile(path)).equals(Buffer.concat(buffers))).toBe(true);
    });
  }
});
