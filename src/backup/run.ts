/**
 * `pgforever backup`: start the backup on one held connection; read, scan, hash and compress files
 * with bounded parallelism while packs upload; stop the backup; wait until the WAL it needs is in
 * the repository; write the manifest last, so a backup exists exactly when its manifest does.
 *
 * Memory is bounded by: processMax workers × (an 8 MiB chunk + its frames, at most 8 MiB more) +
 * the pack being filled and at most two uploading (3 × 64 MiB) + the extent index (46–91 bytes per
 * stored extent) + one parent extent list per worker (32 bytes per extent of a 1 GiB segment file:
 * 256 KiB). With the default 2 workers that is about 230 MiB plus the index.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PgfError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { Settings } from '../config/index.js';
import { ServerConnection } from '../pg/server.js';
import { checkArchiving, checkBackupPrivileges, checkDataDirectory } from '../pg/preflight.js';
import { formatLsn, parseLsn, walSegmentName } from '../pg/lsn.js';
import { openStorage } from '../storage/index.js';
import { Repository, acquireLease, backupIdAt, keys, waitForNoLease, type BackupManifest, type ManifestFile } from '../repo/index.js';
import { listDataFiles, type DataEntry } from './files.js';
import { ChunkBuffers, backupFile, type ParentFile } from './file.js';
import { chooseDetection, parseTimelineHistory, type Detection, type TimelineSwitch } from './detection.js';
import { loadWalFile } from '../wal/repository.js';
import { parseWalFileName } from '../wal/names.js';

export interface BackupRequest {
  full: boolean;
  label?: string;
  permanent: boolean;
  verifyUnchanged: boolean;
  /** How long to wait for the last segment of the backup to reach the repository. */
  walWaitMs: number;
}

export interface BackupSummary {
  id: string;
  detection: Detection;
  detectionReason: string;
  parent?: string;
  files: number;
  bytesRead: number;
  bytesNew: number;
  bytesStored: number;
  logicalBytes: number;
  /** Logical size of the backup over the bytes it added to the repository. */
  dedupRatio: number;
  extentsReused: number;
  extentsNew: number;
  durationMs: number;
  startLsn: string;
  stopLsn: string;
  timeline: number;
  walStart: string;
  walStop: string;
  checksumFailures: { path: string; block: number }[];
}

const chunkBytes = 8 * 1024 * 1024;
/** Relation segment files hold 1 GiB: PostgreSQL's RELSEG_SIZE at the default 8 KiB block size. */
const relationSegmentBytes = 1024 * 1024 * 1024;

function timelineHex(timeline: number): string {
  return timeline.toString(16).toUpperCase().padStart(8, '0');
}

async function timelineHistory(repo: Repository, pgdata: string, timeline: number): Promise<TimelineSwitch[]> {
  if (timeline === 1) return [];
  const name = `${timelineHex(timeline)}.history`;
  const text = await readFile(join(pgdata, 'pg_wal', name), 'utf8').catch(async () => {
    const file = parseWalFileName(name);
    const stored = file && (await loadWalFile(repo, file));
    return stored?.toString('utf8');
  });
  return text === undefined ? [] : parseTimelineHistory(text);
}

async function waitForWal(repo: Repository, timeline: number, segment: string, deadlineMs: number): Promise<void> {
  const key = keys.walSegment(timelineHex(timeline), segment);
  const deadline = Date.now() + deadlineMs;
  let interval = 50;
  while ((await repo.storage.stat(key)) === undefined) {
    if (Date.now() > deadline) {
      throw new PgfError(
        'PG_SETTING',
        `WAL segment ${segment} did not reach the repository within ${Math.round(deadlineMs / 1000)} s: check that archive_command is what \`pgforever archive-command\` prints and that archiving succeeds (pg_stat_archiver)`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
    interval = Math.min(interval * 2, 250);
  }
}

/** Runs `work` over `items` with at most `parallel` in flight, stopping at the first failure. */
async function forEachParallel<T>(items: readonly T[], parallel: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, items.length)) }, worker));
}

export interface BackupProgress {
  filesDone: number;
  files: number;
  bytesDone: number;
  bytes: number;
  bytesStored: number;
}

