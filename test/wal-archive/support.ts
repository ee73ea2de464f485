/**
 * Shared by the WAL archiving tests: running pgforever and the commands `archive-command` prints
 * exactly as PostgreSQL would (sh -c in the data directory, as the server's OS user).
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CommandError, run } from '../support/os-user.js';

export const bin = resolve(import.meta.dirname, '../../bin/pgforever.js');

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
}

async function finished(work: Promise<{ stdout: string; stderr: string }>): Promise<Finished> {
  try {
    return { code: 0, ...(await work) };
  } catch (err) {
    if (err instanceof CommandError) return { code: err.exitCode ?? -1, stdout: err.stdout, stderr: err.stderr };
    throw err;
  }
}

/** `pgforever <args>` as the server's OS user; never throws on a non-zero exit. */
export function pgforever(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Finished> {
  return finished(run(process.execPath, [bin, ...args], { asServerUser: true, env: { ...process.env, ...env }, ...(cwd ? { cwd } : {}) }));
}

/** A printed archive_command / restore_command with %p and %f filled in, run as PostgreSQL runs it. */
export function runConfigured(command: string, files: { p: string; f?: string }, pgdata: string, env: Record<string, string> = {}, asServerUser = true): Promise<Finished> {
  const line = command.replaceAll('%p', files.p).replaceAll('%f', files.f ?? '');
  return finished(run('/bin/sh', ['-c', line], { asServerUser, cwd: pgdata, env: { ...process.env, ...env } }));
}

export async function archiveCommandsFor(repo: string, extra: string[] = []): Promise<{ archive_command: string; restore_command: string }> {
  const result = await pgforever(['archive-command', '--json', '--repo', repo, ...extra]);
  if (result.code !== 0) throw new Error(`archive-command failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as { archive_command: string; restore_command: string };
}

/** The pid of the live archive daemon of a spool, from the last start line of its log. */
export async function daemonPid(spool: string): Promise<number | undefined> {
  const log = await readFile(resolve(spool, 'pusher.log'), 'utf8').catch(() => '');
  const starts = log.split('\n').filter((line) => line.includes('archive daemon started'));
  const last = starts.at(-1);
  if (last === undefined) return undefined;
  const pid = (JSON.parse(last) as { pid: number }).pid;
  // A killed daemon nobody has reaped yet is a zombie: it still has a /proc entry but serves nothing.
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const state = stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === undefined || state === 'Z' || state === 'X' ? undefined : pid;
}

/** Connections accepted on a unix socket path right now (from /proc/net/unix, state connected). */
export async function acceptedConnections(socketPath: string): Promise<number> {
  const table = await readFile('/proc/net/unix', 'utf8');
  return table.split('\n').filter((line) => line.endsWith(` ${socketPath}`) && line.trim().split(/\s+/)[5] === '03').length;
}

/** The process listening on 127.0.0.1:`port` (from /proc/net/tcp and the processes' descriptors). */
export async function pidListeningOn(port: number): Promise<number> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const row = (await readFile('/proc/net/tcp', 'utf8'))
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find((fields) => fields[1] === local && fields[3] === '0A');
  if (row === undefined) throw new Error(`nothing listens on 127.0.0.1:${port}`);
  const socket = `socket:[${row[9]}]`;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => []);
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === socket) return Number(pid);
    }
  }
  throw new Error(`no process holds the socket listening on 127.0.0.1:${port}`);
}
