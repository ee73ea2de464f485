/**
 * WAL objects in the repository. Keys: `wal/<timeline>/<name>.zst` for segments, `.partial`
 * segments and backup history files, `wal/<timeline>.history` for timeline history files.
 *
 * Every object is two frames back to back:
 *   1. the description, JSON: `{ format: 1, name, size, zeroFrom?, summary? }` (summary.ts);
 *   2. the file's bytes, only up to `zeroFrom` when given: a segment's trailing zeros (everything
 *      after a switch, see zero-tail.ts) are stored as nothing and restored as zeros.
 * The description comes first so that a reader of descriptions only fetches a few hundred bytes.
 *
 * A segment pushed while a backlog drained has no summary in its description: the archive daemon
 * stores it later beside the segment, as `wal/<timeline>/<name>.summary.zst` (one frame of JSON
 * `{ format: 1, name, summary }`).
 *
 * Objects are written once (ifAbsent). Pushing a name again succeeds only with identical content;
 * different content fails with WAL_CONFLICT and overwrites nothing.
 */
import { PgfError, isPgfError } from '../errors/index.js';
import { compressFrame, decompressFrame, readFrameHeader, FRAME_HEADER_BYTES } from '../native/index.js';
import { keys, type Repository } from '../repo/index.js';
import { padWithZeros } from './zero-tail.js';
import type { WalFileName } from './names.js';
import type { StoredWalSummary } from './summary.js';

export const walObjectFormat = 1;

/**
 * zstd level of WAL objects, whatever the level for extents: on WAL, level 1 compressed as small as
 * level 3 and 1.8x faster (measured on 16 MiB segments of a bulk insert: 37 ms and 5.53 MiB at
 * level 1, 65 ms and 5.68 MiB at level 3), and compression is what bounds the archiving rate.
 * A segment whose literals zstd's entropy coding barely shrinks is written at -1 instead (the
 * native `wal::compression_level` decides on a sample).
 */
export const walCompressLevel = 1;

export interface WalObjectDescription {
  format: number;
  name: string;
  /** Length of the file as PostgreSQL wrote it. */
  size: number;
  /** Bytes from here to `size` are zeros and not stored. */
  zeroFrom?: number;
  /** Segments and .partial files: what their records hold, when the reader could read them. */
  summary?: StoredWalSummary;
}

export type StoreOutcome = 'stored' | 'already-archived';

export function walObjectKey(file: WalFileName): string {
  return file.kind === 'history' ? keys.timelineHistory(file.timeline) : keys.walSegment(file.timeline, file.name);
}

/** The object's two frames: the description of a file of `size` bytes, then `data` (the frame of its bytes up to `zeroFrom`). */
async function withDescription(about: { name: string; size: number; zeroFrom: number; summary: StoredWalSummary | undefined }, data: Buffer): Promise<[Buffer, Buffer]> {
  const description: WalObjectDescription = {
    format: walObjectFormat,
    name: about.name,
    size: about.size,
    ...(about.zeroFrom < about.size ? { zeroFrom: about.zeroFrom } : {}),
    ...(about.summary !== undefined ? { summary: about.summary } : {}),
  };
  return [await compressFrame(Buffer.from(JSON.stringify(description)), walCompressLevel), data];
}

function damaged(key: string, what: string, cause?: unknown): PgfError {
  return new PgfError('REPO_CORRUPT', `archived WAL object ${key} is damaged (${what}): run pgforever verify`, { cause });
}

/** The file's original bytes from its object; every frame CRC is checked on the way. */
export async function decodeWalObject(key: string, object: Buffer): Promise<{ description: WalObjectDescription; content: Buffer }> {
  let description: WalObjectDescription;
  let data: Buffer;
  try {
    const headLength = readFrameHeader(object.subarray(0, FRAME_HEADER_BYTES)).frameLength;
    description = JSON.parse((await decompressFrame(object.subarray(0, headLength))).toString('utf8')) as WalObjectDescription;
    data = await decompressFrame(object.subarray(headLength));
  } catch (err) {
    throw damaged(key, isPgfError(err) ? err.message : 'unreadable description', err);
  }
  if (description.format !== walObjectFormat) {
    throw new PgfError('REPO_FORMAT', `archived WAL object ${key} has format ${String(description.format)}; this pgforever reads format ${walObjectFormat}: upgrade pgforever`);
  }
  const stored = description.zeroFrom ?? description.size;
  if (data.length !== stored || stored > description.size) throw damaged(key, `${data.length} bytes stored, its description says ${stored} of ${description.size}`);
  return { description, content: stored === description.size ? data : padWithZeros(data, description.size) };
}

