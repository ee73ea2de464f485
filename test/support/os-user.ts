/**
 * The unprivileged OS user that test servers run as. initdb and postgres refuse to run as root, so when
 * the suite runs as root, servers (and their archive_command / restore_command children) run as
 * `pgforever-test`; otherwise they run as the current user and nothing here changes ownership.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { waitFor } from './wait.js';

export const TEST_OS_USER = 'pgforever-test';

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

let testUser: Promise<OsUser> | undefined;

/** The OS user servers run as: `pgforever-test` (created if missing) when root, else the current user. */
export function serverOsUser(): Promise<OsUser> {
  testUser ??= resolveServerOsUser();
  return testUser;
}

export function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

async function resolveServerOsUser(): Promise<OsUser> {
  if (!runningAsRoot()) {
    const info = userInfo();
    return { name: info.username, uid: info.uid, gid: info.gid };
  }
  const existing = await lookupUser(TEST_OS_USER);
  if (existing) return existing;
  // Parallel test workers may race to create the user; whoever loses finds it on the next poll.
  return waitFor(
    async () => {
      const found = await lookupUser(TEST_OS_USER);
      if (found) return found;
      await run('useradd', [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        TEST_OS_USER,
      ]).catch(() => undefined);
      return lookupUser(TEST_OS_USER);
    },
    { deadlineMs: 20_000, what: `OS user ${TEST_OS_USER}` },
  );
}

async function lookupUser(name: string): Promise<OsUser | null> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) {
      return { name, uid: Number(uid), gid: Number(gid) };
    }
  }
  return null;
}

export interface RunOptions {
  /** Run as the server OS user (only changes anything when running as root). */
  asServerUser?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Runs a program (no shell), collects its output, and throws CommandError on a non-zero exit. */
export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const user = options.asServerUser && runningAsRoot() ? await serverOsUser() : null;
  return new Promise((resolvePromise, reject) => {
    // libuv drops supplementary groups when uid/gid are set, so the child has only the test user's rights.
    const child = spawn(file, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const out = Buffer.concat(stdout).toString('utf8');
      const err = Buffer.concat(stderr).toString('utf8');
      if (code === 0) {
        resolvePromise({ stdout: out, stderr: err });
      } else {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        const text = `${file} ${args.join(' ')} failed (${how})\n${err || out}`;
        reject(new CommandError(text, code, out, err));
      }
    });
    // A program may exit without reading all its input; that is its answer, not a harness error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

function canTraverse(mode: number, uid: number, gid: number, user: OsUser): boolean {
  if (uid === user.uid) return (mode & 0o100) !== 0;
  if (gid === user.gid) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep);
}

/** Whether the server OS user can reach `path`: every ancestor directory must be searchable by it. */
export async function serverUserCanReach(path: string): Promise<boolean> {
  if (!runningAsRoot()) return true;
  const user = await serverOsUser();
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    const info = await stat(dir);
    if (!canTraverse(info.mode, info.uid, info.gid, user)) return false;
    if (dir === dirname(dir)) return true;
  }
}

/**
 * Lets the server OS user search every ancestor of `path`. Only directories under the system temp
 * directory (the tests' own mkdtemp dirs) are opened up; anything else that blocks it is an error, so
 * a test never loosens permissions of a home directory or the checkout.
 */
async function openAncestors(path: string): Promise<void> {
  const user = await serverOsUser();
  const temp = resolve(tmpdir());
  for (let dir = dirname(resolve(path)); dir !== dirname(dir); dir = dirname(dir)) {
    const info = await stat(dir);
    if (canTraverse(info.mode, info.uid, info.gid, user)) continue;
    if (!isInside(dir, temp)) {
      throw new Error(`${user.name} cannot reach ${path}: ${dir} is not searchable by it (mode ${(info.mode & 0o777).toString(8)})`);
    }
    await chmod(dir, (info.mode & 0o7777) | 0o001);
  }
}

/**
 * Makes `path` (recursively, symlinks not followed) owned by the server OS user and its ancestors
 * searchable by it: for data directories, tablespace locations, and repositories an archive_command
 * or restore_command writes to or reads from. A no-op unless running as root.
 */
export async function grantToServerUser(path: string): Promise<void> {
  if (!runningAsRoot()) return;
  const user = await serverOsUser();
  await openAncestors(path);
  await run('chown', ['-R', '-P', `${user.uid}:${user.gid}`, path]);
}

/** A new empty directory under the system temp directory, owned by the server OS user. */
export async function makeServerUserDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await grantToServerUser(dir);
  return dir;
}
