/**
 * A PostgreSQL-format `backup_manifest` for a restored directory, so `pg_verifybackup -n` can check
 * the files before the server starts. The layout follows what PostgreSQL itself writes: one file
 * object per line, and a SHA-256 over everything before the final `Manifest-Checksum` line.
 */
import { createHash } from 'node:crypto';
import { utcSeconds } from '../time/utc.js';

export interface ManifestFile {
  path: string;
  size: number;
  mtime: Date;
  /** CRC-32C as PostgreSQL writes it (the 4 bytes in little-endian order, in hex); without it pg_verifybackup checks the size alone. */
  crc32c?: string;
}

export interface ManifestWalRange {
  timeline: number;
  startLsn: string;
  endLsn: string;
}

function lastModified(date: Date): string {
  return `${utcSeconds(date.getTime())} GMT`;
}

function fileLine(file: ManifestFile): string {
  const checksum = file.crc32c === undefined ? '' : `, "Checksum-Algorithm": "CRC32C", "Checksum": "${file.crc32c}"`;
  return `{ "Path": ${JSON.stringify(file.path)}, "Size": ${file.size}, "Last-Modified": "${lastModified(file.mtime)}"${checksum} }`;
}

export function renderBackupManifest(files: ManifestFile[], walRanges: ManifestWalRange[]): string {
  const lines = [
    '{ "PostgreSQL-Backup-Manifest-Version": 1,',
    '"Files": [',
    files.map(fileLine).join(',\n'),
    '],',
    '"WAL-Ranges": [',
    walRanges.map((r) => `{ "Timeline": ${r.timeline}, "Start-LSN": "${r.startLsn}", "End-LSN": "${r.endLsn}" }`).join(',\n'),
    '],',
  ];
  const body = `${lines.join('\n')}\n`;
  const checksum = createHash('sha256').update(body).digest('hex');
  return `${body}"Manifest-Checksum": "${checksum}"}\n`;
}
