import { resolve } from 'node:path';
import { PgfError } from '../errors/index.js';
import { PosixStorage } from './posix.js';
import type { S3Settings } from './s3.js';
import type { Storage } from './storage.js';

export type { ListPage, ObjectInfo, Storage, StorageStats, WriteOptions } from './storage.js';
export type { S3Settings } from './s3.js';

/**
 * A directory path, or `s3://bucket/prefix` with its settings (endpoint, region, credentials,
 * timeouts, multipart sizes); the settings are ignored for a directory.
 */
export async function openStorage(location: string, s3: S3Settings = {}): Promise<Storage> {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(location);
  if (match) {
    // The AWS SDK takes about 250 ms to load: only S3 repositories pay for it.
    const { S3Storage } = await import('./s3.js');
    return new S3Storage({ ...s3, bucket: match[1]!, prefix: match[2]! });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new PgfError('USAGE', `unsupported repository location ${location}: use a directory or s3://bucket/prefix`);
  }
  return new PosixStorage(resolve(location));
}
