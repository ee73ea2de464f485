/**
 * Polling with a deadline: the only way tests wait for something. Never a fixed sleep.
 */
import { setTimeout as delay } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this long (default 30 s). */
  deadlineMs?: number;
  /** Pause between polls (default 50 ms). */
  intervalMs?: number;
  /** Named in the timeout error. */
  what?: string;
}

/**
 * Calls `predicate` until it returns a value other than `false`, `null` or `undefined`, and returns
 * that value. Throws when the deadline passes, with the last error the predicate threw, if any.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<Exclude<T, false | null | undefined>> {
  const deadlineMs = options.deadlineMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + deadlineMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value !== false && value !== null && value !== undefined) {
        return value as Exclude<T, false | null | undefined>;
      }
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const what = options.what ?? 'condition';
      const cause = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${cause}`, { cause: lastError });
    }
    await delay(intervalMs);
  }
}
