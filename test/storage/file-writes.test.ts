import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAt, writeCallBytes } from '../../src/storage/file-writes.js';

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
