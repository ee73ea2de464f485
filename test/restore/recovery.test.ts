import { describe, expect, it } from 'vitest';
import { parseTargetTime, recoverySettingsLines } from '../../src/restore/recovery.js';

describe('parseTargetTime', () => {
  it('reads ISO 8601 and PostgreSQL forms alike and writes the instant in UTC with a numeric offset', () => {
    expect(parseTargetTime('2026-12-02T00:26:00Z')).toEqual({ text: '2026-12-02 00:26:00+00', ms: Date.UTC(2026, 11, 2, 0, 26, 0) });
    expect(parseTargetTime('2026-12-02 00:26:00.123456+00')).toEqual({ text: '2026-12-02 00:26:00.123456+00', ms: Date.UTC(2026, 11, 2, 0, 26, 0, 123) });
    expect(parseTargetTime('2026-12-02 05:56:00.5+05:30')).toEqual({ text: '2026-12-02 00:26:00.5+00', ms: Date.UTC(2026, 11, 2, 0, 26, 0, 500) });
    expect(parseTargetTime('2026-12-01 19:26-0500').text).toBe('2026-12-02 00:26:00+00');
    expect(parseTargetTime('2026-03-01 00:10:00 UTC').text).toBe('2026-03-01 00:10:00+00');
    expect(parseTargetTime('2026-12-02T00:26:00.057Z').ms).toBe(Date.UTC(2026, 11, 2, 0, 26, 0, 57));
  });

  it('refuses a time without an offset, and what is not a date and time', () => {
    expect(() => parseTargetTime('2026-12-02 00:26:00')).toThrow(/has no UTC offset, and PostgreSQL would read it in the restored server's time zone/);
    expect(() => parseTargetTime('yesterday')).toThrow(/is not a time pgforever reads/);
    expect(() => parseTargetTime('2026-02-30 00:00:00+00')).toThrow(/is not a valid date, time and UTC offset/);
    expect(() => parseTargetTime('2026-12-02 24:00:00+00')).toThrow(/is not a valid date/);
    expect(() => parseTargetTime('2026-12-02 00:00:00+16')).toThrow(/is not a valid date/);
  });

  it('is what recovery_target_time is set to', () => {
    const lines = recoverySettingsLines({ target: { kind: 'time', value: '2026-12-02T00:26:00Z' }, standby: false, restoreCommand: 'true' });
    expect(lines).toContain(`recovery_target_time = '2026-12-02 00:26:00+00'`);
  });
});