export async function runBackup(
  settings: Settings,
  log: Logger,
  request: BackupRequest,
  onProgress?: (progress: BackupProgress) => void,
): Promise<BackupSummary> {
  const began = Date.now();
  const server = await ServerConnection.connect(settings.pgUrl);
  const storage = await openStorage(settings.repo, settings.s3);
  try {
    const info = await server.info();
    if (info.inRecovery) throw new PgfError('PG_SETTING', 'the server is a standby: run the backup against the primary');
    await checkBackupPrivileges(server);
    await checkArchiving(server);
    const { dir: pgdata, samePath } = await checkDataDirectory(settings.pgdata, info);
    if (!samePath) {
      throw new PgfError('PGDATA_MISMATCH', `${pgdata} is not the path the server reports (${info.dataDirectory}): pass the server's own data directory as --pgdata`);
    }
    const repo = await Repository.open(storage, { systemIdentifier: info.systemIdentifier });
    const lease = await acquireLease(storage, 'backup', { command: 'backup' });
    try {
      // A sweep deleting unreferenced objects must not overlap the index load and the reuse below.
      await waitForNoLease(storage, 'sweep', 10 * 60_000);
      const backupIds = await repo.listBackups();
      const index = await repo.loadIndex({ forReuse: true });

      const start = await server.backupStart(request.label ?? 'pgforever', true);
      const id = backupIdAt(start.time);
      const history = await timelineHistory(repo, pgdata, info.timeline);
      // The parent is the newest backup the LSN rule may build on: after a point-in-time restore the
      // newest backup can lie on an abandoned timeline while an older one is still an ancestor.
      const judge = (manifest: BackupManifest | undefined) =>
        chooseDetection({
          parent: manifest && {
            id: manifest.id,
            systemIdentifier: manifest.systemIdentifier,
            timeline: manifest.timeline,
            startLsn: parseLsn(manifest.startLsn),
            stopLsn: parseLsn(manifest.stopLsn),
            complete: true,
          },
          systemIdentifier: info.systemIdentifier,
          timeline: info.timeline,
          history,
          full: request.full,
          verifyUnchanged: request.verifyUnchanged,
        });
      let parent: BackupManifest | undefined = backupIds.length > 0 ? await repo.readManifest(backupIds.at(-1)!) : undefined;
      let { detection, reason } = judge(parent);
      for (const olderId of detection === 'hash' && !request.verifyUnchanged ? backupIds.slice(0, -1).reverse() : []) {
        const older = await repo.readManifest(olderId);
        const choice = judge(older);
        if (choice.detection === 'lsn') {
          ({ detection, reason } = choice);
          parent = older;
          break;
        }
      }
      log.info({ backup: id, detection, reason, startLsn: formatLsn(start.lsn) }, 'backup started');

      const parentFiles = new Map<string, ManifestFile>((parent?.files ?? []).map((f) => [f.path, f]));
      const entries = await listDataFiles(pgdata);
      const writer = repo.packWriter(index);
      // Each file in flight holds the chunk being processed and the one being read ahead.
      const buffers = new ChunkBuffers(chunkBytes, settings.processMax * 2);
      const files: ManifestFile[] = [];
      const byPath = new Map<string, ManifestFile>();
      const totals = { bytesRead: 0, bytesNew: 0, bytesStored: 0, logicalBytes: 0, extentsReused: 0, extentsNew: 0 };
      const checksumFailures: { path: string; block: number }[] = [];

      const backupEntry = async (entry: DataEntry) => {
        const record: ManifestFile = { path: entry.path, kind: entry.kind, size: entry.size, mode: entry.mode, mtimeMs: entry.mtimeMs };
        if (entry.linkTarget !== undefined) record.linkTarget = entry.linkTarget;
        if (entry.kind === 'file') {
          const before = parentFiles.get(entry.path);
          let parentFile: ParentFile | undefined;
          if (detection === 'lsn' && entry.relation && before?.extents !== undefined) {
            parentFile = { size: before.size, extents: await repo.readExtentList(before.extents) };
          }
          const result = await backupFile(entry, parentFile, {
            key: repo.extentKey,
            compressLevel: repo.config.compression.level,
            changedSince: detection === 'lsn' && parent ? parseLsn(parent.startLsn) : undefined,
            backupStart: start.lsn,
            verifyChecksums: info.dataChecksums,
            blocksPerSegment: relationSegmentBytes / info.blockSize,
            buffers,
            store: writer,
          });
          record.size = result.size;
          record.extents = await repo.writeExtentList(result.extents);
          totals.bytesRead += result.bytesRead;
          totals.bytesNew += result.bytesNew;
          totals.bytesStored += result.bytesStored;
          totals.logicalBytes += result.size;
          totals.extentsReused += result.extentsReused;
          totals.extentsNew += result.extentsNew;
          for (const failure of result.checksumFailures) {
            checksumFailures.push({ path: entry.path, block: failure.block });
            log.warn({ path: entry.path, block: failure.block, expected: failure.expected, found: failure.found }, 'page checksum failure');
          }
        }
        byPath.set(entry.path, record);
      };
      const progress: BackupProgress = { filesDone: 0, files: entries.length, bytesDone: 0, bytes: entries.reduce((n, e) => n + e.size, 0), bytesStored: 0 };
      // Largest files first, so the biggest one is not left running alone at the end.
      const bySize = [...entries].sort((a, b) => b.size - a.size);
      await forEachParallel(bySize, settings.processMax, async (entry) => {
        await backupEntry(entry);
        progress.filesDone += 1;
        progress.bytesDone += entry.size;
        progress.bytesStored = totals.bytesStored;
        onProgress?.(progress);
      });
      for (const entry of entries) {
        const record = byPath.get(entry.path);
        if (record) files.push(record);
      }
      // Packs are durable once finish() resolves; only then may the index name them.
      await repo.recordIndex(await writer.finish());

      const stop = await server.backupStop(false);
      const walStart = walSegmentName(info.timeline, start.lsn, info.walSegmentSize);
      const walStop = walSegmentName(info.timeline, stop.lsn - 1n, info.walSegmentSize);
      // pg_backup_stop switched to a new segment; the one holding the stop record must be archived
      // before the backup can be restored, so the manifest waits for it.
      await waitForWal(repo, info.timeline, walStop, request.walWaitMs);
      const databases = await server.query<{ oid: number; name: string }>('SELECT oid::int AS oid, datname AS name FROM pg_database ORDER BY oid');
      const tablespaces = await server.tablespaces();
      const durationMs = Date.now() - began;
      const manifest: BackupManifest = {
        format: 1,
        id,
        ...(request.label !== undefined ? { label: request.label } : {}),
        permanent: request.permanent,
        detection,
        detectionReason: reason,
        ...(parent ? { parent: parent.id } : {}),
        systemIdentifier: info.systemIdentifier,
        pgVersionNum: info.versionNum,
        timeline: info.timeline,
        startLsn: formatLsn(start.lsn),
        stopLsn: formatLsn(stop.lsn),
        startTime: start.time.toISOString(),
        stopTime: stop.time.toISOString(),
        walStart,
        walStop,
        backupLabel: stop.backupLabel,
        tablespaceMap: stop.tablespaceMap,
        dataChecksums: info.dataChecksums,
        tablespaces,
        databases: databases.map((d) => ({ oid: Number(d.oid), name: d.name })),
        stats: { files: files.filter((f) => f.kind === 'file').length, ...totals, durationMs },
        checksumFailures,
        files,
      };
      await repo.writeManifest(manifest);
      return {
        id,
        detection,
        detectionReason: reason,
        ...(parent ? { parent: parent.id } : {}),
        files: manifest.stats.files,
        ...totals,
        dedupRatio: totals.bytesStored > 0 ? totals.logicalBytes / totals.bytesStored : totals.logicalBytes > 0 ? Infinity : 1,
        durationMs,
        startLsn: manifest.startLsn,
        stopLsn: manifest.stopLsn,
        timeline: info.timeline,
        walStart,
        walStop,
        checksumFailures,
      };
    } finally {
      await lease.release();
    }
  } finally {
    await server.close();
    await storage.close();
  }
}
