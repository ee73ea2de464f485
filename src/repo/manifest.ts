/**
 * Backup manifests: everything a restore needs, written last. A backup exists exactly when its
 * manifest does, and a manifest names only objects that were durable before it was written.
 */
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { keys, readSealedJson, writeSealedJson } from './objects.js';

export const manifestFormat = 1;

export interface ManifestFile {
  path: string;
  kind: 'file' | 'dir' | 'link';
  size: number;
  mode: number;
  mtimeMs: number;
  linkTarget?: string;
  /** Extent list reference (files only). */
  extents?: string;
}

export interface ManifestTablespace {
  oid: number;
  name: string;
  location: string;
}

export interface ManifestDatabase {
  oid: number;
  name: string;
}

export interface BackupManifest {
  format: number;
  id: string;
  label?: string;
  permanent: boolean;
  detection: 'full' | 'lsn' | 'hash';
  detectionReason: string;
  parent?: string;
  systemIdentifier: string;
  pgVersionNum: number;
  timeline: number;
  startLsn: string;
  stopLsn: string;
  startTime: string;
  stopTime: string;
  /** WAL needed to make the backup consistent: first and last segment names. */
  walStart: string;
  walStop: string;
  backupLabel: string;
  tablespaceMap: string;
  dataChecksums: boolean;
  tablespaces: ManifestTablespace[];
  databases: ManifestDatabase[];
  stats: {
    files: number;
    bytesRead: number;
    bytesNew: number;
    bytesStored: number;
    logicalBytes: number;
    extentsReused: number;
    extentsNew: number;
    durationMs: number;
  };
  checksumFailures: { path: string; block: number }[];
  files: ManifestFile[];
}

export async function writeManifest(storage: Storage, manifest: BackupManifest): Promise<void> {
  await writeSealedJson(storage, keys.manifest(manifest.id), manifest, true);
}

export async function readManifest(storage: Storage, id: string): Promise<BackupManifest> {
  const manifest = await readSealedJson<BackupManifest>(storage, keys.manifest(id));
  if (manifest.format !== manifestFormat) {
    throw new PgfError('REPO_FORMAT', `backup ${id} has manifest format ${manifest.format}; this pgforever reads ${manifestFormat}: upgrade pgforever`);
  }
  return manifest;
}

/** A backup's id: the time it started (PostgreSQL's clock), to the millisecond: `20261202T070500123Z`. */
export function backupIdAt(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '').replace(/\.(\d{3})Z$/, '$1Z');
}

/** When the backup `id` started, in ms since the epoch; undefined for an id backupIdAt did not make. */
export function backupStartOf(id: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(id);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second, ms] = match.slice(1).map(Number) as [number, number, number, number, number, number, number];
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}

/** Backup ids in the repository, oldest first (ids sort by start time). */
export async function listBackupIds(storage: Storage): Promise<string[]> {
  const ids: string[] = [];
  for await (const object of storage.list(keys.manifests)) {
    const match = /^backups\/(.+)\.json\.zst$/.exec(object.key);
    if (match) ids.push(match[1]!);
  }
  return ids.sort();
}
