/**
 * One suite, two backends: a directory and a real S3-compatible server on loopback.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { PosixStorage } from '../../src/storage/posix.js';
import { S3Storage } from '../../src/storage/s3.js';
import { isPgfError } from '../../src/errors/index.js';
import { startS3Server, type S3Server } from '../support/s3server.js';
import { freePort } from '../support/postgres.js';

let s3: S3Server;
const dirs: string[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3?.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const backends: [string, () => Promise<Storage>][] = [
  [
    'posix',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'pgf-storage-'));
      dirs.push(dir);
      return openStorage(dir);
    },
  ],
  [
    's3',
    async () =>
      new S3Storage({
        bucket: s3.bucket,
        prefix: `suite-${randomBytes(4).toString('hex')}`,
        endpoint: s3.endpoint,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        multipartThreshold: 6 * 1024 * 1024,
        partSize: 5 * 1024 * 1024,
      }),
  ],
];

describe.each(backends)('%s storage', (_name, open) => {
  it('round-trips empty, small and multi-MiB objects and reads ranges', async () => {
    const storage = await open();
    const big = randomBytes(13 * 1024 * 1024);
    await storage.write('a/empty', Buffer.alloc(0));
    await storage.write('a/small', [Buffer.from('hello '), Buffer.from('world')]);
    await storage.write('b/big', big);
    expect((await storage.read('a/empty')).length).toBe(0);
    expect((await storage.read('a/small')).toString()).toBe('hello world');
    expect((await storage.read('b/big')).equals(big)).toBe(true);
    expect((await storage.readRange('b/big', 7 * 1024 * 1024 + 3, 1000)).equals(big.subarray(7 * 1024 * 1024 + 3, 7 * 1024 * 1024 + 1003))).toBe(true);
    await expect(storage.readRange('a/small', 5, 100)).rejects.toMatchObject({ code: 'STORAGE_IO' });
    expect(await storage.stat('b/big')).toMatchObject({ key: 'b/big', size: big.length });
    expect(await storage.stat('nope')).toBeUndefined();
    await expect(storage.read('nope')).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
    await storage.delete('a/small');
    await storage.delete('a/small');
    expect(await storage.stat('a/small')).toBeUndefined();
    await storage.close();
  });

  it('lists by prefix across pages, in key order', async () => {
    const storage = await open();
    const keys = Array.from({ length: 1205 }, (_, i) => `list/k${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => storage.write(k, Buffer.from(k))));
    await storage.write('listing-other', Buffer.from('x'));
    const first = await storage.listPage('list/');
    expect(first.continuation).toBeDefined();
    const seen: string[] = [];
    for await (const o of storage.list('list/')) seen.push(o.key);
    expect(seen).toEqual(keys);
    await storage.close();
  });

  it('lets exactly one of two racing ifAbsent writers win', async () => {
    const storage = await open();
    const results = await Promise.allSettled([storage.write('race', Buffer.from('one'), { ifAbsent: true }), storage.write('race', Buffer.from('two'), { ifAbsent: true })]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(isPgfError(loser.reason, 'STORAGE_EXISTS')).toBe(true);
    await storage.close();
  });
});

describe('failures', () => {
  it('a killed posix writer leaves nothing visible', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-storage-'));
    dirs.push(dir);
    const script = `
      import { PosixStorage } from ${JSON.stringify(new URL('../../dist/storage/posix.js', import.meta.url).pathname)};
      const s = new PosixStorage(${JSON.stringify(dir)});
      const parts = Array.from({ length: 400 }, () => Buffer.alloc(1 << 20, 7));
      process.stdout.write('writing\\n');
      await s.write('victim', parts);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    const started = await new Promise<boolean>((resolve) => {
      child.stdout.once('data', () => resolve(true));
      child.once('exit', () => resolve(false));
    });
    expect(started).toBe(true);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const storage = new PosixStorage(dir);
    expect(await storage.stat('victim')).toBeUndefined();
    const listed: string[] = [];
    for await (const o of storage.list('')) listed.push(o.key);
    expect(listed).toEqual([]);
    expect((await readdir(dir)).every((name) => name.includes('.pgf-tmp-'))).toBe(true);
  });

  it('an unreachable endpoint fails fast with STORAGE_UNREACHABLE', async () => {
    const port = await freePort();
    const storage = new S3Storage({ bucket: 'b', prefix: 'p', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'x', secretAccessKey: 'y', maxAttempts: 2 });
    await expect(storage.read('k')).rejects.toMatchObject({ code: 'STORAGE_UNREACHABLE' });
    await storage.close();
  });

  it('a hung endpoint fails with STORAGE_TIMEOUT instead of hanging', async () => {
    const sockets: Socket[] = [];
    const server: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const storage = new S3Storage({ bucket: 'b', prefix: 'p', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'x', secretAccessKey: 'y', maxAttempts: 1, requestTimeoutMs: 500 });
    await expect(storage.read('k')).rejects.toMatchObject({ code: 'STORAGE_TIMEOUT' });
    await storage.close();
    for (const socket of sockets) socket.destroy();
    server.close();
  });
});
