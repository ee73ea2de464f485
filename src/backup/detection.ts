/**
 * Which change detection a backup may use (DESIGN.md section 5). The LSN rule reuses the parent's
 * extent wherever every page is older than the parent's start; it is only sound when the parent is
 * an ancestor of the data we read now, so every doubt falls back to hashing every extent (still
 * deduplicated against the repository, just not trusted by position).
 */
import { formatLsn, type Lsn } from '../pg/lsn.js';

export type Detection = 'full' | 'lsn' | 'hash';

export interface ParentFacts {
  id: string;
  systemIdentifier: string;
  timeline: number;
  startLsn: Lsn;
  stopLsn: Lsn;
  complete: boolean;
}

export interface TimelineSwitch {
  /** The timeline that was left. */
  timeline: number;
  /** The first LSN not on it any more. */
  switchLsn: Lsn;
}

export interface DetectionInput {
  parent: ParentFacts | undefined;
  systemIdentifier: string;
  timeline: number;
  /** Parsed `<timeline>.history` of the current timeline (empty on timeline 1). */
  history: TimelineSwitch[];
  full: boolean;
  verifyUnchanged: boolean;
}

export interface DetectionChoice {
  detection: Detection;
  /** Why, in words for the summary and the log. */
  reason: string;
}

/** Parses a timeline history file: `<parent tli>\t<switch lsn>\t<reason>` per line. */
export function parseTimelineHistory(text: string): TimelineSwitch[] {
  const switches: TimelineSwitch[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*(\d+)\s+([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)/.exec(line);
    if (!match) continue;
    switches.push({ timeline: Number(match[1]), switchLsn: (BigInt(`0x${match[2]}`) << 32n) | BigInt(`0x${match[3]}`) });
  }
  return switches;
}

export function chooseDetection(input: DetectionInput): DetectionChoice {
  const { parent } = input;
  if (parent === undefined) return { detection: 'full', reason: 'no earlier backup: every extent is read and hashed' };
  if (input.full) return { detection: 'full', reason: '--full: every extent is read and hashed' };
  if (input.verifyUnchanged) return { detection: 'hash', reason: '--verify-unchanged: every extent is hashed, none trusted by LSN' };
  if (!parent.complete) return { detection: 'hash', reason: `parent ${parent.id} is unfinished: every extent is hashed` };
  if (parent.systemIdentifier !== input.systemIdentifier) {
    return { detection: 'hash', reason: `parent ${parent.id} is of another system identifier: every extent is hashed` };
  }
  if (parent.timeline !== input.timeline) {
    const left = input.history.find((s) => s.timeline === parent.timeline);
    if (left === undefined) {
      return {
        detection: 'hash',
        reason: `timeline ${input.timeline} does not descend from the parent's timeline ${parent.timeline}: every extent is hashed`,
      };
    }
    if (left.switchLsn < parent.stopLsn) {
      return {
        detection: 'hash',
        reason: `timeline ${input.timeline} forked from timeline ${parent.timeline} at ${formatLsn(left.switchLsn)}, before the parent's stop ${formatLsn(parent.stopLsn)}: every extent is hashed`,
      };
    }
  }
  return { detection: 'lsn', reason: `pages older than the parent's start ${formatLsn(parent.startLsn)} reuse parent ${parent.id}` };
}
