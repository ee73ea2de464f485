/**
 * The server side of a backup: one held connection (the non-exclusive backup API needs the same
 * session for start and stop), version and settings checks, and the backup start/stop calls.
 */
import type pg from 'pg';
import { PgfError } from '../errors/index.js';
import { parseLsn, type Lsn } from './lsn.js';

export interface ServerInfo {
  /** e.g. 150004 */
  versionNum: number;
  major: number;
  systemIdentifier: string;
  dataDirectory: string;
  dataChecksums: boolean;
  walSegmentSize: number;
  blockSize: number;
  inRecovery: boolean;
  timeline: number;
}

export interface ArchiveSettings {
  walLevel: string;
  archiveMode: string;
  archiveCommand: string;
  archiveTimeout: number;
}

export interface Tablespace {
  oid: number;
  name: string;
  location: string;
}

export interface BackupStart {
  lsn: Lsn;
  time: Date;
}

export interface BackupStop {
  lsn: Lsn;
  backupLabel: string;
  tablespaceMap: string;
  time: Date;
}

export const supportedMajors = [14, 15, 16, 17, 18] as const;

function describeTarget(url: string | undefined): string {
  if (url) {
    try {
      const parsed = new URL(url);
      return `${parsed.hostname || 'local socket'}:${parsed.port || '5432'}`;
    } catch {
      return 'the server named by --pg-url';
    }
  }
  return `${process.env.PGHOST ?? 'local socket'}:${process.env.PGPORT ?? '5432'}`;
}

function connectionError(err: unknown, url: string | undefined): PgfError {
  const e = err as { code?: string; message?: string };
  const target = describeTarget(url);
  if (e.code === '28P01' || e.code === '28000') {
    return new PgfError('PG_PRIVILEGE', `PostgreSQL at ${target} refused the login (${e.message}): check PGUSER/PGPASSWORD or --pg-url`, { cause: err });
  }
  return new PgfError(
    'PG_UNREACHABLE',
    `cannot connect to PostgreSQL at ${target} (${e.code ?? e.message ?? 'unknown error'}): is the server running? set PGHOST/PGPORT or --pg-url`,
    { cause: err },
  );
}

export class ServerConnection {
  private constructor(
    private readonly client: pg.Client,
    readonly major: number,
  ) {}

