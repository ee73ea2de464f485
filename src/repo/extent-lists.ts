/**
 * Extent lists: the ordered extent ids of one file, an all-zero id standing for a hole. They are
 * content-addressed (SHA-256 of the list), so a file that did not change costs its manifest one
 * reference and the repository nothing.
 */
import { createHash } from 'node:crypto';
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { keys, readSealed, seal } from './objects.js';

const ID_BYTES = 32;
const hole = Buffer.alloc(ID_BYTES);

export function encodeExtentList(extents: readonly (Buffer | null)[]): Buffer {
  const out = Buffer.alloc(extents.length * ID_BYTES);
  extents.forEach((id, i) => (id ?? hole).copy(out, i * ID_BYTES));
  return out;
}

/**
 * The ids are views of `content`, not copies (a caller that keeps one past the list copies it), and
 * only an id starting with a zero byte is compared with the hole: a --delta restore decodes two lists
 * for each file it rewrites, and copying each id made that several times slower.
 */
export function decodeExtentList(content: Buffer): (Buffer | null)[] {
  const extents: (Buffer | null)[] = [];
  for (let at = 0; at < content.length; at += ID_BYTES) {
    const id = content.subarray(at, at + ID_BYTES);
    extents.push(content[at] !== 0 || !id.equals(hole) ? id : null);
  }
  return extents;
}

export function extentListId(encoded: Buffer): string {
  return createHash('sha256').update(encoded).digest('hex');
}

/** Writes the list unless an identical one is stored; returns its reference. */
export async function writeExtentList(storage: Storage, extents: readonly (Buffer | null)[]): Promise<string> {
  const encoded = encodeExtentList(extents);
  const id = extentListId(encoded);
  const key = keys.extentList(id);
  if ((await storage.stat(key)) === undefined) {
    try {
      await storage.write(key, await seal(encoded), { ifAbsent: true });
    } catch (err) {
      // Another writer stored the same list first: same content, same id.
      if (!(err instanceof PgfError && err.code === 'STORAGE_EXISTS')) throw err;
    }
  }
  return id;
}

export async function readExtentList(storage: Storage, id: string): Promise<(Buffer | null)[]> {
  const key = keys.extentList(id);
  const content = await readSealed(storage, key);
  if (extentListId(content) !== id) throw new PgfError('REPO_CORRUPT', `extent list ${key} does not match its name: run pgforever verify`);
  return decodeExtentList(content);
}
