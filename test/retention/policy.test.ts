import { describe, expect, it } from 'vitest';
import { decideRetention } from '../../src/retention/policy.js';

const day = 86_400_000;
const now = Date.parse('2026-12-01T12:00:00Z');
/** Five daily backups, oldest first, the second permanent. */
const backups = [5, 4, 3, 2, 1].map((age, i) => ({ id: `b${i + 1}`, stopTime: new Date(now - age * day + 60_000).toISOString(), permanent: i === 1 }));

describe('decideRetention', () => {
  it('keeps the newest N and permanent backups', () => {
    const d = decideRetention(backups, { retainFull: 2 }, now);
    expect(d.keep.map((k) => k.id)).toEqual(['b2', 'b4', 'b5']);
    expect(d.expire).toEqual(['b1', 'b3']);
    expect(d.keep[0]!.reasons).toEqual(['permanent']);
  });

  it('keeps backups that finished within D days', () => {
    expect(decideRetention(backups, { retainDays: 3 }, now).expire).toEqual(['b1']);
  });

  it('keeps the window and the newest backup before it, so every moment in the window is reachable', () => {
    const d = decideRetention(backups, { retainPitrDays: 2 }, now);
    expect(d.expire).toEqual(['b1']);
    expect(d.keep.find((k) => k.id === 'b3')!.reasons[0]).toMatch(/start of the 2-day recovery window/);
    expect(d.pitrWindowStart).toBe(new Date(now - 2 * day).toISOString());
  });

  it('combines rules: a backup any rule keeps is kept', () => {
    expect(decideRetention(backups, { retainFull: 1, retainDays: 2 }, now).expire).toEqual(['b1', 'b3']);
  });

  it('always keeps the newest backup', () => {
    const old = backups.map((b) => ({ ...b, permanent: false }));
    const d = decideRetention(old, { retainDays: 0 }, now + 30 * day);
    expect(d.keep.map((k) => k.id)).toEqual(['b5']);
  });

  it('refuses to run without a rule, or with --retain-full 0', () => {
    expect(() => decideRetention(backups, {}, now)).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(() => decideRetention(backups, { retainFull: 0 }, now)).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });
});
