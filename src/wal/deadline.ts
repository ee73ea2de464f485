/** Bounded waits: archive_command and restore_command must answer, never hang on a dead store. */
import { PgfError } from '../errors/index.js';

/** Rejects with `timeout()` when `work` takes longer than `ms`; the work itself goes on. */
export async function withDeadline<T>(work: Promise<T>, ms: number, timeout: () => PgfError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeout()), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** ARCHIVE_TIMEOUT for `what` (e.g. "archiving 000000010000000000000003 to s3://bucket/prefix"). */
export function timeoutError(what: string, ms: number): () => PgfError {
  return () => new PgfError('ARCHIVE_TIMEOUT', `${what} did not complete within ${Math.round(ms / 1000)} s (is the repository reachable?); PostgreSQL will retry`);
}