  static async connect(url: string | undefined): Promise<ServerConnection> {
    // Loaded here: restore and the archive commands never talk to the server, and pg with its type
    // parsers is some thirty files to read at start.
    const { default: driver } = await import('pg');
    const client = new driver.Client({
      ...(url ? { connectionString: url } : {}),
      application_name: 'pgforever',
      connectionTimeoutMillis: 15_000,
    });
    try {
      await client.connect();
    } catch (err) {
      throw connectionError(err, url);
    }
    // Without a listener a dropped connection would crash the process instead of failing the query.
    client.on('error', () => undefined);
    const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    const versionNum = Number(rows[0]?.v);
    const major = Math.floor(versionNum / 10000);
    if (!(supportedMajors as readonly number[]).includes(major)) {
      await client.end();
      throw new PgfError('PG_VERSION', `PostgreSQL ${major} is not supported: pgforever supports ${supportedMajors.join(', ')}`);
    }
    return new ServerConnection(client, major);
  }

  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    try {
      const result = await this.client.query<R>(sql, params);
      return result.rows;
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === '42501') {
        throw new PgfError('PG_PRIVILEGE', `permission denied (${e.message}): connect as a superuser, or grant the backup functions to this role`, { cause: err });
      }
      if (e.code === undefined || e.code.startsWith('08') || e.code.startsWith('57P')) {
        throw new PgfError('PG_UNREACHABLE', `lost the connection to PostgreSQL: ${e.message ?? String(err)}`, { cause: err });
      }
      throw err;
    }
  }

  private async one<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R> {
    const rows = await this.query<R>(sql, params);
    const row = rows[0];
    if (row === undefined) throw new Error(`query returned no row: ${sql}`);
    return row;
  }

  async info(): Promise<ServerInfo> {
    const row = await this.one<{
      version: string;
      sysid: string;
      datadir: string;
      checksums: string;
      segsize: string;
      blksize: string;
      recovery: boolean;
      tli: number;
    }>(
      `SELECT current_setting('server_version_num') AS version,
              (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
              current_setting('data_directory') AS datadir,
              current_setting('data_checksums') AS checksums,
              current_setting('wal_segment_size') AS segsize,
              current_setting('block_size') AS blksize,
              pg_is_in_recovery() AS recovery,
              (SELECT timeline_id FROM pg_control_checkpoint()) AS tli`,
    );
    return {
      versionNum: Number(row.version),
      major: this.major,
      systemIdentifier: row.sysid,
      dataDirectory: row.datadir,
      dataChecksums: row.checksums === 'on',
      walSegmentSize: parseSize(row.segsize),
      blockSize: Number(row.blksize),
      inRecovery: row.recovery,
      timeline: Number(row.tli),
    };
  }

  async archiveSettings(): Promise<ArchiveSettings> {
    const row = await this.one<{ wal_level: string; archive_mode: string; archive_command: string; archive_timeout: string }>(
      `SELECT current_setting('wal_level') AS wal_level, current_setting('archive_mode') AS archive_mode,
              current_setting('archive_command') AS archive_command,
              extract(epoch FROM current_setting('archive_timeout')::interval)::text AS archive_timeout`,
    );
    return {
      walLevel: row.wal_level,
      archiveMode: row.archive_mode,
      archiveCommand: row.archive_command,
      archiveTimeout: Number(row.archive_timeout),
    };
  }

  async tablespaces(): Promise<Tablespace[]> {
    const rows = await this.query<{ oid: number; name: string; location: string }>(
      `SELECT oid::int AS oid, spcname AS name, pg_tablespace_location(oid) AS location
         FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`,
    );
    return rows.map((r) => ({ oid: Number(r.oid), name: r.name, location: r.location }));
  }

  /** Non-exclusive backup start with a fast (immediate) checkpoint unless told otherwise. */
  async backupStart(label: string, fast = true): Promise<BackupStart> {
    const sql =
      this.major >= 15
        ? 'SELECT pg_backup_start($1, $2)::text AS lsn, now() AS time'
        : 'SELECT pg_start_backup($1, $2, false)::text AS lsn, now() AS time';
    const row = await this.one<{ lsn: string; time: Date }>(sql, [label, fast]);
    return { lsn: parseLsn(row.lsn), time: row.time };
  }

  /** Ends the backup; waitForArchive makes the server wait until the stop segment is archived. */
  async backupStop(waitForArchive: boolean): Promise<BackupStop> {
    const sql =
      this.major >= 15
        ? 'SELECT lsn::text AS lsn, labelfile, spcmapfile, now() AS time FROM pg_backup_stop($1)'
        : 'SELECT lsn::text AS lsn, labelfile, spcmapfile, now() AS time FROM pg_stop_backup(false, $1)';
    const row = await this.one<{ lsn: string; labelfile: string; spcmapfile: string | null; time: Date }>(sql, [waitForArchive]);
    return { lsn: parseLsn(row.lsn), backupLabel: row.labelfile, tablespaceMap: row.spcmapfile ?? '', time: row.time };
  }

  /** Forces a WAL switch; returns the name of the segment that was closed. */
  async switchWal(): Promise<string> {
    const row = await this.one<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
    return row.name;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

/** `16MB`, `1GB`, `8192` as PostgreSQL shows sizes. */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*(B|kB|MB|GB|TB)?$/.exec(text.trim());
  if (!match) throw new Error(`unexpected size setting: ${text}`);
  const unit = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[match[2] ?? 'B'] ?? 1;
  return Number(match[1]) * unit;
}
