// The benchmark's clusters and the tools attached to them. Two clusters, built once per run and only
// while needed: `pgbench` (pgbench at SCALE) and `realistic` (documents and a time series of about
// the same size). Each archives to pgforever and to pgBackRest at once, so either tool's backups and
// point-in-time restores find every WAL segment they need.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from './cluster.js';
import { loadPgbench, loadRealistic, workloadScripts } from './data.js';
import { PgBackRest } from './pgbackrest.js';
import { Pgforever, Unavailable } from './pgforever.js';
import { CommandFailed } from './proc.js';
import { dropCaches, log } from './util.js';

/** Why a pgforever step did not give a figure: a missing command, or its failure's first line. */
export function reasonOf(error) {
  if (error instanceof Unavailable) return error.message;
  if (error instanceof CommandFailed) {
    // pgforever's own message ("pgforever: CODE: ..."), or the error line of a Node.js crash (whose
    // first line is only a source location).
    const lines = error.tail.split('\n').map((l) => l.trim()).filter(Boolean);
    const line = lines.find((l) => /^pgforever: |^\w*Error\b/.test(l)) ?? lines[0] ?? `exit ${error.code}`;
    return `failed: ${line.slice(0, 200)}`;
  }
  return `failed: ${String(error?.message ?? error).split('\n')[0].slice(0, 200)}`;
}

export class BenchCluster {
  constructor(name, dir, cluster, cfg) {
    this.name = name;
    this.dir = dir;
    this.cluster = cluster;
    this.cfg = cfg;
    this.pgbackrest = null;
    this.pgforever = null;
    /** Why pgforever cannot be measured on this cluster (null when it can). */
    this.pgforeverReason = null;
    this.pgforeverArchive = null;
    /** archive_commands of further pgforever repositories (the month's expiring one). */
    this.extraArchives = [];
    this.scripts = workloadScripts(dir, cfg.scale);
  }

  /**
   * Attaches a fresh pgforever repository and a pgBackRest configuration (`repos` as in PgBackRest)
   * and sets the archive_command to push to both.
   */
  async attachTools(tag, repos) {
    const pgbackrest = new PgBackRest(join(this.dir, `pgbackrest-${tag}`), this.cluster, { repos, processMax: this.cfg.processMax });
    const pgforever = new Pgforever(join(this.dir, `pgforever-${tag}`), this.cluster, { processMax: this.cfg.processMax });
    let reason = null;
    let archive = null;
    try {
      await pgforever.init();
      archive = await pgforever.archiveCommand();
    } catch (error) {
      reason = reasonOf(error);
      log(`pgforever on ${this.name}: ${reason}`);
    }
    this.pgbackrest = pgbackrest;
    this.pgforever = pgforever;
    this.pgforeverReason = reason;
    this.pgforeverArchive = archive;
    this.extraArchives = [];
    await this.archiveTo('pgbackrest');
    await pgbackrest.stanzaCreate();
  }

  /** One more pgforever repository on this cluster, archived to beside the attached tools. */
  async attachExtraPgforever(tag) {
    const pgforever = new Pgforever(join(this.dir, `pgforever-${tag}`), this.cluster, { processMax: this.cfg.processMax });
    await pgforever.init();
    this.extraArchives.push(await pgforever.archiveCommand());
    await this.archiveTo('pgbackrest');
    return pgforever;
  }

  /**
   * archive_command pushing to every attached tool, the one being measured first (so no backup waits
   * on another tool's push of its last segment); all run, and PostgreSQL retries the segment unless
   * all succeeded.
   */
  async archiveTo(first) {
    const pgforever = [this.pgforeverArchive, ...this.extraArchives].filter(Boolean);
    const brCommand = this.pgbackrest.archiveCommand();
    const all = first === 'pgforever' ? [...pgforever, brCommand] : [brCommand, ...pgforever];
    if (all.length === 1) return this.cluster.setArchiveCommand(brCommand);
    await this.cluster.setArchiveCommand(`rc=0; ${all.map((c) => `${c} || rc=$?`).join('; ')}; exit $rc`);
  }

  /**
   * Before a measured backup: the measured tool's push first, every WAL segment archived, a clean
   * checkpoint (no tool pays for flushing what a workload left dirty), page cache dropped.
   */
  async quiesce(first) {
    await this.archiveTo(first);
    await this.cluster.waitArchiveIdle();
    await this.cluster.query('CHECKPOINT');
    dropCaches(this.cfg.dropCaches);
  }

  /** Label of the newest backup in a pgBackRest repository. */
  async pgbackrestLatest(repoName) {
    const { stdout } = await this.pgbackrest.run(`--repo=${this.pgbackrest.repo(repoName).index}`, '--output=json', 'info');
    const backups = JSON.parse(stdout)[0]?.backup ?? [];
    return backups.at(-1)?.label;
  }
}

const worlds = new Map();

/** The cluster `name` ('pgbench' or 'realistic'), built and loaded on first use. */
export async function benchCluster(name, ctx) {
  if (worlds.has(name)) return worlds.get(name);
  const dir = join(ctx.work, name);
  mkdirSync(dir, { recursive: true });
  for (const other of worlds.values()) await other.cluster.stop();
  log(`building the ${name} cluster (SCALE=${ctx.cfg.scale})`);
  const t0 = Date.now();
  const cluster = await Cluster.init(dir);
  await cluster.start();
  if (name === 'pgbench') await loadPgbench(cluster, ctx.cfg.scale);
  else await loadRealistic(cluster, ctx.cfg.scale);
  await cluster.query('CHECKPOINT');
  const [{ size }] = await cluster.query('SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database');
  const world = new BenchCluster(name, dir, cluster, ctx.cfg);
  world.databaseBytes = Number(size);
  log(`${name} cluster loaded: ${(Number(size) / 1e6).toFixed(0)} MB in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  worlds.set(name, world);
  return world;
}

/** Makes `name` the running cluster (one server at a time, so figures do not disturb each other). */
export async function useCluster(name, ctx) {
  const world = await benchCluster(name, ctx);
  for (const other of worlds.values()) if (other !== world) await other.cluster.stop();
  if (!world.cluster.running) await world.cluster.start();
  return world;
}
