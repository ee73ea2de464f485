// pgBackRest (Debian's package) at its best settings: zstd, the same number of processes as pgforever,
// start-fast; file-level incremental, and block incremental (repo-bundle + repo-block; beta=y on 2.45).
// Each use gets its own configuration file, repositories, spool, lock and log paths in the run's work
// directory, with stanza `bench`.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chownToServer, run, writeServerFile } from './proc.js';

export const STANZA = 'bench';

export async function pgbackrestVersion() {
  const { stdout } = await run('pgbackrest', ['version']);
  return stdout.trim().replace(/^pgBackRest /, '');
}

export class PgBackRest {
  /**
   * `repos`: [{ name, block }]: one repository each (repo1..N), `block` for bundle + block incremental.
   * `processMax` applies to backup, restore and asynchronous archiving.
   */
  constructor(dir, cluster, { repos, processMax }) {
    this.dir = dir;
    this.cluster = cluster;
    this.repos = repos.map((repo, i) => ({ ...repo, index: i + 1, path: join(dir, `repo-${repo.name}`) }));
    this.processMax = processMax;
    this.config = join(dir, 'pgbackrest.conf');
    this.spool = join(dir, 'spool');
    for (const sub of ['spool', 'log', 'lock', 'conf.d', ...this.repos.map((r) => `repo-${r.name}`)]) mkdirSync(join(dir, sub), { recursive: true });
    const lines = [
      '[global]',
      ...this.repos.flatMap((r) => [
        `repo${r.index}-path=${r.path}`,
        `repo${r.index}-retention-full=9999`,
        ...(r.block ? [`repo${r.index}-bundle=y`, `repo${r.index}-block=y`] : []),
      ]),
      ...(this.repos.some((r) => r.block) ? ['beta=y'] : []),
      'compress-type=zst',
      `process-max=${processMax}`,
      'start-fast=y',
      'log-level-console=warn',
      'log-level-file=info',
      `log-path=${join(dir, 'log')}`,
      `lock-path=${join(dir, 'lock')}`,
      `spool-path=${this.spool}`,
      '',
      `[${STANZA}]`,
      `pg1-path=${cluster.pgdata}`,
      `pg1-port=${cluster.port}`,
      `pg1-socket-path=${cluster.socketDir}`,
      'pg1-user=postgres',
      '',
    ];
    writeServerFile(this.config, lines.join('\n'));
    chownToServer(dir);
  }

  repo(name) {
    const repo = this.repos.find((r) => r.name === name);
    if (!repo) throw new Error(`no pgBackRest repository ${name}`);
    return repo;
  }

  /** argv of a pgBackRest command with this configuration. */
  argv(...args) {
    return ['pgbackrest', `--config=${this.config}`, `--config-include-path=${join(this.dir, 'conf.d')}`, `--stanza=${STANZA}`, ...args];
  }

  /** archive_command: synchronous, or asynchronous with process-max processes pushing ahead. */
  archiveCommand({ async = false } = {}) {
    return [...this.argv(...(async ? ['--archive-async'] : [])), 'archive-push', '%p'].join(' ');
  }

  async run(...args) {
    const [file, ...rest] = this.argv(...args);
    return run(file, rest, { asServer: true, env: this.cluster.env });
  }

  stanzaCreate() {
    return this.run('stanza-create');
  }

  backupArgv(repoName, type) {
    return this.argv(`--repo=${this.repo(repoName).index}`, `--type=${type}`, 'backup');
  }

  /** Restore argv into `pgdata` (pg1-path overridden); `extra` adds --delta, --type=time, targets... */
  restoreArgv(repoName, pgdata, extra = []) {
    return this.argv(`--repo=${this.repo(repoName).index}`, `--pg1-path=${pgdata}`, ...extra, 'restore');
  }

  /** Bytes of backup data in a repository (backup/), and of archived WAL (archive/). */
  repoBackupPath(name) {
    return join(this.repo(name).path, 'backup');
  }

  repoArchivePath(name) {
    return join(this.repo(name).path, 'archive');
  }
}
