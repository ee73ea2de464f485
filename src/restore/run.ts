/**
 * `pgforever restore`: picks the backup, writes its files (extents in place, holes for zeros),
 * tablespaces (recorded or remapped locations), backup_label, tablespace_map and the recovery
 * settings, and writes global/pg_control last, so a directory whose restore was interrupted cannot
 * be started by mistake.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { lstatSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Settings } from '../config/index.js';
import { openStorage } from '../storage/index.js';
import { Repository, backupStartOf, type BackupManifest, type ExtentReader, type ManifestFile } from '../repo/index.js';
import { formatLsn, parseLsn, walSegmentName, type Lsn } from '../pg/lsn.js';
import { FileRestore, restoreFile, type ExtentSource, type FileRestoreResult } from './file.js';
import { renderBackupManifest, type ManifestFile as PgManifestFile } from './backup-manifest.js';
import { EXTENT_BYTES, alignedBuffer, crc32cAppend } from '../native/index.js';
import { DIRECT_IO_ALIGNMENT } from '../storage/file-writes.js';
import { parseTargetTime, withRecoverySettings, type RecoveryOptions, type RecoveryTarget } from './recovery.js';
import { firstFound } from '../concurrency/first-found.js';
import { mapLimit } from '../concurrency/map-limit.js';
import { readAhead } from '../concurrency/read-ahead.js';
import { isoUtc } from '../time/utc.js';

export interface RestoreRequest {
  pgdata: string;
  set?: string;
  target: RecoveryTarget;
  action?: 'promote' | 'pause' | 'shutdown';
  timeline?: string;
  standby: boolean;
  delta: boolean;
  /** Tablespace oid -> new location. */
  tablespaceMap: Map<number, string>;
  /** Restore only these databases (by name); the others' files become empty sparse files. */
  dbInclude: string[];
  restoreCommand: string;
  /**
   * Called once with the segment of the backup's redo point, which recovery replays first, so that
   * what restore_command uses can be made ready while the restore ends: once every file has been
   * opened (pg_wal exists by then) and the rest is mostly waiting on the disk, or, with --delta,
   * once the restore is done.
   */
  prefetchWal?: (pgdata: string, segment: string) => void;
}

export interface RestoreSummary {
  backup: string;
  pgdata: string;
  files: number;
  bytesWritten: number;
  extentsWritten: number;
  extentsKept: number;
  /** --delta: files left alone because their size and mtime are the backup's. */
  filesKept: number;
  filesRemoved: number;
  durationMs: number;
  requests: number;
}

const controlFile = 'global/pg_control';
/** Extents fetched and written per batch of a file: 8 MiB of raw bytes per worker. */
const restoreBatchExtents = 64;

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

