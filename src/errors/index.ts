/**
 * The one error type users meet. Every code is stable: scripts and runbooks match on it, so add
 * codes freely but never rename one. `exitCode` follows CLI.md: 1 operational, 2 usage.
 */
export const errorCodes = {
  USAGE: 2,
  CONFIG_INVALID: 2,
  // native core (crates/core ErrorCode, same spelling)
  BUFFER_LENGTH: 1,
  INVALID_ARGUMENT: 1,
  PAGE_HEADER: 1,
  FRAME_CORRUPT: 1,
  FRAME_TRUNCATED: 1,
  FRAME_VERSION: 1,
  COMPRESSION: 1,
  WAL_INVALID: 1,
  WAL_CRC: 1,
  WAL_CONFLICT: 1,
  WAL_NOT_FOUND: 1,
  // archive-push / archive-get
  ARCHIVE_TIMEOUT: 1,
  ARCHIVE_SPOOL: 1,
  // restore
  RESTORE_NO_BACKUP: 1,
  RESTORE_TARGET: 1,
  RESTORE_TARGET_DIR: 1,
  NATIVE_UNAVAILABLE: 1,
  NATIVE_UNKNOWN: 1,
  // storage
  STORAGE_NOT_FOUND: 1,
  STORAGE_UNREACHABLE: 1,
  STORAGE_TIMEOUT: 1,
  STORAGE_DENIED: 1,
  STORAGE_FULL: 1,
  STORAGE_IO: 1,
  STORAGE_EXISTS: 1,
  // repository
  REPO_NOT_INITIALIZED: 1,
  REPO_ALREADY_INITIALIZED: 1,
  REPO_FORMAT: 1,
  REPO_CLUSTER_MISMATCH: 1,
  REPO_CORRUPT: 1,
  REPO_LOCKED: 1,
  VERIFY_FAILED: 1,
  // server
  PG_UNREACHABLE: 1,
  PG_PRIVILEGE: 1,
  PG_SETTING: 1,
  PG_VERSION: 1,
  PGDATA_MISMATCH: 1,
} as const;

export type ErrorCode = keyof typeof errorCodes;

export class PgfError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PgfError';
    this.code = code;
  }

  get exitCode(): number {
    return errorCodes[this.code];
  }
}

export function isPgfError(err: unknown, code?: ErrorCode): err is PgfError {
  return err instanceof PgfError && (code === undefined || err.code === code);
}

/** What the CLI prints for a failure, one line for every failure a user can meet. */
export function errorLine(err: unknown): string {
  if (err instanceof PgfError) return `pgforever: ${err.code}: ${err.message}\n`;
  return `pgforever: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`;
}
