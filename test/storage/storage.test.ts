/**
 * The storage suite on a directory and on a real S3-compatible server on loopback, then what only
 * one backend can show: S3 timeouts, refused connections, credentials, checksums, and posix keys.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { crc32 } from 'node:zlib';
import { ChecksumMode, HeadObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPgfError } from '../../src/errors/index.js';
import { openStorage, type S3Settings } from '../../src/storage/index.js';
import { S3Storage } from '../../src/storage/s3.js';
import { freePort } from '../support/postgres.js';
import { startS3Server, type S3Server } from '../support/s3server.js';
import { describeStorage, type FreshStorage } from './storage.suite.js';

const MiB = 1024 * 1024;
let s3: S3Server;
let admin: S3Client;
const dirs: string[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  admin = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: s3 });
});
afterAll(async () => {
  admin?.destroy();
  await s3?.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function freshDirectory(): Promise<FreshStorage> {
  const dir = await mkdtemp(join(tmpdir(), 'pgf-storage-'));
  dirs.push(dir);
  return {
    storage: await openStorage(dir),
    location: dir,
    settings: {},
    leftovers: async () => (await readdir(dir, { recursive: true })).filter((name) => name.includes('.pgf-tmp-')).length,
  };
}

function s3Settings(): S3Settings {
  return { endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
}

async function freshBucketPrefix(settings: S3Settings = {}): Promise<FreshStorage> {
  const prefix = `suite-${randomBytes(4).toString('hex')}`;
  const location = `s3://${s3.bucket}/${prefix}`;
  const all = { ...s3Settings(), multipartThreshold: 5 * MiB, partSize: 5 * MiB, ...settings };
  return {
    storage: await openStorage(location, all),
    location,
    settings: all,
    leftovers: async () => (await admin.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `${prefix}/` }))).Uploads?.length ?? 0,
  };
}

describeStorage('posix', () => ({ fresh: freshDirectory, multipartSize: 5 * MiB }));
describeStorage('s3', () => ({ fresh: () => freshBucketPrefix(), multipartSize: 5 * MiB }));

describe('s3 storage against the real server', () => {
  it('sends a CRC32 with every write, which the server verified and kept', async () => {
    const { storage, location } = await freshBucketPrefix();
    const prefix = location.slice(`s3://${s3.bucket}/`.length);
    const data = randomBytes(1000);
    await storage.write('summed', data);
    const head = await admin.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/summed`, ChecksumMode: ChecksumMode.ENABLED }));
    const expected = Buffer.alloc(4);
    expected.writeUInt32BE(crc32(data));
    expect(head.ChecksumCRC32).toBe(expected.toString('base64'));
    await storage.close();
  });

  it('counts every request of a multipart upload', async () => {
    const { storage } = await freshBucketPrefix();
    await storage.write('parts', randomBytes(12 * MiB));
    // create, three parts, complete
    expect(storage.stats).toMatchObject({ put: 5, bytesOut: 12 * MiB });
    await storage.close();
  });

  it('refuses ifAbsent on an existing key by HEAD where conditional writes are off', async () => {
    const { storage } = await freshBucketPrefix({ conditionalWrites: false });
    await storage.write('once', Buffer.from('1'), { ifAbsent: true });
    await expect(storage.write('once', Buffer.from('2'), { ifAbsent: true })).rejects.toMatchObject({ code: 'STORAGE_EXISTS' });
    expect((await storage.read('once')).toString()).toBe('1');
    await storage.close();
  });

  it('reports wrong credentials as STORAGE_DENIED without the secret anywhere', async () => {
    const secret = `wrong-${randomBytes(8).toString('hex')}`;
    const storage = await openStorage(`s3://${s3.bucket}/denied`, { ...s3Settings(), secretAccessKey: secret, maxAttempts: 1 });
    const err = await storage.write('k', Buffer.from('x')).catch((e: unknown) => e);
    expect(isPgfError(err, 'STORAGE_DENIED')).toBe(true);
    expect((err as Error).message).not.toContain(secret);
    expect(inspect(storage, { depth: 10 })).not.toContain(secret);
    await storage.close();
  });

  it('reports a missing bucket as STORAGE_NOT_FOUND', async () => {
    const storage = await openStorage('s3://no-such-bucket/p', { ...s3Settings(), maxAttempts: 1 });
    await expect(storage.read('k')).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND', message: expect.stringContaining('bucket') });
    await storage.close();
  });

  it('fails with STORAGE_UNREACHABLE when nothing listens on the endpoint', async () => {
    const port = await freePort();
    const storage = new S3Storage({ bucket: 'b', prefix: 'p', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'x', secretAccessKey: 'y', maxAttempts: 2 });
    await expect(storage.read('k')).rejects.toMatchObject({ code: 'STORAGE_UNREACHABLE' });
    expect(storage.stats.get).toBe(2);
    await storage.close();
  });

  it('fails with STORAGE_TIMEOUT, reading or writing, when the endpoint accepts and never answers', async () => {
    const sockets: Socket[] = [];
    const hung = createServer((socket) => {
      sockets.push(socket);
      socket.resume();
    });
    await new Promise<void>((done) => hung.listen(0, '127.0.0.1', done));
    const { port } = hung.address() as { port: number };
    const storage = new S3Storage({ bucket: 'b', prefix: 'p', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'x', secretAccessKey: 'y', maxAttempts: 1, idleTimeoutMs: 300 });
    await expect(storage.read('k')).rejects.toMatchObject({ code: 'STORAGE_TIMEOUT' });
    await expect(storage.write('k', randomBytes(100_000))).rejects.toMatchObject({ code: 'STORAGE_TIMEOUT' });
    await storage.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((done) => hung.close(done));
  });
});

describe('posix storage keys', () => {
  it('refuses keys that would leave the directory or pose as temporaries', async () => {
    const { storage } = await freshDirectory();
    for (const key of ['../escape', 'a/../../b', '/abs', 'a//b', 'a/', '', 'x.pgf-tmp-0']) {
      await expect(storage.write(key, Buffer.from('x'))).rejects.toMatchObject({ code: 'STORAGE_IO' });
    }
  });

  it('keeps a bounded number of objects open for range reads, and closes them with the storage', async () => {
    const openFds = async () => (await readdir('/proc/self/fd')).length;
    const { storage } = await freshDirectory();
    const objects = Array.from({ length: 80 }, () => randomBytes(1000));
    for (const [i, data] of objects.entries()) await storage.write(`packs/${i}`, data);
    const before = await openFds();
    // Many ranges of many objects at once, as restore workers read them.
    await Promise.all(
      Array.from({ length: 400 }, async (_, j) => {
        const i = (j * 7) % objects.length;
        const bytes = await storage.readRange(`packs/${i}`, j % 900, 50, { keepOpen: true });
        expect(bytes.equals(objects[i]!.subarray(j % 900, (j % 900) + 50))).toBe(true);
      }),
    );
    expect(await openFds()).toBeLessThanOrEqual(before + 32);
    await storage.close();
    expect(await openFds()).toBeLessThanOrEqual(before);
  });

  it('makes a directory again when it was removed under a long-lived process', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgf-storage-'));
    dirs.push(dir);
    const storage = await openStorage(dir);
    await storage.write('wal/00000001/a', Buffer.from('a'));
    await rm(join(dir, 'wal'), { recursive: true });
    await storage.write('wal/00000001/b', Buffer.from('b'), { ifAbsent: true });
    expect((await storage.read('wal/00000001/b')).toString()).toBe('b');
  });
});
