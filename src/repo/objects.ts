/**
 * Object keys and the envelope every repository object is stored in. An envelope is a native frame
 * (magic, version, lengths, CRC-32C of the content): a flipped byte anywhere is caught on read. An
 * encrypted object will carry another magic with a key id in front of its frame, so switching
 * encryption on later changes no existing object.
 */
import { PgfError, isPgfError } from '../errors/index.js';
import { compressFrame, decompressFrame } from '../native/index.js';
import type { Storage } from '../storage/index.js';

export const keys = {
  config: 'pgforever.json',
  hashKey: (id: string) => `keys/${id}`,
  pack: (id: string) => `packs/${id.slice(0, 2)}/${id}`,
  packs: 'packs/',
  indexDelta: (id: string) => `index/${id}`,
  index: 'index/',
  extentList: (id: string) => `lists/${id.slice(0, 2)}/${id}`,
  lists: 'lists/',
  manifest: (backupId: string) => `backups/${backupId}.json.zst`,
  manifests: 'backups/',
  lease: (name: string) => `locks/${name}.json`,
  leases: 'locks/',
  walSegment: (timeline: string, segment: string) => `wal/${timeline}/${segment}.zst`,
  walSummary: (timeline: string, segment: string) => `wal/${timeline}/${segment}.summary.zst`,
  walTimeline: (timeline: string) => `wal/${timeline}/`,
  timelineHistory: (timeline: string) => `wal/${timeline}.history`,
  wal: 'wal/',
  gcMark: (id: string) => `gc/${id}`,
  gcMarks: 'gc/',
} as const;

/** Stored content compresses well and is small (lists, indexes, manifests): a middling level. */
const envelopeLevel = 6;

export async function seal(content: Buffer): Promise<Buffer> {
  return compressFrame(content, envelopeLevel);
}

/** The content of an envelope; a damaged one is REPO_CORRUPT naming the object. */
export async function unseal(key: string, envelope: Buffer): Promise<Buffer> {
  try {
    return await decompressFrame(envelope);
  } catch (err) {
    if (isPgfError(err)) {
      throw new PgfError('REPO_CORRUPT', `repository object ${key} is damaged (${err.message}): run pgforever verify`, { cause: err });
    }
    throw err;
  }
}

export async function readSealed(storage: Storage, key: string): Promise<Buffer> {
  return unseal(key, await storage.read(key));
}

export async function readSealedJson<T>(storage: Storage, key: string): Promise<T> {
  const content = await readSealed(storage, key);
  try {
    return JSON.parse(content.toString('utf8')) as T;
  } catch (err) {
    throw new PgfError('REPO_CORRUPT', `repository object ${key} is not valid JSON: run pgforever verify`, { cause: err });
  }
}

export async function writeSealedJson(storage: Storage, key: string, value: unknown, ifAbsent = false): Promise<void> {
  await storage.write(key, await seal(Buffer.from(JSON.stringify(value))), { ifAbsent });
}
