/**
 * Which files a backup contains (DESIGN.md section 6, after PostgreSQL's own base backup rules):
 * everything under PGDATA and the tablespaces except transient state, which restore must not bring
 * back. Directories are kept, empty where their contents are transient.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export type EntryKind = 'file' | 'dir' | 'link';

export interface DataEntry {
  /** Path relative to PGDATA, '/'-separated; tablespace contents appear under `pg_tblspc/<oid>/`. */
  path: string;
  /** Absolute path to read from. */
  source: string;
  kind: EntryKind;
  size: number;
  mode: number;
  mtimeMs: number;
  linkTarget?: string;
  /** Set for relation segment files: pages are scanned and checksummed, not hashed blindly. */
  relation?: RelationSegment;
}

export interface RelationSegment {
  fork: 'main' | 'fsm' | 'vm' | 'init';
  /** Segment number within the fork (`16384.2` is segment 2); its first block is segment * blocks per segment. */
  segment: number;
}

/** Directories whose contents PostgreSQL recreates or never needs after a restore. */
const transientDirectories = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);

/** Files never copied: server state, and the label/map/signals that restore writes itself. */
const excludedFiles = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'backup_label.old',
  'tablespace_map',
  'tablespace_map.old',
  'recovery.signal',
  'standby.signal',
  'backup_manifest',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
]);

const relationFileName = /^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/;
const temporaryRelationName = /^t\d+_\d+/;

/** Directories that hold relation files: base/<db>, global, and <tablespace>/<version dir>/<db>. */
function holdsRelations(relativeDir: string): boolean {
  return /^base\/\d+$/.test(relativeDir) || relativeDir === 'global' || /^pg_tblspc\/\d+\/[^/]+\/\d+$/.test(relativeDir);
}

export function parseRelationFileName(name: string): RelationSegment | undefined {
  const match = relationFileName.exec(name);
  if (!match) return undefined;
  return { fork: (match[2] as RelationSegment['fork'] | undefined) ?? 'main', segment: match[3] ? Number(match[3]) : 0 };
}

async function statOrVanished(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    // Files may vanish while we walk (dropped relations, removed temp files): PostgreSQL's own base
    // backup skips them too, and WAL replay recreates what mattered.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function listOrVanished(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Walks PGDATA (following the tablespace links in pg_tblspc) and returns the entries to back up, in
 * a stable order: parents before children.
 */
export async function listDataFiles(pgdata: string): Promise<DataEntry[]> {
  const entries: DataEntry[] = [];

  async function walk(relativeDir: string, absoluteDir: string): Promise<void> {
    const names = await listOrVanished(absoluteDir);
    const inRelationDir = holdsRelations(relativeDir);
    // An unlogged relation has an init fork; its other forks are reset at startup, so skip them.
    const unlogged = new Set<string>();
    if (inRelationDir) {
      for (const name of names) {
        const match = relationFileName.exec(name);
        if (match?.[2] === 'init') unlogged.add(match[1]!);
      }
    }
    for (const name of names) {
      const relative = relativeDir ? `${relativeDir}/${name}` : name;
      const absolute = join(absoluteDir, name);
      if (excludedFiles.has(name) && relativeDir === '') continue;
      if (name === 'pg_internal.init' || name.startsWith('pgsql_tmp')) continue;
      const st = await statOrVanished(absolute);
      if (st === undefined) continue;
      const base = { path: relative, source: absolute, size: 0, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };

      if (st.isSymbolicLink()) {
        const target = await readlink(absolute);
        if (relativeDir === 'pg_tblspc') {
          entries.push({ ...base, kind: 'link', linkTarget: target });
          await walk(relative, target);
        } else {
          entries.push({ ...base, kind: 'link', linkTarget: target });
        }
        continue;
      }
      if (st.isDirectory()) {
        entries.push({ ...base, kind: 'dir' });
        if (relativeDir === '' && transientDirectories.has(name)) {
          // Keep pg_wal/archive_status: PostgreSQL expects it to exist.
          if (name === 'pg_wal') entries.push({ ...base, path: 'pg_wal/archive_status', source: join(absolute, 'archive_status'), kind: 'dir' });
          continue;
        }
        await walk(relative, absolute);
        continue;
      }
      if (!st.isFile()) continue;
      let relation: RelationSegment | undefined;
      if (inRelationDir) {
        if (temporaryRelationName.test(name)) continue;
        relation = parseRelationFileName(name);
        const oid = relationFileName.exec(name)?.[1];
        if (relation && oid !== undefined && unlogged.has(oid) && relation.fork !== 'init') continue;
      }
      entries.push({ ...base, kind: 'file', size: st.size, ...(relation ? { relation } : {}) });
    }
  }

  await walk('', pgdata);
  return entries;
}
