/**
 * The two storage backends repository-level tests run on: a fresh directory, and a fresh prefix in a
 * bucket of a real S3-compatible server on loopback. Registers the hooks that start the server and
 * remove the directories; call it at the top level of a test file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { S3Storage } from '../../src/storage/s3.js';
import { startS3Server, type S3Server } from './s3server.js';

export function storageBackends(prefix: string): [string, () => Promise<Storage>][] {
  const dirs: string[] = [];
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  afterAll(async () => {
    await s3?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  return [
    [
      'posix',
      async () => {
        const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
        dirs.push(dir);
        return openStorage(dir);
      },
    ],
    [
      's3',
      async () =>
        new S3Storage({ bucket: s3.bucket, prefix: `${prefix}-${randomBytes(4).toString('hex')}`, endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }),
    ],
  ];
}
