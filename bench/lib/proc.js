// Running commands for the benchmark: as the server OS user when root (initdb and postgres refuse
// root), measured with GNU time and the kernel's I/O accounting, and every process the run starts
// tracked so that it can be stopped at the end, on failure too.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, writeFileSync, chownSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const SERVER_OS_USER = 'pgforever-test';

export function runningAsRoot() {
  return process.getuid() === 0;
}

function lookupUser(name) {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return null;
}

let cachedUser;
/** The OS user servers and tools run as: pgforever-test when root (bench/setup.sh creates it), else us. */
export function serverUser() {
  if (cachedUser) return cachedUser;
  if (!runningAsRoot()) {
    const me = userInfo();
    cachedUser = { name: me.username, uid: me.uid, gid: me.gid };
  } else {
    cachedUser = lookupUser(SERVER_OS_USER);
    if (!cachedUser) throw new Error(`user ${SERVER_OS_USER} missing: run bench/setup.sh as root first`);
  }
  return cachedUser;
}

export function chownToServer(path) {
  if (!runningAsRoot()) return;
  const user = serverUser();
  spawnSync('chown', ['-R', `${user.uid}:${user.gid}`, path], { stdio: 'inherit' });
}

export function writeServerFile(path, text) {
  writeFileSync(path, text);
  if (runningAsRoot()) chownSync(path, serverUser().uid, serverUser().gid);
}

const children = new Set();

function spawnTracked(file, args, options) {
  const child = spawn(file, args, options);
  children.add(child);
  child.on('close', () => children.delete(child));
  return child;
}

export class CommandFailed extends Error {
  constructor(file, args, code, stdout, stderr) {
    const text = (stderr || stdout).trim().split('\n').slice(-15).join('\n');
    super(`${[file, ...args].join(' ')} exited with ${code}\n${text}`);
    this.code = code;
    this.stdout = stdout;
    this.stderr = stderr;
    this.tail = text;
  }
}

/**
 * Runs a program (no shell) and collects its output. `asServer` runs it as the server OS user;
 * `input` is written to its stdin (a string, or an async iterable of strings/Buffers for large data).
 * Throws CommandFailed on a non-zero exit unless `allowFail`.
 */
export function run(file, args, { asServer = false, env = process.env, cwd, input, allowFail = false } = {}) {
  const user = asServer && runningAsRoot() ? serverUser() : null;
  return new Promise((resolve, reject) => {
    const child = spawnTracked(file, args, {
      env,
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const status = code ?? signal;
      if (code === 0 || allowFail) resolve({ code: status, stdout, stderr });
      else reject(new CommandFailed(file, args, status, stdout, stderr));
    });
    child.stdin.on('error', () => undefined);
    feed(child.stdin, input).catch(reject);
  });
}

async function feed(stdin, input) {
  if (input === undefined || typeof input === 'string' || Buffer.isBuffer(input)) {
    stdin.end(input ?? '');
    return;
  }
  for await (const chunk of input) {
    if (!stdin.write(chunk)) await new Promise((resolve) => stdin.once('drain', resolve));
  }
  stdin.end();
}

/** Starts a long-running program (a workload); returns { child, done } where done resolves on exit. */
export function start(file, args, { asServer = false, env = process.env, cwd } = {}) {
  const user = asServer && runningAsRoot() ? serverUser() : null;
  const child = spawnTracked(file, args, {
    env,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  const out = [];
  const err = [];
  child.stdout.on('data', (c) => out.push(c));
  child.stderr.on('data', (c) => err.push(c));
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandFailed(file, args, code, stdout, stderr));
    });
  });
  return { child, done };
}

function readProcFile(pid, name) {
  try {
    return readFileSync(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return null;
  }
}

/** Sum of VmRSS (KiB) over `root` and all its descendants, from /proc. */
function treeRssKiB(root) {
  const parent = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcFile(entry, 'stat');
    if (!stat) continue;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parent.set(Number(entry), Number(fields[1]));
  }
  const tree = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  let total = 0;
  for (const pid of tree) {
    const match = /VmRSS:\s+(\d+)/.exec(readProcFile(pid, 'status') ?? '');
    if (match) total += Number(match[1]);
  }
  return total;
}

/**
 * Runs a command and measures it: wall time (monotonic clock), CPU time and the largest process's peak
 * RSS (GNU time, children included), bytes read from storage (read_bytes of /proc/<pid>/io of a shell
 * that waited for the command, so every waited-for descendant is counted) and bytes read through
 * read() calls (rchar, page cache hits included), and the peak of the RSS summed over the whole process
 * tree, sampled every 100 ms. `scratch` is a directory the command's user can write.
 */
export async function measure(file, args, { scratch, asServer = true, env = process.env, cwd, allowFail = false } = {}) {
  const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const timeFile = join(scratch, `time-${tag}`);
  const ioFile = join(scratch, `io-${tag}`);
  const wrapper = ['-f', '%e %U %S %M %I', '-o', timeFile, '/bin/sh', '-c', `"$@"; rc=$?; cat /proc/$$/io > ${ioFile}; exit $rc`, 'sh', file, ...args];
  const user = asServer && runningAsRoot() ? serverUser() : null;
  const started = process.hrtime.bigint();
  const child = spawnTracked('/usr/bin/time', wrapper, {
    env,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  const out = [];
  const err = [];
  child.stdout.on('data', (c) => out.push(c));
  child.stderr.on('data', (c) => err.push(c));
  let peakTreeKiB = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peakTreeKiB = Math.max(peakTreeKiB, treeRssKiB(child.pid));
      await delay(100);
    }
  })();
  const code = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, signal) => resolve(c ?? signal));
  });
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  running = false;
  await sampler;
  const stdout = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  if (code !== 0 && !allowFail) throw new CommandFailed(file, args, code, stdout, stderr);
  const timeLine = (readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '').split(' ');
  const [, user_s, sys_s, maxRssKiB, inblock] = timeLine.map(Number);
  const io = Object.fromEntries(
    readFileSync(ioFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split(': '))
      .map(([k, v]) => [k, Number(v)]),
  );
  return {
    code,
    stdout,
    stderr,
    wallS,
    cpuS: user_s + sys_s,
    maxRssKiB,
    peakTreeRssKiB: Math.max(peakTreeKiB, maxRssKiB),
    readBytes: io.read_bytes,
    rcharBytes: io.rchar,
    inblockBytes: inblock * 512,
  };
}

/** Processes whose command line or working directory is under `dir`: what the run left behind. */
export function processesUnder(dir) {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = (readProcFile(entry, 'cmdline') ?? '').split('\0').join(' ');
    let cwd = '';
    try {
      cwd = readlinkSync(`/proc/${entry}/cwd`);
    } catch {
      // gone, or not ours to read
    }
    if (cmdline.includes(dir) || cwd === dir || cwd.startsWith(dir + '/')) found.push({ pid: Number(entry), cmdline });
  }
  return found;
}

/** Stops every child this run spawned that is still running, by pid. */
export function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Kills (by pid) what still runs under `dir`, or only the processes `select` picks among them: TERM,
 * then KILL after a grace period.
 */
export async function killProcessesUnder(dir, { graceMs = 3000, select = () => true } = {}) {
  const find = () => processesUnder(dir).filter(select);
  let left = find();
  for (const { pid } of left) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (left.length > 0 && Date.now() < deadline) {
    await delay(100);
    left = find();
  }
  for (const { pid } of left) signal(pid, 'SIGKILL');
  return left;
}

function signal(pid, name) {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
