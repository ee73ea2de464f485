/**
 * What a user gets from `npm install pgforever`: the release tarballs npm/pack.sh builds for this
 * host's platform, installed into an empty project, must run the whole loop on a real PostgreSQL
 * with the prebuilt addon and archive client they carry, and nothing from this checkout.
 */
import { execFile } from 'node:child_process';
import { access, constants, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../support/os-user.js';
import { makeServerUserDir, startCluster, startClusterFromDirectory, waitFor, type Cluster } from '../support/postgres.js';

const checkout = resolve(import.meta.dirname, '../..');
const platform = `linux-${process.arch}-gnu`;

describe('the npm packages a release publishes', () => {
  const scratch: string[] = [];
  const clusters: Cluster[] = [];
  let project: string;
  let cli: string;
  let tarballs: string[];

  beforeAll(async () => {
    const packDir = await mkdtemp(join(tmpdir(), 'pgf-tarballs-'));
    scratch.push(packDir);
    // cargo-zigbuild compiles the addon for glibc 2.17 from scratch on a fresh machine: about a minute.
    const { stdout } = await promisify(execFile)('bash', [join(checkout, 'npm/pack.sh'), packDir, platform], { cwd: checkout, maxBuffer: 16 << 20 });
    const { version } = JSON.parse(await readFile(join(checkout, 'package.json'), 'utf8')) as { version: string };
    tarballs = stdout.trim().split('\n').slice(-2);
    expect(tarballs.map((path) => path.slice(packDir.length + 1))).toEqual([`pgforever-native-${platform}-${version}.tgz`, `pgforever-${version}.tgz`]);

    project = await makeServerUserDir('pgf-installed-');
    scratch.push(project);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'pgforever-install-check', private: true }));
    // The platform tarball stands in for the registry's copy that pgforever's optionalDependencies name.
    await promisify(execFile)('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs], { cwd: project, maxBuffer: 16 << 20 });
    cli = join(project, 'node_modules/pgforever/bin/pgforever.js');
  }, 900_000);

  afterAll(async () => {
    for (const cluster of clusters) await cluster.destroy();
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  it('carry the addon and the archive client in the platform package, and the archive fast path uses them', async () => {
    const installed = join(project, 'node_modules');
    expect((await readdir(join(installed, 'pgforever/src/native'))).filter((name) => name.endsWith('.node'))).toEqual([]);
    expect((await readdir(join(installed, '@pgforever', `native-${platform}`))).sort()).toEqual(['README.md', 'package.json', 'pgforever-archive', `pgforever.${platform}.node`]);
    await access(join(installed, '@pgforever', `native-${platform}`, 'pgforever-archive'), constants.X_OK);

    const repo = join(project, 'repo');
    const { stdout } = await run(process.execPath, [cli, 'archive-command', '--json', '--repo', repo]);
    const commands = JSON.parse(stdout) as { archive_command: string; restore_command: string };
    const client = join(installed, '@pgforever', `native-${platform}`, 'pgforever-archive');
    expect(commands.archive_command.startsWith(`${client} push `)).toBe(true);
    expect(commands.archive_command).toContain(`--cli ${cli} `);
    expect(commands.restore_command.startsWith(`${client} get `)).toBe(true);
  });

  it('without the platform package, a command fails with one line naming the package to install', async () => {
    const bare = await mkdtemp(join(tmpdir(), 'pgf-installed-bare-'));
    scratch.push(bare);
    await writeFile(join(bare, 'package.json'), JSON.stringify({ name: 'pgforever-install-check', private: true }));
    await promisify(execFile)('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--omit=optional', tarballs.at(-1)!], { cwd: bare, maxBuffer: 16 << 20 });
    const failed = run(process.execPath, [join(bare, 'node_modules/pgforever/bin/pgforever.js'), 'verify', '--repo', join(bare, 'repo')]);
    await expect(failed).rejects.toMatchObject({ exitCode: 1 });
    const { stderr } = (await failed.catch((err: unknown) => err)) as { stderr: string };
    expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^pgforever: NATIVE_UNAVAILABLE: .*install @pgforever/native-${platform} `))]);
  });

  it('archive, back up and restore a real cluster exactly', async () => {
    const repo = join(project, 'repo');
    const { stdout } = await run(process.execPath, [cli, 'archive-command', '--json', '--repo', repo]);
    const { archive_command } = JSON.parse(stdout) as { archive_command: string };
    const source = await startCluster({ settings: { wal_level: 'replica', archive_mode: 'on', archive_command } });
    clusters.push(source);
    const pgforever = (args: string[]) =>
      run(process.execPath, [cli, ...args, '--repo', repo, '--log-level', 'warn'], { asServerUser: true, env: { ...process.env, ...source.env, PGFOREVER_PGDATA: source.pgdata } });

    await pgforever(['init']);
    await source.query('CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g');
    await pgforever(['backup']);
    await source.query('INSERT INTO t SELECT g, md5(g::text) FROM generate_series(50001, 60000) g');
    const [expected] = await source.query<{ digest: string }>("SELECT md5(string_agg(g || ':' || h, ',' ORDER BY g)) AS digest FROM t");
    await source.waitForArchived(await source.switchWal());
    const [archiver] = await source.query<{ failed: string }>('SELECT failed_count::text AS failed FROM pg_stat_archiver');
    expect(archiver!.failed).toBe('0');

    const target = await makeServerUserDir('pgf-installed-restore-');
    scratch.push(target);
    await pgforever(['restore', '--pgdata', join(target, 'data')]);
    const restored = await startClusterFromDirectory(join(target, 'data'));
    clusters.push(restored);
    await waitFor(async () => (await restored.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false, { deadlineMs: 120_000, what: 'recovery to end' });
    const [actual] = await restored.query<{ digest: string }>("SELECT md5(string_agg(g || ':' || h, ',' ORDER BY g)) AS digest FROM t");
    expect(actual).toEqual(expected);
  });
});
