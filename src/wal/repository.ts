/**
 * WAL objects in the repository: every file is stored as one frame under `wal/<timeline>/`.
 * Objects are written once: pushing the same name again succeeds only with identical content.
 */
import { PgfError } from '../errors/index.js';
import { compressFrame, decompressFrame } from '../native/index.js';
import { keys, type Repository } from '../repo/index.js';
import type { WalFileName } from './names.js';

export function walObjectKey(file: WalFileName): string {
  return file.kind === 'history' ? keys.timelineHistory(file.timeline) : keys.walSegment(file.timeline, file.name);
}

export type StoreOutcome = 'stored' | 'already-archived';

export async function storeWalFile(repo: Repository, file: WalFileName, content: Buffer, level: number): Promise<StoreOutcome> {
  const key = walObjectKey(file);
  const frame = await compressFrame(content, level);
  try {
    await repo.storage.write(key, frame, { ifAbsent: true });
    return 'stored';
  } catch (err) {
    if (!(err instanceof PgfError && err.code === 'STORAGE_EXISTS')) throw err;
  }
  const stored = await decompressFrame(await repo.storage.read(key)).catch(() => undefined);
  if (stored?.equals(content)) return 'already-archived';
  throw new PgfError(
    'WAL_CONFLICT',
    `${file.name} is already archived in ${repo.location} with different content; nothing was overwritten. Two clusters may share this repository, or the server's WAL was rewritten: investigate before archiving again`,
  );
}

/** The stored content, or undefined when the repository does not have it. */
export async function loadWalFile(repo: Repository, file: WalFileName): Promise<Buffer | undefined> {
  const key = walObjectKey(file);
  let frame: Buffer;
  try {
    frame = await repo.storage.read(key);
  } catch (err) {
    if (err instanceof PgfError && err.code === 'STORAGE_NOT_FOUND') return undefined;
    throw err;
  }
  try {
    return await decompressFrame(frame);
  } catch (err) {
    throw new PgfError('REPO_CORRUPT', `archived ${file.name} (${key}) is damaged: ${(err as Error).message}; run pgforever verify`, { cause: err });
  }
}
