// pgforever through its command line, exactly as a user runs it (bin/pgforever.js after `npm run
// build`), with the server reached through PGHOST/PGPORT/PGUSER. Commands still being built are
// reported as missing instead of failing the run.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chownToServer, run } from './proc.js';

export const CHECKOUT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = join(CHECKOUT, 'bin', 'pgforever.js');

/** A figure that could not be measured: shown in its table instead of numbers. */
export class Unavailable extends Error {}

let commands;
/** The commands `pgforever --help` lists (empty, with the reason, when the CLI does not start). */
export async function availableCommands() {
  if (commands) return commands;
  const { code, stdout, stderr } = await run(process.execPath, [BIN, '--help'], { allowFail: true });
  if (code !== 0) {
    commands = { names: new Set(), reason: `pgforever CLI does not start (${(stderr || stdout).trim().split('\n')[0]}); run npm run build` };
  } else {
    const section = stdout.split(/^Commands:$/m)[1] ?? '';
    commands = { names: new Set([...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1])), reason: null };
  }
  return commands;
}

/** Throws Unavailable naming what is missing unless every one of `names` is a command. */
export async function requireCommands(...names) {
  const { names: have, reason } = await availableCommands();
  if (reason) throw new Unavailable(`not yet available (${reason})`);
  const missing = names.filter((n) => !have.has(n));
  if (missing.length > 0) throw new Unavailable(`not yet available (command ${missing.join(', ')} missing)`);
}

export class Pgforever {
  constructor(repo, cluster, { processMax }) {
    this.repo = repo;
    this.cluster = cluster;
    this.processMax = processMax;
  }

  get env() {
    return { ...this.cluster.env, PGFOREVER_PROCESS_MAX: String(this.processMax) };
  }

  argv(command, ...args) {
    return [process.execPath, BIN, command, '--repo', this.repo, ...args];
  }

  async run(command, ...args) {
    await requireCommands(command);
    const [file, ...rest] = this.argv(command, ...args);
    return run(file, rest, { asServer: true, env: this.env });
  }

  /** Creates the repository directory (owned by the server OS user) and runs `pgforever init`. */
  async init() {
    await requireCommands('init');
    mkdirSync(this.repo, { recursive: true });
    chownToServer(this.repo);
    await this.run('init', '--pgdata', this.cluster.pgdata, '--log-level', 'warn');
  }

  /** The archive_command `pgforever archive-command` prints for this repository and data directory. */
  async archiveCommand() {
    await requireCommands('archive-command', 'archive-push');
    const { stdout } = await this.run('archive-command', '--json', '--pgdata', this.cluster.pgdata, '--log-level', 'warn');
    return JSON.parse(stdout).archive_command;
  }

  backupArgv(...extra) {
    return this.argv('backup', '--pgdata', this.cluster.pgdata, '--json', '--log-level', 'warn', ...extra);
  }

  restoreArgv(pgdata, ...extra) {
    return this.argv('restore', '--pgdata', pgdata, '--log-level', 'warn', ...extra);
  }

  /** Where the repository keeps archived WAL (excluded when counting backup bytes). */
  get walPath() {
    return join(this.repo, 'wal');
  }
}
