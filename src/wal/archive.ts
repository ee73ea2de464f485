/**
 * archive-push and archive-get as PostgreSQL's archive_command and restore_command run them.
 * Success is reported only once the file is durable in the repository (Storage.write resolves
 * after fsync or a completed PUT).
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PgfError } from '../errors/index.js';
import type { Repository } from '../repo/index.js';
import { parseWalFileName } from './names.js';
import { loadWalFile, storeWalFile, type StoreOutcome } from './repository.js';
import { checkSegmentHeader } from './segment-header.js';

export async function pushWalFile(repo: Repository, path: string, level: number): Promise<StoreOutcome> {
  const name = basename(path);
  const file = parseWalFileName(name);
  if (file === undefined) {
    throw new PgfError('WAL_INVALID', `${name} is not a WAL segment, history or backup history file name: archive_command must pass %p`);
  }
  let content: Buffer;
  try {
    content = await readFile(path);
  } catch (err) {
    throw new PgfError('WAL_NOT_FOUND', `cannot read ${path}: ${(err as Error).message} (archive_command runs in the data directory and must pass %p)`, { cause: err });
  }
  if (file.kind === 'segment' || file.kind === 'partial') {
    checkSegmentHeader(content, {
      name,
      systemIdentifier: repo.config.systemIdentifier,
      pgMajor: repo.config.pgMajor,
      segmentSize: repo.config.walSegmentSize,
    });
  }
  return storeWalFile(repo, file, content, level);
}

/** Writes the file to `destination` atomically; false when the repository does not have it. */
export async function getWalFile(repo: Repository, name: string, destination: string): Promise<boolean> {
  const file = parseWalFileName(name);
  if (file === undefined) return false;
  const content = await loadWalFile(repo, file);
  if (content === undefined) return false;
  if (file.kind === 'segment') {
    checkSegmentHeader(content, { name, systemIdentifier: repo.config.systemIdentifier, pgMajor: repo.config.pgMajor, segmentSize: repo.config.walSegmentSize });
  }
  const temporary = join(dirname(destination), `.${basename(destination)}.pgf-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, destination);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
  return true;
}
