/**
 * A PostgreSQL server this process starts itself on loopback: for the quickstart on the embedded
 * default, and for restore drills. It runs as the current user, which must not be root (initdb
 * refuses root; callers drop privileges first).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { PgfError } from '../errors/index.js';

const exec = promisify(execFile);

export interface LocalServerOptions {
  binDir: string;
  pgdata: string;
  socketDir: string;
  logFile: string;
  settings?: Record<string, string | number>;
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function settingLine(name: string, value: string | number): string {
  return typeof value === 'number' ? `${name} = ${value}` : `${name} = '${value.replace(/'/g, "''")}'`;
}

export class LocalServer {
  private constructor(
    readonly options: LocalServerOptions,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgresql://${process.env.USER ?? 'postgres'}@127.0.0.1:${this.port}/postgres`;
  }

  /** initdb with data checksums. */
  static async initdb(binDir: string, pgdata: string, user: string): Promise<void> {
    await exec(join(binDir, 'initdb'), ['-D', pgdata, '-U', user, '--data-checksums', '--auth=trust', '-E', 'UTF8', '--locale=C'], { env: { ...process.env, LC_ALL: 'C' } });
  }

  /** Writes the settings (port, sockets, extra) and starts the server, waiting until it accepts connections. */
  static async start(options: LocalServerOptions): Promise<LocalServer> {
    const port = await freeLoopbackPort();
    await mkdir(options.socketDir, { recursive: true, mode: 0o700 });
    const lines = [
      settingLine('listen_addresses', '127.0.0.1'),
      settingLine('port', port),
      settingLine('unix_socket_directories', options.socketDir),
      ...Object.entries(options.settings ?? {}).map(([k, v]) => settingLine(k, v)),
    ];
    await writeFile(join(options.pgdata, 'pgforever-local.conf'), `${lines.join('\n')}\n`);
    await writeFile(join(options.pgdata, 'postgresql.conf'), "include_if_exists = 'pgforever-local.conf'\n", { flag: 'a' });
    try {
      await exec(join(options.binDir, 'pg_ctl'), ['-D', options.pgdata, '-l', options.logFile, '-w', '-t', '300', 'start'], { env: { ...process.env, LC_ALL: 'C' } });
    } catch (err) {
      throw new PgfError('PG_UNREACHABLE', `PostgreSQL did not start in ${options.pgdata}: see ${options.logFile}`, { cause: err });
    }
    return new LocalServer(options, port);
  }

  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await exec(join(this.options.binDir, 'pg_ctl'), ['-D', this.options.pgdata, '-m', mode, '-w', 'stop']).catch(() => undefined);
  }
}
