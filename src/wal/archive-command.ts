/**
 * The archive_command and restore_command to configure for a repository, using the fastest path
 * installed: the `pgforever-archive` executable (crates/archive-client) when it is there, else
 * Node with the CLI. PostgreSQL runs both through `sh -c` in the data directory.
 *
 * Where the executable comes from: `npm run build` builds it into `target/release/` of a checkout;
 * an npm installation gets it from the per-platform package `@pgforever/native-<platform>` beside
 * the napi addon (`pgforever-archive` next to `pgforever.<platform>.node`).
 */
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultSpool, repositoryLocation } from './spool.js';

export interface ArchiveCommands {
  archive_command: string;
  restore_command: string;
}

export interface ArchiveCommandOptions {
  /** --config to pass on (made absolute). */
  config?: string;
  /** The spool directory; default `pg_wal/pgforever/<key>` in the data directory. */
  spool?: string;
  /** The client executable; default: the one installed, if any (null: use Node). */
  client?: string | null;
}

// Two levels below the package root, from src/wal (tests), dist/wal and dist/cli-bundle (the built CLI) alike.
const packageRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const require = createRequire(import.meta.url);

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The installed `pgforever-archive`, or undefined. */
export function archiveClientPath(): string | undefined {
  const built = join(packageRoot, 'target', 'release', 'pgforever-archive');
  if (executable(built)) return built;
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch as string];
  if (process.platform !== 'linux' || arch === undefined) return undefined;
  try {
    const packaged = require.resolve(`@pgforever/native-linux-${arch}-gnu/pgforever-archive`);
    return executable(packaged) ? packaged : undefined;
  } catch {
    return undefined;
  }
}

export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

const cli = join(packageRoot, 'bin', 'pgforever.js');

function commonOptions(repo: string, options: ArchiveCommandOptions): string[] {
  return ['--repo', repositoryLocation(repo), ...(options.config ? ['--config', resolve(options.config)] : [])];
}

/** The client and the options every one of its commands takes, or undefined without the client. */
function clientInvocation(repo: string, options: ArchiveCommandOptions): { client: string; shared: string[] } | undefined {
  const client = options.client === undefined ? archiveClientPath() : (options.client ?? undefined);
  if (client === undefined) return undefined;
  const spool = options.spool ?? defaultSpool('pg_wal', repo);
  return { client, shared: ['--spool', spool, '--node', process.execPath, '--cli', cli, ...commonOptions(repo, options)] };
}

export function archiveCommands(repo: string, options: ArchiveCommandOptions = {}): ArchiveCommands {
  const common = commonOptions(repo, options);
  const line = (words: string[], args: string) => `${words.map(shellQuote).join(' ')} ${args}`;
  const invocation = clientInvocation(repo, options);
  if (invocation !== undefined) {
    const { client, shared } = invocation;
    return { archive_command: line([client, 'push', ...shared], '"%p"'), restore_command: line([client, 'get', ...shared], '%f "%p"') };
  }
  const spool = options.spool ? ['--spool', options.spool] : [];
  return {
    archive_command: line([process.execPath, cli, 'archive-push', ...common, ...spool], '"%p"'),
    restore_command: line([process.execPath, cli, 'archive-get', ...common, ...spool], '%f "%p"'),
  };
}

/** The two lines for postgresql.conf. */
export function postgresqlConfLines(commands: ArchiveCommands): string {
  const quote = (value: string) => `'${value.replace(/'/g, "''")}'`;
  return `archive_command = ${quote(commands.archive_command)}\nrestore_command = ${quote(commands.restore_command)}\n`;
}

/**
 * Starts, in the background, what recovery in `pgdata` will use: `pgforever-archive prefetch`
 * starts the archive daemon there and has it fetch `name` (the segment of the backup's redo point,
 * recovery's first unless its checkpoint record lies in a later one), so that the server's first
 * restore_command calls find a warm daemon (its cold start is a few hundred milliseconds) and the
 * segment fetched. Nothing waits for it and nothing depends on it: without the client, or if it
 * fails, restore_command starts the daemon itself.
 */
export async function prefetchForRecovery(repo: string, pgdata: string, name: string, options: ArchiveCommandOptions = {}): Promise<void> {
  const invocation = clientInvocation(repo, options);
  // As root, the directory is for a server that will run as someone else once it is handed over:
  // a daemon of root's would serve (and own the files of) that server's restore_command.
  if (invocation === undefined || process.getuid?.() === 0) return;
  // Imported here: every command loads this module, only restore spawns.
  const { spawn } = await import('node:child_process');
  const child = spawn(invocation.client, ['prefetch', ...invocation.shared, name], { cwd: pgdata, detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
}
