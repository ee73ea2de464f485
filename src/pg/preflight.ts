/**
 * Checks before a backup touches anything: the data directory we read is the one the connected
 * server runs on, the role may run the backup functions, and WAL archiving is on (without it a
 * backup cannot be made consistent).
 */
import { readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { PgfError } from '../errors/index.js';
import type { ServerConnection, ServerInfo } from './server.js';

/** pg_control starts with the system identifier, a little-endian uint64. */
export async function systemIdentifierOnDisk(pgdata: string): Promise<string> {
  let control: Buffer;
  try {
    control = await readFile(join(pgdata, 'global', 'pg_control'));
  } catch (err) {
    throw new PgfError('PGDATA_MISMATCH', `${pgdata} is not a PostgreSQL data directory (no readable global/pg_control): pass the server's data directory as --pgdata`, { cause: err });
  }
  if (control.length < 8) throw new PgfError('PGDATA_MISMATCH', `${pgdata}/global/pg_control is too short to be a PostgreSQL control file`);
  return control.readBigUInt64LE(0).toString();
}

/**
 * The data directory to read: --pgdata, or the server's own. Its pg_control must name the same
 * cluster as the server; `samePath` is false when it is reached by another path (a bind mount, or a
 * server that sees its files elsewhere), which the caller reports.
 */
export async function checkDataDirectory(pgdata: string | undefined, server: ServerInfo): Promise<{ dir: string; samePath: boolean }> {
  const dir = pgdata ?? server.dataDirectory;
  const onDisk = await systemIdentifierOnDisk(dir);
  if (onDisk !== server.systemIdentifier) {
    throw new PgfError(
      'PGDATA_MISMATCH',
      `${dir} belongs to cluster ${onDisk} but the connected server is cluster ${server.systemIdentifier}: point --pgdata and the connection at the same server`,
    );
  }
  const [mine, theirs] = await Promise.all([realpath(dir), realpath(server.dataDirectory).catch(() => server.dataDirectory)]);
  return { dir, samePath: mine === theirs };
}

export async function checkBackupPrivileges(connection: ServerConnection): Promise<void> {
  const fn = connection.major >= 15 ? 'pg_backup_start(text, boolean)' : 'pg_start_backup(text, boolean, boolean)';
  const [row] = await connection.query<{ ok: boolean; superuser: boolean; role: string }>(
    `SELECT has_function_privilege(current_user, $1, 'EXECUTE') AS ok,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser, current_user AS role`,
    [fn],
  );
  if (!row || (!row.ok && !row.superuser)) {
    throw new PgfError(
      'PG_PRIVILEGE',
      `role ${row?.role ?? '?'} may not run ${fn.split('(')[0]}: connect as a superuser or GRANT EXECUTE ON FUNCTION ${fn} (and the stop function) TO ${row?.role ?? 'the role'}`,
    );
  }
}

export async function checkArchiving(connection: ServerConnection): Promise<void> {
  const settings = await connection.archiveSettings();
  if (settings.walLevel === 'minimal') {
    throw new PgfError('PG_SETTING', 'wal_level is minimal: set wal_level = replica in postgresql.conf and restart the server');
  }
  if (settings.archiveMode === 'off') {
    throw new PgfError('PG_SETTING', 'archive_mode is off: set archive_mode = on and archive_command to what `pgforever archive-command` prints, then restart the server');
  }
}