/** Stores a history or backup history file under its name, durably, once. */
export async function storeWalFile(repo: Repository, file: WalFileName, content: Buffer): Promise<StoreOutcome> {
  const object = await withDescription({ name: file.name, size: content.length, zeroFrom: content.length, summary: undefined }, await compressFrame(content, walCompressLevel));
  return storeObject(repo, file, object, () => Promise.resolve(content));
}

/**
 * Stores a segment already compressed into `frame` (its bytes up to `zeroFrom` of `size`), durably,
 * once. `content` reads the file again, for the rare push of a name the repository already has.
 */
export async function storeCompressedSegment(
  repo: Repository,
  file: WalFileName,
  compressed: { size: number; zeroFrom: number; frame: Buffer; summary: StoredWalSummary | undefined },
  content: () => Promise<Buffer>,
): Promise<StoreOutcome> {
  const object = await withDescription({ name: file.name, ...compressed }, compressed.frame);
  return storeObject(repo, file, object, content);
}

async function storeObject(repo: Repository, file: WalFileName, object: [Buffer, Buffer], content: () => Promise<Buffer>): Promise<StoreOutcome> {
  const key = walObjectKey(file);
  try {
    await repo.storage.write(key, object, { ifAbsent: true });
    return 'stored';
  } catch (err) {
    if (!isPgfError(err, 'STORAGE_EXISTS')) throw err;
  }
  const stored = await loadWalFile(repo, file);
  if (stored?.equals(await content())) return 'already-archived';
  throw new PgfError(
    'WAL_CONFLICT',
    `${file.name} is already archived in ${repo.location} with different content; nothing was overwritten. Two clusters may share this repository, or the server's WAL was rewritten: investigate before archiving again`,
  );
}

/** The stored file as PostgreSQL wrote it, or undefined when the repository does not have it. */
export async function loadWalFile(repo: Repository, file: WalFileName): Promise<Buffer | undefined> {
  const key = walObjectKey(file);
  let object: Buffer;
  try {
    object = await repo.storage.read(key);
  } catch (err) {
    if (isPgfError(err, 'STORAGE_NOT_FOUND')) return undefined;
    throw err;
  }
  const { description, content } = await decodeWalObject(key, object);
  if (description.name !== file.name) throw damaged(key, `it holds ${description.name}`);
  return content;
}

/** Most descriptions fit in one read of this size; longer ones take a second. */
const descriptionReadBytes = 64 * 1024;

/** The description frame of a stored WAL object (`size` from its listing), without its data. */
export async function loadWalDescription(repo: Repository, key: string, size: number): Promise<WalObjectDescription> {
  let head = await repo.storage.readRange(key, 0, Math.min(size, descriptionReadBytes));
  try {
    const length = readFrameHeader(head.subarray(0, FRAME_HEADER_BYTES)).frameLength;
    if (length > head.length) head = await repo.storage.readRange(key, 0, length);
    return JSON.parse((await decompressFrame(head.subarray(0, length))).toString('utf8')) as WalObjectDescription;
  } catch (err) {
    throw damaged(key, isPgfError(err) ? err.message : 'unreadable description', err);
  }
}

interface WalSummaryObject {
  format: number;
  name: string;
  summary: StoredWalSummary;
}

/** Stores the summary of a segment stored without one, durably, once (a second store keeps the first). */
export async function storeWalSummary(repo: Repository, file: WalFileName, summary: StoredWalSummary): Promise<void> {
  const object: WalSummaryObject = { format: walObjectFormat, name: file.name, summary };
  try {
    await repo.storage.write(keys.walSummary(file.timeline, file.name), await compressFrame(Buffer.from(JSON.stringify(object)), walCompressLevel), { ifAbsent: true });
  } catch (err) {
    if (!isPgfError(err, 'STORAGE_EXISTS')) throw err;
  }
}

/** The summary stored beside a segment (see storeWalSummary), or undefined when there is none. */
export async function loadWalSummary(repo: Repository, file: WalFileName): Promise<StoredWalSummary | undefined> {
  const key = keys.walSummary(file.timeline, file.name);
  let object: WalSummaryObject;
  try {
    object = JSON.parse((await decompressFrame(await repo.storage.read(key))).toString('utf8')) as WalSummaryObject;
  } catch (err) {
    if (isPgfError(err, 'STORAGE_NOT_FOUND')) return undefined;
    throw damaged(key, isPgfError(err) ? err.message : 'unreadable summary', err);
  }
  if (object.format !== walObjectFormat) {
    throw new PgfError('REPO_FORMAT', `WAL summary object ${key} has format ${String(object.format)}; this pgforever reads format ${walObjectFormat}: upgrade pgforever`);
  }
  if (object.name !== file.name) throw damaged(key, `it summarises ${object.name}`);
  return object.summary;
}