async function serverRunningIn(dir: string): Promise<number | undefined> {
  const pidFile = await readFile(join(dir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number(pidFile?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/**
 * PostgreSQL starts only on a data directory its own user owns (mode 0700 or 0750): restoring into
 * someone else's directory would leave files neither side can use.
 */
async function checkOwner(pgdata: string): Promise<void> {
  const uid = process.geteuid?.();
  if (uid === undefined) return;
  const owner = await stat(pgdata).then(
    (s) => s.uid,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  if (owner !== undefined && owner !== uid) {
    throw new PgfError('RESTORE_TARGET_DIR', `${pgdata} belongs to uid ${owner}, not to this user (uid ${uid}): run the restore as the user PostgreSQL runs as (e.g. sudo -u postgres)`);
  }
}

/**
 * What is at `path` now, or undefined when it cannot be lstat'ed (missing, ENOTDIR, EACCES...): a
 * --delta restore then writes the file whole. Synchronous: on ext4 here, 976 lstat calls took
 * 14-18 ms with the page cache dropped and 2-5 ms warm, where promises (sharing libuv's four
 * threads with the index load) took 36 ms and 15-24 ms.
 */
function localFile(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/**
 * A --delta restore trusts a local file whose size and modification time are those a backup
 * recorded for it: restore gives every file the source's mtime, PostgreSQL changes it with every
 * write, and a backup read the file after taking its mtime, so a file written during or after the
 * backup shows another one. The local content is then that backup's: the target backup's (nothing
 * to do) or another's (its extent list says what is there, without reading the file). Only with
 * sub-second timestamps (a second-granular filesystem could hide a write in the same second).
 */
function recordedAs(local: Stats | undefined, record: { size: number; mtimeMs: number }): boolean {
  return local !== undefined && local.isFile() && record.mtimeMs % 1000 !== 0 && local.size === record.size && Math.abs(local.mtimeMs - record.mtimeMs) < 0.001;
}

/** Whether `manifest` finished before the target (any backup does for targets known only to WAL). */
function finishedBefore(manifest: BackupManifest, target: RecoveryTarget): boolean {
  if (target.kind === 'time') return Date.parse(manifest.stopTime) <= parseTargetTime(target.value).ms;
  if (target.kind === 'lsn') return parseLsn(manifest.stopLsn) <= parseLsn(target.value);
  return true;
}

/**
 * The newest backup that finished before the target. Manifests are read newest first, only as far
 * as the choice needs: a repository may keep hundreds of backups, each with a file list, and a
 * restore should not wait on all of them. For a time target, backups that started after it are
 * passed over unread: ids are start times, and a backup finishes after it starts, both on
 * PostgreSQL's clock (unless that clock steps back during a backup).
 */
export async function chooseBackup(ids: readonly string[], manifestOf: (id: string) => Promise<BackupManifest>, target: RecoveryTarget): Promise<BackupManifest> {
  const oldestId = ids[0];
  if (oldestId === undefined) throw new PgfError('RESTORE_NO_BACKUP', 'the repository holds no backup: run pgforever backup first');
  let end = ids.length;
  if (target.kind === 'time') {
    const at = parseTargetTime(target.value).ms;
    while (end > 0 && (backupStartOf(ids[end - 1]!) ?? -Infinity) > at) end -= 1;
  }
  const chosen = await firstFound(ids.slice(0, end).reverse(), async (id) => {
    const manifest = await manifestOf(id);
    return finishedBefore(manifest, target) ? manifest : undefined;
  });
  if (chosen !== undefined) return chosen;
  const oldest = await manifestOf(oldestId);
  const what = target.kind === 'time' ? `target time ${target.value}` : target.kind === 'lsn' ? `target LSN ${target.value}` : 'the target';
  throw new PgfError('RESTORE_TARGET', `${what} is before the oldest backup finished: backups cover ${oldest.stopTime} (${oldest.stopLsn}) onwards`);
}

/** Where the WAL of the backup a directory was last restored from starts, by the backup_manifest restore wrote there. */
async function restoredWalStart(pgdata: string): Promise<{ timeline: number; startLsn: Lsn } | undefined> {
  try {
    const handle = await open(join(pgdata, 'backup_manifest'), 'r');
    try {
      // WAL-Ranges come after the file list, at the end: a cluster of many files has a long manifest.
      const { size } = await handle.stat();
      const tail = Buffer.alloc(Math.min(size, 64 * 1024));
      const { bytesRead } = await handle.read(tail, 0, tail.length, size - tail.length);
      const match = /"WAL-Ranges":\s*\[\s*\{\s*"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)"/.exec(tail.toString('utf8', 0, bytesRead));
      return match === null ? undefined : { timeline: Number(match[1]), startLsn: parseLsn(match[2]!) };
    } finally {
      await handle.close();
    }
  } catch {
    // No manifest, or one that cannot be read: the restore compares with every backup instead.
    return undefined;
  }
}

/**
 * The other backups whose file records a --delta restore compares local files with. In a directory
 * pgforever restored, the backup_manifest it wrote names the backup restored: every file untouched
 * since is as that backup recorded it, and one PostgreSQL changed since matches no backup's record.
 * That backup (looked for newest first) and the two newest are then enough, however many the
 * repository keeps; any other directory is compared with every backup. Comparing with fewer only
 * means rewriting more: a file is trusted by its size and sub-second mtime, whichever record has
 * them. So a manifest that cannot be read (expired meanwhile, damaged) is left out, not an error.
 */
export async function deltaReferences(pgdata: string, ids: readonly string[], manifestOf: (id: string) => Promise<BackupManifest>, chosen: string): Promise<BackupManifest[]> {
  const readable = (id: string) => manifestOf(id).catch(() => undefined);
  const read = async (some: readonly string[]) => (await mapLimit(some, 8, readable)).filter((m): m is BackupManifest => m !== undefined);
  const others = ids.filter((id) => id !== chosen);
  const restored = await restoredWalStart(pgdata);
  const found =
    restored === undefined
      ? undefined
      : await firstFound([...ids].reverse(), async (id) => {
          const manifest = await readable(id);
          return manifest?.timeline === restored.timeline && parseLsn(manifest.startLsn) === restored.startLsn ? manifest : undefined;
        });
  if (found === undefined) return read(others);
  return read([...new Set([...others.slice(-2), found.id])].filter((id) => id !== chosen));
}

/**
 * Each backup's first WAL segment, read a few manifests at a time and keeping none: a repository may
 * hold hundreds of backups, each manifest with the cluster's file list.
 */
async function backupWalStarts(repo: Repository, ids: readonly string[]): Promise<string[]> {
  return mapLimit(ids, 8, async (id) => (await repo.readManifest(id)).walStart);
}

/** Refuses a time or LSN target past the newest archived WAL: recovery could never reach it. */
async function checkTargetArchived(repo: Repository, target: RecoveryTarget): Promise<void> {
  if (target.kind !== 'time' && target.kind !== 'lsn') return;
  const { archivedSegments, lastArchivedTransaction, newestArchivedSegment } = await import('../wal/positions.js');
  const segments = await archivedSegments(repo);
  if (target.kind === 'time') {
    // Times are kept to the millisecond: only a target past the last one's millisecond is refused.
    const last = await lastArchivedTransaction(repo, segments);
    if (last !== undefined && parseTargetTime(target.value).ms > Date.parse(last.time)) {
      throw new PgfError(
        'RESTORE_TARGET',
        `target time ${target.value} is beyond the archived WAL: the last archived transaction ended at ${last.time} (LSN ${last.lsn}, segment ${last.segment}), and recovery stops only at a transaction that ended after the target; pick an earlier time, or leave out the target to recover all archived WAL`,
      );
    }
  }
  const newest = await newestArchivedSegment(repo, segments);
  const window = newest ? `the recoverable window ends with segment ${newest.name} (stored ${isoUtc(newest.storedAt.getTime())}, up to LSN ${formatLsn(newest.endLsn)})` : 'no WAL is archived';
  if (target.kind === 'time' && (newest === undefined || parseTargetTime(target.value).ms > newest.storedAt.getTime())) {
    throw new PgfError('RESTORE_TARGET', `target time ${target.value} is beyond the archived WAL: ${window}; check archiving (pgforever info) or pick an earlier target`);
  }
  if (target.kind === 'lsn' && (newest === undefined || parseLsn(target.value) > newest.endLsn)) {
    throw new PgfError('RESTORE_TARGET', `target LSN ${target.value} is beyond the archived WAL: ${window}; check archiving (pgforever info) or pick an earlier target`);
  }
}

async function removeExtraneous(root: string, wanted: ReadonlySet<string>, relative = ''): Promise<number> {
  let removed = 0;
  for (const entry of await readdir(join(root, relative), { withFileTypes: true })) {
    const path = relative ? `${relative}/${entry.name}` : entry.name;
    if (path === 'pg_wal') continue;
    if (!wanted.has(path)) {
      await rm(join(root, path), { recursive: true, force: true });
      removed += 1;
    } else if (entry.isDirectory() || (entry.isSymbolicLink() && /^pg_tblspc\/\d+$/.test(path))) {
      // A tablespace's link is followed: files a relation left there after the backup are extraneous too.
      removed += await removeExtraneous(root, wanted, path);
    }
  }
  return removed;
}

/** Whether a path belongs to a database that --db-include leaves out (system databases are always kept). */
function databaseFilter(manifest: BackupManifest, include: readonly string[]): (path: string) => boolean {
  if (include.length === 0) return () => false;
  const known = new Set(manifest.databases.map((d) => d.name));
  const missing = include.filter((name) => !known.has(name));
  if (missing.length > 0) {
    throw new PgfError('USAGE', `--db-include names databases the backup does not have: ${missing.join(', ')} (it has ${[...known].join(', ')})`);
  }
  const kept = new Set(['template0', 'template1', 'postgres', ...include]);
  const excluded = new Set(manifest.databases.filter((d) => !kept.has(d.name)).map((d) => String(d.oid)));
  return (path) => {
    const match = /^base\/(\d+)\/|^pg_tblspc\/\d+\/[^/]+\/(\d+)\//.exec(path);
    return match !== null && excluded.has(match[1] ?? match[2]!);
  };
}

function crcHex(crc: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(crc >>> 0);
  return bytes.toString('hex');
}

/**
 * PostgreSQL's backup_manifest for the restored files, so `pg_verifybackup -n` can check the
 * directory before the server starts. Written just before pg_control is renamed into place.
 */
async function writeBackupManifest(
  pgdata: string,
  manifest: BackupManifest,
  files: readonly ManifestFile[],
  checksums: Map<string, number>,
): Promise<void> {
  const entries: PgManifestFile[] = [];
  for (const file of files) {
    const crc = checksums.get(file.path);
    entries.push({ path: file.path, size: file.size, mtime: new Date(file.mtimeMs), ...(crc !== undefined ? { crc32c: crcHex(crc) } : {}) });
  }
  const written: [string, string][] = [['backup_label', manifest.backupLabel]];
  const map = await readFile(join(pgdata, 'tablespace_map'), 'utf8').catch(() => undefined);
  if (map !== undefined) written.push(['tablespace_map', map]);
  for (const [path, text] of written) {
    const bytes = Buffer.from(text);
    entries.push({ path, size: bytes.length, mtime: new Date(), crc32c: crcHex(crc32cAppend(0, bytes)) });
  }
  const body = renderBackupManifest(entries, [{ timeline: manifest.timeline, startLsn: manifest.startLsn, endLsn: manifest.stopLsn }]);
  await writeFile(join(pgdata, 'backup_manifest'), body, { mode: 0o600 });
}

export async function runRestore(settings: Settings, log: Logger, request: RestoreRequest): Promise<RestoreSummary> {
  const began = Date.now();
  if (request.target.kind === 'time') parseTargetTime(request.target.value);
  const pgdata = resolve(request.pgdata);
  await checkOwner(pgdata);
  if (!request.delta && !(await isEmptyOrMissing(pgdata))) {
    throw new PgfError('RESTORE_TARGET_DIR', `${pgdata} is not empty: restore into an empty directory, or pass --delta to update it in place`);
  }
  const running = await serverRunningIn(pgdata);
  if (running !== undefined) {
    throw new PgfError('RESTORE_TARGET_DIR', `a PostgreSQL server (pid ${running}) is using ${pgdata}: stop it before restoring`);
  }
  const storage = await openStorage(settings.repo, settings.s3);
  try {
    const repo = await Repository.open(storage);
    const ids = await repo.listBackups();
    // Each manifest is read once, however many steps look at it (the choice of backup, --delta).
    const manifests = new Map<string, Promise<BackupManifest>>();
    const manifestOf = (id: string) => {
      let read = manifests.get(id);
      if (read === undefined) {
        read = repo.readManifest(id);
        manifests.set(id, read);
      }
      return read;
    };
    let manifest: BackupManifest;
    const target = request.target;
    if (request.set !== undefined && request.set !== 'latest') {
      if (!ids.includes(request.set)) throw new PgfError('RESTORE_NO_BACKUP', `backup ${request.set} is not in the repository; pgforever info lists the backups`);
      manifest = await manifestOf(request.set);
      if (target.kind === 'xid' || target.kind === 'name') {
        const { locateTarget } = await import('../wal/positions.js');
        const at = await locateTarget(repo, target, await backupWalStarts(repo, ids));
        if (at < parseLsn(manifest.stopLsn)) {
          throw new PgfError('RESTORE_TARGET', `the target (at ${formatLsn(at)}) is before backup ${manifest.id} was consistent (${manifest.stopLsn}): restore an earlier backup, or leave out --set`);
        }
      }
    } else {
      // A restore point or transaction is chosen by where the archived WAL has it.
      let byPosition: RecoveryTarget = target;
      if ((target.kind === 'xid' || target.kind === 'name') && ids.length > 0) {
        const { locateTarget } = await import('../wal/positions.js');
        byPosition = { kind: 'lsn', value: formatLsn(await locateTarget(repo, target, await backupWalStarts(repo, ids))) };
      }
      manifest = await chooseBackup(ids, manifestOf, byPosition);
    }
    await checkTargetArchived(repo, request.target);
    log.info({ backup: manifest.id, pgdata }, 'restore started');

    // The index is loaded on the first fetch, beside the first files' lists; a --delta restore
    // starts loading it now, while it looks at the local files, since it nearly always rewrites some.
    let reader: Promise<ExtentReader> | undefined;
    const extentReader = () =>
      (reader ??= repo.extentReaderFromDeltas({ parallel: Math.max(2, settings.processMax * 2) }));
    if (request.delta) extentReader().catch(() => undefined);
    const extentSource: ExtentSource = {
      fetch: async (ids, into) => (await extentReader()).fetch(ids, into),
    };
    await mkdir(pgdata, { recursive: true, mode: 0o700 });
    // A delta restore must not be startable while it is half done.
    await rm(join(pgdata, controlFile), { force: true });

    const locationOf = (oid: number, recorded: string) => request.tablespaceMap.get(oid) ?? recorded;
    for (const file of manifest.files) {
      if (file.kind === 'dir') {
        await mkdir(join(pgdata, file.path), { recursive: true, mode: file.mode });
      } else if (file.kind === 'link') {
        const path = join(pgdata, file.path);
        const oid = /^pg_tblspc\/(\d+)$/.exec(file.path)?.[1];
        const target = oid !== undefined ? locationOf(Number(oid), file.linkTarget ?? '') : (file.linkTarget ?? '');
        if (oid !== undefined) {
          await mkdir(target, { recursive: true, mode: 0o700 });
          if (!request.delta && !(await isEmptyOrMissing(target))) {
            throw new PgfError('RESTORE_TARGET_DIR', `tablespace location ${target} is not empty: empty it, remap it with --tablespace-map ${oid}=DIR, or use --delta`);
          }
        }
        await rm(path, { force: true, recursive: false }).catch(() => undefined);
        await symlink(target, path);
      }
    }

    const files = manifest.files.filter((f): f is ManifestFile & { extents: string } => f.kind === 'file' && f.extents !== undefined);
    const skipped = databaseFilter(manifest, request.dbInclude);
    const totals = { bytesWritten: 0, extentsWritten: 0, extentsKept: 0, filesKept: 0 };
    const checksums = new Map<string, number>();
    let next = 0;
    const controlLast = files.find((f) => f.path === controlFile);
    // --delta: what other backups recorded for each path, to recognise a file one of them restored.
    const recordedElsewhere = new Map<string, { size: number; mtimeMs: number; extents: string }[]>();
    if (request.delta) {
      for (const other of await deltaReferences(pgdata, ids, manifestOf, manifest.id)) {
        for (const f of other.files) {
          if (f.kind !== 'file' || f.extents === undefined) continue;
          const list = recordedElsewhere.get(f.path) ?? [];
          list.push({ size: f.size, mtimeMs: f.mtimeMs, extents: f.extents });
          recordedElsewhere.set(f.path, list);
        }
      }
    }
    // Other backups' manifests can be large (a file list each): not kept through the restore.
    manifests.clear();
    // Workers take batches from files already open before opening the next file, so the batches of a
    // large file spread over all of them and only a few files are open at once.
    const inProgress: FileRestore[] = [];
    /** Files open and not yet finishing, with their manifest entries. */
    const unfinished = new Map<FileRestore, ManifestFile>();
    let failed = false;
    const collect = (file: ManifestFile, result: FileRestoreResult) => {
      totals.bytesWritten += result.bytesWritten;
      totals.extentsWritten += result.extentsWritten;
      totals.extentsKept += result.extentsKept;
      if (result.crc32c !== undefined) checksums.set(file.path, result.crc32c);
    };
    // Largest first: a large file's batches keep every worker busy early, and its flush to disk
    // overlaps the small files instead of ending the restore.
    const order = files.filter((f) => f !== controlLast).sort((a, b) => b.size - a.size);
    // A fresh restore reads every file's extent list ahead of the workers, so that opening the next
    // file rarely waits; --delta reads a list only for a file it rewrites.
    const extentListOf = readAhead(request.delta ? 0 : 16, order.length, async (i) => (skipped(order[i]!.path) ? [] : repo.readExtentList(order[i]!.extents)));
    // A finished file's flush to disk does not hold up its worker: a couple run in the background
    // (each holds one of libuv's four pool threads, which the workers' reads, decompression and
    // writes need too), and the restore waits for all of them before pg_control is written.
    const finishing = new Set<Promise<void>>();
    const finishingAtMost = 2;
    const finishInBackground = async (file: FileRestore) => {
      const entry = unfinished.get(file)!;
      unfinished.delete(file);
      const done = file.finish().then((result) => collect(entry, result));
      finishing.add(done);
      // A failed flush stays in the set for the final wait to report.
      done.then(
        () => finishing.delete(done),
        () => undefined,
      );
      if (finishing.size >= finishingAtMost) await Promise.race(finishing);
    };
    let prefetchStarted = false;
    const startPrefetch = () => {
      if (prefetchStarted) return;
      prefetchStarted = true;
      request.prefetchWal?.(pgdata, walSegmentName(manifest.timeline, parseLsn(manifest.startLsn), repo.config.walSegmentSize));
    };
    const openNext = async (): Promise<boolean> => {
      while (next < order.length) {
        const at = next++;
        const file = order[at]!;
        const path = join(pgdata, file.path);
        if (skipped(file.path)) {
          // Right size, no contents: PostgreSQL can DROP DATABASE it after recovery.
          const handle = await open(path, request.delta ? 'w' : 'wx', file.mode);
          await handle.truncate(file.size);
          await handle.close();
          continue;
        }
        let present: (Buffer | null)[] | undefined;
        if (request.delta) {
          const local = localFile(path);
          if (recordedAs(local, file)) {
            totals.filesKept += 1;
            continue;
          }
          const earlier = recordedElsewhere.get(file.path)?.find((record) => recordedAs(local, record));
          if (earlier !== undefined) present = await repo.readExtentList(earlier.extents);
        }
        const extents = await extentListOf(at);
        const restore = await FileRestore.open(path, file.size, extents, {
          key: repo.extentKey,
          source: extentSource,
          delta: request.delta,
          ...(present !== undefined ? { present } : {}),
          mode: file.mode,
          mtimeMs: file.mtimeMs,
          batchExtents: restoreBatchExtents,
        });
        unfinished.set(restore, file);
        if (restore.written) {
          await finishInBackground(restore);
          continue;
        }
        inProgress.push(restore);
        return true;
      }
      // Every file is open: what is left of a fresh restore is its last batches and flushes, mostly
      // waiting on the disk, so recovery's WAL fetching can start up now without slowing it. What
      // is left of a --delta restore (removing extraneous files, pg_control, the manifests) is
      // mostly CPU, which the daemon starting up would take half of on two cores: it starts at the end.
      if (!request.delta) startPrefetch();
      return false;
    };
    const worker = async () => {
      // Where a batch's raw extents land, kept from batch to batch and only as large as the largest
      // batch so far: a --delta restore's batches hold the few extents that changed, and 8 MiB per
      // worker up front made V8 collect garbage for them (it counts buffers as external memory).
      let scratch: Buffer | undefined;
      while (!failed) {
        const file = inProgress.find((f) => f.unclaimed);
        const batch = file?.claim();
        if (file === undefined || batch === undefined) {
          if (!(await openNext())) return;
          continue;
        }
        if (!file.unclaimed) inProgress.splice(inProgress.indexOf(file), 1);
        const bytes = Math.max(1, batch.todo.filter((t) => t.id !== null).length) * EXTENT_BYTES;
        if (scratch === undefined || scratch.length < bytes) scratch = alignedBuffer(bytes, DIRECT_IO_ALIGNMENT);
        if (await file.restore(batch, scratch)) await finishInBackground(file);
      }
    };
    const outcomes = await Promise.allSettled(
      Array.from({ length: Math.max(1, settings.processMax * 2) }, () =>
        worker().catch((err: unknown) => {
          failed = true;
          throw err;
        }),
      ),
    );
    await Promise.all([...unfinished.keys()].map((file) => file.abandon()));
    outcomes.push(...(await Promise.allSettled(finishing)));
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure !== undefined) throw failure.reason;

    let filesRemoved = 0;
    if (request.delta) {
      const wanted = new Set(manifest.files.map((f) => f.path));
      wanted.add(controlFile);
      for (const extra of ['backup_label', 'tablespace_map', 'recovery.signal', 'standby.signal', 'postgresql.auto.conf']) wanted.add(extra);
      filesRemoved = await removeExtraneous(pgdata, wanted);
    }
    await mkdir(join(pgdata, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });

    await writeFile(join(pgdata, 'backup_label'), manifest.backupLabel, { mode: 0o600 });
    // One a directory restored earlier kept would name tablespaces this backup does not have.
    await rm(join(pgdata, 'tablespace_map'), { force: true });
    if (manifest.tablespaceMap.trim() !== '') {
      const remapped = manifest.tablespaceMap
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => {
          const space = line.indexOf(' ');
          const oid = Number(line.slice(0, space));
          return `${oid} ${locationOf(oid, line.slice(space + 1))}`;
        })
        .join('\n');
      await writeFile(join(pgdata, 'tablespace_map'), `${remapped}\n`, { mode: 0o600 });
    }
    const autoConfPath = join(pgdata, 'postgresql.auto.conf');
    const autoConf = await readFile(autoConfPath, 'utf8').catch(() => '');
    const recovery: RecoveryOptions = {
      target: request.target,
      standby: request.standby,
      restoreCommand: request.restoreCommand,
      ...(request.action !== undefined ? { action: request.action } : {}),
      ...(request.timeline !== undefined ? { timeline: request.timeline } : {}),
    };
    await writeFile(autoConfPath, withRecoverySettings(autoConf, recovery), { mode: 0o600 });
    await rm(join(pgdata, request.standby ? 'recovery.signal' : 'standby.signal'), { force: true });
    await writeFile(join(pgdata, request.standby ? 'standby.signal' : 'recovery.signal'), '', { mode: 0o600 });

    if (controlLast) {
      const temporary = `${controlFile}.pgforever`;
      await rm(join(pgdata, temporary), { force: true });
      const result = await restoreFile(
        join(pgdata, temporary),
        controlLast.size,
        await repo.readExtentList(controlLast.extents),
        {
          key: repo.extentKey,
          source: extentSource,
          delta: false,
          mode: controlLast.mode,
          mtimeMs: controlLast.mtimeMs,
          batchExtents: 1,
        },
        Buffer.allocUnsafe(EXTENT_BYTES),
      );
      totals.bytesWritten += result.bytesWritten;
      totals.extentsWritten += result.extentsWritten;
      if (result.crc32c !== undefined) checksums.set(controlFile, result.crc32c);
      // Databases left out are not what the backup held, so there is nothing to verify them against.
      if (request.dbInclude.length === 0) await writeBackupManifest(pgdata, manifest, files, checksums);
      await rename(join(pgdata, temporary), join(pgdata, controlFile));
      const dir = await open(join(pgdata, dirname(controlFile)), 'r');
      await dir.sync();
      await dir.close();
    }
    startPrefetch();
    return {
      backup: manifest.id,
      pgdata,
      files: files.length,
      ...totals,
      filesRemoved,
      durationMs: Date.now() - began,
      requests: reader === undefined ? 0 : (await reader).stats.requests,
    };
  } finally {
    await storage.close();
  }
}
