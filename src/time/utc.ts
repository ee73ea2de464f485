/**
 * Timestamps in UTC, formatted from the Date's UTC fields. Date's own toISOString costs about 25 ms
 * the first time on a cold page cache (V8 reads its time zone data out of the node binary), which
 * a restore or an archive-get started cold would pay for one log line or one manifest date.
 */

function pad(value: number, width = 2): string {
  return String(value).padStart(width, '0');
}

/** Date and time of day in UTC, to the second, joined by `separator`. */
function dateTime(d: Date, separator: string): string {
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}${separator}${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** `time` (milliseconds since the epoch, years 0 to 9999) as toISOString gives it: 2026-12-01T20:01:57.212Z. */
export function isoUtc(time: number): string {
  const d = new Date(time);
  return `${dateTime(d, 'T')}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}

/** `time` to the second, as PostgreSQL prints a timestamp in UTC without its offset: 2026-12-01 20:01:57. */
export function utcSeconds(time: number): string {
  return dateTime(new Date(time), ' ');
}
