// What the figures were measured on: machine, versions, and how much CPU other processes (other
// builds on a shared machine) took while the benchmark ran.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename } from 'node:path';
import { PG_BIN } from './cluster.js';
import { CHECKOUT } from './pgforever.js';

const output = (file, args, options = {}) => {
  const r = spawnSync(file, args, { encoding: 'utf8', ...options });
  return r.status === 0 ? r.stdout.trim() : '';
};

function disk() {
  const source = output('findmnt', ['-no', 'SOURCE', '--target', '/tmp']);
  const dev = basename(source).replace(/[0-9]+$/, '');
  const sysfs = `/sys/block/${dev}`;
  if (!existsSync(sysfs)) return source || 'unknown';
  const bytes = Number(readFileSync(`${sysfs}/size`, 'utf8')) * 512;
  const rotational = readFileSync(`${sysfs}/queue/rotational`, 'utf8').trim() === '1' ? 'rotational' : 'non-rotational';
  const virtio = existsSync(`${sysfs}/device/driver`) ? basename(readlinkSync(`${sysfs}/device/driver`)) : '';
  return `${dev} (${[virtio, rotational].filter(Boolean).join(', ')}, ${(bytes / 1e9).toFixed(0)} GB), /tmp on ${source}`;
}

export function machineInfo() {
  const model = cpus()[0]?.model?.trim() || 'unknown';
  return {
    cpus: cpus().length,
    cpuModel: model,
    memoryGiB: (totalmem() / 2 ** 30).toFixed(0),
    disk: disk(),
    os: existsSync('/etc/debian_version') ? `Debian ${readFileSync('/etc/debian_version', 'utf8').trim()}, Linux ${output('uname', ['-r'])}` : output('uname', ['-sr']),
  };
}

export function versions(pgbackrest) {
  const rev = output('git', ['rev-parse', '--short', 'HEAD'], { cwd: CHECKOUT });
  const dirty = output('git', ['status', '--porcelain', '--', 'src', 'crates', 'bin'], { cwd: CHECKOUT });
  return {
    postgresql: output(`${PG_BIN}/postgres`, ['--version']).replace(/^postgres \(PostgreSQL\) /, ''),
    pgbackrest,
    pgforever: `git ${rev}${dirty ? ' (plus uncommitted changes in src/crates/bin of the shared work tree)' : ''}`,
    node: process.version,
    zstd: output('zstd', ['--version']).replace(/^\*+ ?/, '').split(',')[0],
  };
}

/**
 * Samples every 5 s the CPU time of processes that are not this run's (not its descendants, not
 * running in or on its work directory, not kernel threads): the interference of a shared machine.
 */
export class InterferenceMonitor {
  constructor(workDir) {
    this.workDir = workDir;
    this.last = new Map();
    this.byCommand = new Map();
    this.otherTicks = 0;
    this.started = Date.now();
    this.tick = clockTick();
    this.cpuAtStart = cpuTicks();
    this.sample();
    this.timer = setInterval(() => this.sample(), 5000);
    this.timer.unref();
  }

  sample() {
    const parent = new Map();
    const info = new Map();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue;
      }
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(entry);
      parent.set(pid, Number(f[1]));
      info.set(pid, { comm, ticks: Number(f[11]) + Number(f[12]), start: f[19] });
    }
    const ours = (pid) => {
      for (let p = pid, depth = 0; p > 1 && depth < 64; p = parent.get(p) ?? 0, depth++) {
        if (p === process.pid) return true;
      }
      try {
        if (readlinkSync(`/proc/${pid}/cwd`).startsWith(this.workDir)) return true;
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(this.workDir);
      } catch {
        return false;
      }
    };
    const next = new Map();
    for (const [pid, { comm, ticks, start }] of info) {
      if (pid === 2 || parent.get(pid) === 2) continue;
      const key = `${pid}:${start}`;
      const before = this.last.get(key) ?? (this.last.size === 0 ? ticks : 0);
      next.set(key, ticks);
      const delta = ticks - before;
      if (delta > 0 && !ours(pid)) {
        this.otherTicks += delta;
        this.byCommand.set(comm, (this.byCommand.get(comm) ?? 0) + delta);
      }
    }
    this.last = next;
  }

  /** "other processes used N CPU-s in M min (x cores on average); busiest: ...; the hypervisor took y% (steal)" */
  summary() {
    clearInterval(this.timer);
    this.sample();
    const seconds = (Date.now() - this.started) / 1000;
    const cpu = this.otherTicks / this.tick;
    const top = [...this.byCommand.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([c, t]) => `${c} ${(t / this.tick).toFixed(0)} s`)
      .join(', ');
    const now = cpuTicks();
    const stolen = (now.steal - this.cpuAtStart.steal) / Math.max(1, now.total - this.cpuAtStart.total);
    return (
      `other processes used ${cpu.toFixed(0)} CPU-seconds in ${(seconds / 60).toFixed(1)} min, ${(cpu / seconds).toFixed(2)} cores on average${top ? ` (busiest: ${top})` : ''}; ` +
      `the hypervisor took ${(stolen * 100).toFixed(1)}% of the CPU time (steal), which slows whatever runs then`
    );
  }
}

let ticksPerSecond;
function clockTick() {
  ticksPerSecond ??= Number(output('getconf', ['CLK_TCK'])) || 100;
  return ticksPerSecond;
}

/** The first line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal... in ticks since boot. */
function machineCpuFields() {
  return readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
}

/** The machine's CPU time since boot from /proc/stat, in ticks: all of it and what the hypervisor stole. */
function cpuTicks() {
  const fields = machineCpuFields();
  return { total: fields.reduce((sum, n) => sum + n, 0), steal: fields[7] ?? 0 };
}

/** Seconds of CPU every process and the kernel have used since boot: user, nice, system, irq and softirq (not idle, I/O wait or steal). */
export function busyCpuSeconds() {
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = machineCpuFields();
  return (user + nice + system + irq + softirq) / clockTick();
}
