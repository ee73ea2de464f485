// PostgreSQL 15 clusters for the benchmark (Debian binaries), each in its own directory under the run's
// work directory, listening on 127.0.0.1 and a socket there, data checksums on, trusting local
// connections as superuser postgres, run as the server OS user.
import { mkdirSync, readdirSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { chownToServer, run } from './proc.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const HOST = '127.0.0.1';

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `predicate` until it returns something truthy; throws after `deadlineMs`. */
export async function waitFor(predicate, { deadlineMs = 60_000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + deadlineMs;
  let lastError;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await delay(intervalMs);
  }
}

const started = new Set();

/** Stops every server this run started (immediate mode); used at exit, on failure too. */
export async function stopAllClusters() {
  for (const cluster of [...started]) await cluster.stop('immediate').catch(() => undefined);
}

export class Cluster {
  /** A server over an existing data directory (a restored one) or a new one made by `init`. */
  constructor(dir, { pgdata = join(dir, 'data'), port } = {}) {
    this.dir = dir;
    this.pgdata = pgdata;
    this.socketDir = join(dir, 'sock');
    this.logFile = join(dir, 'server.log');
    this.port = port;
    this.running = false;
  }

  get env() {
    return {
      ...process.env,
      PGHOST: HOST,
      PGPORT: String(this.port),
      PGUSER: 'postgres',
      PGDATABASE: 'postgres',
      LANG: 'C',
    };
  }

  /** initdb with data checksums, then the settings every benchmark cluster shares, in postgresql.conf. */
  static async init(dir, settings = {}) {
    mkdirSync(dir, { recursive: true });
    const cluster = new Cluster(dir, { port: await freePort() });
    mkdirSync(cluster.socketDir, { recursive: true });
    chownToServer(dir);
    await run(join(PG_BIN, 'initdb'), ['-D', cluster.pgdata, '-U', 'postgres', '-A', 'trust', '--data-checksums', '-E', 'UTF8', '--locale=C'], {
      asServer: true,
    });
    const conf = {
      listen_addresses: `'${HOST}'`,
      port: cluster.port,
      unix_socket_directories: `'${cluster.socketDir}'`,
      wal_level: 'replica',
      archive_mode: 'on',
      // Until a tool is attached WAL is let go; no backup needs it.
      archive_command: `'/bin/true'`,
      max_wal_size: '8GB',
      checkpoint_timeout: '30min',
      shared_buffers: '256MB',
      max_parallel_workers_per_gather: 0,
      ...settings,
    };
    appendFileSync(
      join(cluster.pgdata, 'postgresql.conf'),
      '\n# pgforever benchmark\n' + Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n',
    );
    return cluster;
  }

  /** pg_ctl start; `options` are -c settings for this start only (a restored copy's port, say). */
  async start({ options = {}, wait = true } = {}) {
    mkdirSync(this.socketDir, { recursive: true });
    chownToServer(this.socketDir);
    const o = Object.entries({ port: this.port, unix_socket_directories: `'${this.socketDir}'`, listen_addresses: `'${HOST}'`, ...options })
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' ');
    started.add(this);
    this.running = true;
    await run(join(PG_BIN, 'pg_ctl'), ['-D', this.pgdata, '-l', this.logFile, '-o', o, ...(wait ? ['-w', '-t', '600'] : ['-W']), 'start'], {
      asServer: true,
    });
  }

  async stop(mode = 'fast') {
    if (!this.running) return;
    await run(join(PG_BIN, 'pg_ctl'), ['-D', this.pgdata, '-m', mode, '-w', '-t', '600', 'stop'], { asServer: true, allowFail: true });
    this.running = false;
    started.delete(this);
  }

  async connect(database = 'postgres') {
    const client = new pg.Client({ host: HOST, port: this.port, user: 'postgres', database });
    await client.connect();
    client.on('error', () => undefined);
    return client;
  }

  /** One statement on a fresh connection; returns the rows. */
  async query(sql, params = [], database = 'postgres') {
    const client = await this.connect(database);
    try {
      return (await client.query(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  async psql(args, { input, database = 'postgres' } = {}) {
    return run(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database, ...args], { asServer: true, env: this.env, input });
  }

  /** archive_command through ALTER SYSTEM (so it survives in a restored copy's postgresql.auto.conf). */
  async setArchiveCommand(command) {
    await this.query(`ALTER SYSTEM SET archive_command = ${quoteLiteral(command)}`);
    await this.query('SELECT pg_reload_conf()');
  }

  /** WAL segments waiting for the archiver (.ready files). */
  readyCount() {
    return readdirSync(join(this.pgdata, 'pg_wal', 'archive_status')).filter((f) => f.endsWith('.ready')).length;
  }

  /** Switches WAL and waits until the archiver has nothing left to do (every .ready file archived). */
  async waitArchiveIdle({ deadlineMs = 600_000 } = {}) {
    await this.query('SELECT pg_switch_wal()');
    await waitFor(() => this.readyCount() === 0, { deadlineMs, intervalMs: 50, what: 'the archiver to drain' });
  }

  /** Bytes of the relation files (base/ and global/): what a backup must read. */
  relationFiles() {
    const files = [];
    const walk = (dir) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.isFile() && /^\d+(\.\d+)?$/.test(entry.name)) files.push(path);
      }
    };
    walk(join(this.pgdata, 'base'));
    walk(join(this.pgdata, 'global'));
    return files;
  }
}

export function quoteLiteral(text) {
  return `'${text.replaceAll("'", "''")}'`;
}
