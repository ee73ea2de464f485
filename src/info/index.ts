/**
 * What is in the repository, for people and for monitoring: backups, WAL ranges per timeline, the
 * recoverable window, sizes and the archive's lag.
 */
import type { Storage } from '../storage/index.js';
import { keys, type Repository } from '../repo/index.js';
import { segmentNumber } from '../wal/names.js';
import { lastArchivedTransaction } from '../wal/positions.js';

export interface BackupInfo {
  id: string;
  label?: string;
  detection: string;
  parent?: string;
  permanent: boolean;
  timeline: number;
  startTime: string;
  stopTime: string;
  startLsn: string;
  stopLsn: string;
  bytesRead: number;
  bytesNew: number;
  bytesStored: number;
  logicalBytes: number;
  checksumFailures: number;
}

export interface WalRange {
  timeline: string;
  first: string;
  last: string;
  segments: number;
}

export interface RepositoryInfo {
  location: string;
  systemIdentifier: string;
  pgMajor: number;
  backups: BackupInfo[];
  wal: WalRange[];
  /** Segments missing between the first and last archived segment of a timeline. */
  walGaps: string[];
  recoverable: { earliest?: string; latest?: string };
  archive: { newestSegment?: string; newestAt?: string; ageSeconds?: number };
  sizes: { repositoryBytes: number; walBytes: number; logicalBytes: number; dedupRatio: number };
}

async function objectsUnder(storage: Storage, prefix: string) {
  const out = [];
  for await (const object of storage.list(prefix)) out.push(object);
  return out;
}

export async function repositoryInfo(repo: Repository, now = Date.now()): Promise<RepositoryInfo> {
  const backups: BackupInfo[] = [];
  for (const id of await repo.listBackups()) {
    const m = await repo.readManifest(id);
    backups.push({
      id: m.id,
      ...(m.label !== undefined ? { label: m.label } : {}),
      detection: m.detection,
      ...(m.parent !== undefined ? { parent: m.parent } : {}),
      permanent: m.permanent,
      timeline: m.timeline,
      startTime: m.startTime,
      stopTime: m.stopTime,
      startLsn: m.startLsn,
      stopLsn: m.stopLsn,
      bytesRead: m.stats.bytesRead,
      bytesNew: m.stats.bytesNew,
      bytesStored: m.stats.bytesStored,
      logicalBytes: m.stats.logicalBytes,
      checksumFailures: m.checksumFailures.length,
    });
  }
  const all = await objectsUnder(repo.storage, '');
  const segmentSize = repo.config.walSegmentSize;
  const byTimeline = new Map<string, { name: string; modifiedMs: number }[]>();
  let walBytes = 0;
  for (const object of all) {
    const match = /^wal\/([0-9A-F]{8})\/([0-9A-F]{24})\.zst$/.exec(object.key);
    if (object.key.startsWith(keys.wal)) walBytes += object.size;
    if (!match) continue;
    const list = byTimeline.get(match[1]!) ?? [];
    list.push({ name: match[2]!, modifiedMs: object.modifiedMs });
    byTimeline.set(match[1]!, list);
  }
  const wal: WalRange[] = [];
  const walGaps: string[] = [];
  let newest: { name: string; modifiedMs: number } | undefined;
  for (const [timeline, segments] of [...byTimeline.entries()].sort()) {
    segments.sort((a, b) => (a.name < b.name ? -1 : 1));
    let start = segments[0]!;
    let previous = segments[0]!;
    for (const segment of segments.slice(1)) {
      const gap = segmentNumber(segment.name, segmentSize) - segmentNumber(previous.name, segmentSize);
      if (gap !== 1n) {
        wal.push({ timeline, first: start.name, last: previous.name, segments: Number(segmentNumber(previous.name, segmentSize) - segmentNumber(start.name, segmentSize)) + 1 });
        walGaps.push(`${timeline}: after ${previous.name}, ${gap - 1n} segment(s) missing before ${segment.name}`);
        start = segment;
      }
      previous = segment;
    }
    wal.push({ timeline, first: start.name, last: previous.name, segments: Number(segmentNumber(previous.name, segmentSize) - segmentNumber(start.name, segmentSize)) + 1 });
    for (const segment of segments) if (newest === undefined || segment.modifiedMs > newest.modifiedMs) newest = segment;
  }
  // Recovery to a time ends at a transaction end: the last archived one is the latest reachable time.
  const lastTransaction = backups.length > 0 ? await lastArchivedTransaction(repo) : undefined;
  const repositoryBytes = all.reduce((n, o) => n + o.size, 0);
  const logicalBytes = backups.reduce((n, b) => n + b.logicalBytes, 0);
  const dataBytes = repositoryBytes - walBytes;
  return {
    location: repo.location,
    systemIdentifier: repo.config.systemIdentifier,
    pgMajor: repo.config.pgMajor,
    backups,
    wal,
    walGaps,
    recoverable: {
      ...(backups[0] ? { earliest: backups[0].stopTime } : {}),
      ...(backups.length > 0 && newest ? { latest: lastTransaction?.time ?? new Date(newest.modifiedMs).toISOString() } : {}),
    },
    archive: newest ? { newestSegment: newest.name, newestAt: new Date(newest.modifiedMs).toISOString(), ageSeconds: Math.round((now - newest.modifiedMs) / 1000) } : {},
    sizes: { repositoryBytes, walBytes, logicalBytes, dedupRatio: dataBytes > 0 ? +(logicalBytes / dataBytes).toFixed(2) : 0 },
  };
}
