import { resolve } from 'node:path';
import { PgfError } from '../errors/index.js';
import { PosixStorage } from './posix.js';
import type { Storage } from './storage.js';

export type { ListPage, ObjectInfo, Storage, WriteOptions } from './storage.js';

/** A directory path, or `s3://bucket/prefix`. */
export async function openStorage(location: string): Promise<Storage> {
  if (location.startsWith('s3://')) {
    throw new PgfError('USAGE', `S3 repositories are not available in this build yet: use a directory for --repo (${location})`);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new PgfError('USAGE', `unsupported repository location ${location}: use a directory or s3://bucket/prefix`);
  }
  return new PosixStorage(resolve(location));
}
