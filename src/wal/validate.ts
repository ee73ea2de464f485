/**
 * What archive-push checks before anything is stored, and archive-get before anything is restored:
 * a segment must belong to the repository's cluster, version, timeline and position; history
 * files must look like what PostgreSQL writes.
 */
import { PgfError } from '../errors/index.js';
import type { RepositoryConfig } from '../repo/index.js';
import type { WalFileName } from './names.js';
import { checkSegmentHeader } from './segment-header.js';

function invalid(name: string, what: string): PgfError {
  return new PgfError('WAL_INVALID', `${name} is not a valid ${what}; nothing was archived`);
}

/** Timeline history: lines `<parent tli>\t<switch LSN>\t<reason>`, comments and blank lines. */
function checkTimelineHistory(file: WalFileName, content: Buffer): void {
  const text = content.toString('utf8');
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (!/^\d+\s+[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}(\s|$)/.test(trimmed)) throw invalid(file.name, `timeline history file (line "${trimmed.slice(0, 60)}")`);
  }
}

type ClusterIdentity = Pick<RepositoryConfig, 'systemIdentifier' | 'pgMajor' | 'walSegmentSize'>;

/** A segment or .partial file by its first bytes (`head`, at least the long page header) and length. */
export function validateSegmentHead(file: WalFileName, head: Buffer, size: number, config: ClusterIdentity): void {
  checkSegmentHeader(head, size, {
    name: file.segment ?? file.name,
    systemIdentifier: config.systemIdentifier,
    pgMajor: config.pgMajor,
    segmentSize: config.walSegmentSize,
  });
}

export function validateWalFile(file: WalFileName, content: Buffer, config: ClusterIdentity): void {
  switch (file.kind) {
    case 'segment':
    case 'partial':
      validateSegmentHead(file, content, content.length, config);
      return;
    case 'history':
      checkTimelineHistory(file, content);
      return;
    case 'backup-history':
      if (!content.toString('utf8').startsWith('START WAL LOCATION:')) throw invalid(file.name, 'backup history file');
      return;
  }
}
