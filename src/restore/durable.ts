/**
 * Makes a restored directory durable in one pass at the end, as pg_basebackup does: files are
 * written without a flush each (the kernel writes them back while later files are written), then
 * every file and directory is fsynced, files in parallel, directories after their contents.
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mapLimit } from '../concurrency/map-limit.js';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Every regular file and directory under `root` (symbolic links are not followed), deepest directories first. */
async function walk(root: string, files: string[], dirs: string[]): Promise<void> {
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) await walk(path, files, dirs);
    else if (entry.isFile()) files.push(path);
  }
  dirs.push(root);
}

/** Flushes every file and directory under each root (the data directory and tablespace locations). */
export async function syncTrees(roots: readonly string[], parallel: number): Promise<void> {
  const files: string[] = [];
  const dirs: string[] = [];
  for (const root of roots) await walk(root, files, dirs);
  await mapLimit(files, parallel, fsyncPath);
  for (const dir of dirs) await fsyncPath(dir);
}
