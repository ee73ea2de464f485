/**
 * Leases in `locks/`: one object per holder, with an expiry the holder keeps pushing forward, so a
 * crashed process blocks others only until its lease runs out; on the holder's own host, a lease
 * whose process is gone is removed at once. A lease conflicts with live leases
 * of the same kind (two backups, or two expire runs, at once).
 *
 * A garbage-collection sweep and a backup exclude each other across kinds: each writes its lease,
 * then looks for the other's (`liveLeases`). Because both write before they look, at least one sees
 * the other: the sweep then defers, and the backup waits for the sweep's lease to go.
 *
 * Acquiring writes our lease first and then lists: of two racing processes each sees the other's
 * lease, and the one whose lease sorts later (by time, then name) backs off, so at most one wins and
 * neither depends on atomic rename or conditional writes (which not every S3 service has).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { keys } from './objects.js';

export type LeaseKind = 'backup' | 'expire' | 'sweep';

export interface LeaseRecord {
  kind: LeaseKind;
  name: string;
  host: string;
  pid: number;
  command: string;
  since: string;
  expiresAt: string;
}

export interface Lease {
  readonly record: LeaseRecord;
  release(): Promise<void>;
}

export interface LeaseOptions {
  command: string;
  ttlMs?: number;
}

async function readLeases(storage: Storage): Promise<LeaseRecord[]> {
  const leases: LeaseRecord[] = [];
  for await (const object of storage.list(keys.leases)) {
    try {
      leases.push(JSON.parse((await storage.read(object.key)).toString('utf8')) as LeaseRecord);
    } catch {
      // Released between list and read, or unreadable: not a live lease.
    }
  }
  return leases;
}

/** A lease of a process on this host that no longer exists: its holder crashed or was killed. */
function orphaned(lease: LeaseRecord): boolean {
  if (lease.host !== hostname()) return false;
  try {
    process.kill(lease.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function describe(lease: LeaseRecord): string {
  return `${lease.command} (pid ${lease.pid} on ${lease.host}, since ${lease.since}, lease until ${lease.expiresAt})`;
}

/** Live leases of `kind` held by others than `except` (a lease name). */
export async function liveLeases(storage: Storage, kind: LeaseKind, except?: string): Promise<LeaseRecord[]> {
  return (await readLeases(storage)).filter((l) => l.kind === kind && l.name !== except && Date.parse(l.expiresAt) > Date.now() && !orphaned(l));
}

/** Waits until no other holder has a live lease of `kind`, polling; REPO_LOCKED past the deadline. */
export async function waitForNoLease(storage: Storage, kind: LeaseKind, deadlineMs: number, pollMs = 250): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const live = await liveLeases(storage, kind);
    if (live.length === 0) return;
    if (Date.now() >= until) {
      throw new PgfError('REPO_LOCKED', `a ${kind} still runs after ${Math.round(deadlineMs / 1000)} s: ${describe(live[0]!)}; try again when it has finished`);
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

export async function acquireLease(storage: Storage, kind: LeaseKind, options: LeaseOptions): Promise<Lease> {
  const ttlMs = options.ttlMs ?? 5 * 60_000;
  const now = new Date();
  const name = `${kind}-${now.getTime().toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}`;
  const record: LeaseRecord = {
    kind,
    name,
    host: hostname(),
    pid: process.pid,
    command: options.command,
    since: now.toISOString(),
    expiresAt: new Date(now.getTime() + ttlMs).toISOString(),
  };
  const write = (r: LeaseRecord) => storage.write(keys.lease(r.name), Buffer.from(JSON.stringify(r)));
  await write(record);
  const others = (await readLeases(storage)).filter((l) => l.kind === kind && l.name !== name);
  for (const stale of others.filter(orphaned)) await storage.delete(keys.lease(stale.name));
  const live = others.filter((l) => Date.parse(l.expiresAt) > Date.now() && !orphaned(l));
  const holder = live.filter((l) => l.name < name)[0];
  if (holder !== undefined) {
    await storage.delete(keys.lease(name));
    throw new PgfError('REPO_LOCKED', `another ${kind} is running: ${describe(holder)}; wait for it to finish (a crashed one's lease expires by itself)`);
  }
  let released = false;
  const renew = setInterval(() => {
    record.expiresAt = new Date(Date.now() + ttlMs).toISOString();
    void write(record).catch(() => undefined);
  }, Math.max(1000, Math.floor(ttlMs / 3)));
  renew.unref();
  return {
    record,
    async release() {
      if (released) return;
      released = true;
      clearInterval(renew);
      await storage.delete(keys.lease(name));
    },
  };
}
