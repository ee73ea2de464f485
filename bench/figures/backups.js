// Full backups, and incrementals after each workload, pgforever next to pgBackRest's file-level
// incremental (repository `file`) and its block incremental (repository `block`: bundle + block).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { runWorkload } from '../lib/data.js';
import { chownToServer, measure } from '../lib/proc.js';
import { dirBytes, log, medianOf } from '../lib/util.js';
import { reasonOf, useCluster } from '../lib/world.js';

export const TOOLS = ['pgforever', 'file', 'block'];
export const TOOL_LABEL = {
  pgforever: 'pgforever',
  file: 'pgBackRest (file-level incr)',
  block: 'pgBackRest (bundle + block incr)',
};
const MAIN_REPOS = [
  { name: 'file', block: false },
  { name: 'block', block: true },
];

export function scratchDir(world) {
  const dir = join(world.dir, 'measure');
  mkdirSync(dir, { recursive: true });
  chownToServer(dir);
  return dir;
}

/** Bytes a tool's repository holds for backups (archived WAL excluded). */
export function storedBytes(world, tool) {
  if (tool === 'pgforever') return dirBytes(world.pgforever.repo) - dirBytes(world.pgforever.walPath);
  return dirBytes(world.pgbackrest.repoBackupPath(tool));
}

/**
 * One measured backup by `tool`; `type` is 'full' or 'incr' (pgforever decides itself: its first
 * backup in a repository is full, later ones incremental). Returns the measurement with storedBytes,
 * or { reason } when pgforever cannot be measured.
 */
export async function measureBackup(world, tool, type) {
  if (tool === 'pgforever' && world.pgforeverReason) return { reason: world.pgforeverReason };
  const before = storedBytes(world, tool);
  await world.quiesce(tool === 'pgforever' ? 'pgforever' : 'pgbackrest');
  const [file, ...args] = tool === 'pgforever' ? world.pgforever.backupArgv() : world.pgbackrest.backupArgv(tool, type);
  try {
    const m = await measure(file, args, { scratch: scratchDir(world), env: tool === 'pgforever' ? world.pgforever.env : world.cluster.env });
    m.storedBytes = storedBytes(world, tool) - before;
    if (tool === 'pgforever') {
      const summary = JSON.parse(m.stdout);
      m.id = summary.id;
      m.detection = summary.detection;
    } else {
      m.id = await world.pgbackrestLatest(tool);
    }
    world.backups[tool].push(m.id);
    delete m.stdout;
    delete m.stderr;
    log(`${world.name} ${type} ${tool}: ${m.wallS.toFixed(2)} s, stored ${(m.storedBytes / 1e6).toFixed(1)} MB`);
    return m;
  } catch (error) {
    if (tool !== 'pgforever') throw error;
    log(`pgforever backup on ${world.name}: ${error.message}`);
    return { reason: reasonOf(error) };
  }
}

/** Fresh repositories for every tool on `world`, archiving to them. */
export async function freshTools(world, tag) {
  await world.attachTools(tag, MAIN_REPOS);
  world.backups = { pgforever: [], file: [], block: [] };
}

/** Tools attached and a full backup in each (unmeasured here) for figures that need a parent. */
export async function ensureBackups(world) {
  if (!world.backups) await freshTools(world, 'main');
  for (const tool of TOOLS) {
    if (world.backups[tool].length === 0) await measureBackup(world, tool, 'full');
  }
}

/** Full backups: REPEAT rounds, each into fresh repositories; medians. */
export async function fullBackups(ctx, name) {
  const world = await useCluster(name, ctx);
  const samples = { pgforever: [], file: [], block: [] };
  const reasons = {};
  for (let round = 1; round <= ctx.cfg.repeat; round++) {
    await freshTools(world, `full${round}`);
    for (const tool of TOOLS) {
      const m = await measureBackup(world, tool, 'full');
      if (m.reason) reasons[tool] = m.reason;
      else samples[tool].push(m);
    }
  }
  const result = { databaseBytes: world.databaseBytes, rounds: ctx.cfg.repeat };
  for (const tool of TOOLS) result[tool] = samples[tool].length > 0 ? medianOf(samples[tool]) : { reason: reasons[tool] };
  return result;
}

/** For each workload: run it for WORKLOAD_SECONDS, then one incremental by each tool. */
export async function incrementals(ctx, name, workloads) {
  const world = await useCluster(name, ctx);
  await ensureBackups(world);
  const result = {};
  for (const workload of workloads) {
    log(`${name}: workload ${workload} for ${ctx.cfg.workloadSeconds} s`);
    await world.archiveTo('pgbackrest');
    const run = await runWorkload(world.cluster, workload, ctx.cfg.workloadSeconds, world.scripts);
    const row = { workload: { ...run, seconds: ctx.cfg.workloadSeconds } };
    for (const tool of TOOLS) row[tool] = await measureBackup(world, tool, 'incr');
    result[workload] = row;
  }
  return result;
}
