import { describe, expect, it } from 'vitest';
import { chooseDetection, parseTimelineHistory, type ParentFacts } from '../../src/backup/detection.js';

const parent: ParentFacts = { id: 'p', systemIdentifier: '42', timeline: 1, startLsn: 0x3000000n, stopLsn: 0x3000100n, complete: true };
const base = { parent, systemIdentifier: '42', timeline: 1, history: [], full: false, verifyUnchanged: false };

describe('chooseDetection', () => {
  it('uses the LSN rule only when the parent is a finished ancestor of the same cluster', () => {
    expect(chooseDetection(base).detection).toBe('lsn');
    expect(chooseDetection({ ...base, parent: undefined }).detection).toBe('full');
    expect(chooseDetection({ ...base, full: true }).detection).toBe('full');
    expect(chooseDetection({ ...base, verifyUnchanged: true }).detection).toBe('hash');
    expect(chooseDetection({ ...base, parent: { ...parent, complete: false } }).detection).toBe('hash');
    expect(chooseDetection({ ...base, systemIdentifier: '43' }).detection).toBe('hash');
  });

  it('checks where the current timeline left the parent timeline', () => {
    const after = parseTimelineHistory('1\t0/4000000\tno recovery target specified\n');
    expect(chooseDetection({ ...base, timeline: 2, history: after }).detection).toBe('lsn');
    const before = parseTimelineHistory('1\t0/3000050\tbefore 2000-01-01\n');
    const choice = chooseDetection({ ...base, timeline: 2, history: before });
    expect(choice.detection).toBe('hash');
    expect(choice.reason).toContain('0/3000050');
    expect(chooseDetection({ ...base, timeline: 3, history: parseTimelineHistory('2\t0/5000000\tx\n') }).detection).toBe('hash');
  });
});
