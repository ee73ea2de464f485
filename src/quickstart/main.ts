/**
 * Entry of `npm run quickstart`. initdb refuses root, so as root the whole run is handed to an
 * unprivileged user (created when missing) with a work directory it owns.
 */
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runQuickstart } from './run.js';

const unprivilegedUser = process.env.PGFOREVER_QUICKSTART_USER ?? 'pgforever-test';

function lookupUser(name: string): { uid: number; gid: number } | undefined {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
}

async function asUnprivileged(): Promise<number> {
  let user = lookupUser(unprivilegedUser);
  if (user === undefined) {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', unprivilegedUser]);
    user = lookupUser(unprivilegedUser);
  }
  if (user === undefined) throw new Error(`cannot create the unprivileged user ${unprivilegedUser}`);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    uid: user.uid,
    gid: user.gid,
    env: { ...process.env, HOME: '/tmp', USER: unprivilegedUser },
  });
  return new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
}

export async function main(): Promise<number> {
  if (process.getuid?.() === 0) return asUnprivileged();
  const keep = process.argv.includes('--keep');
  process.stdout.write('pgforever quickstart: embedded PostgreSQL 17, directory repository, archiving on\n\n');
  const report = await runQuickstart(keep, (line) => process.stdout.write(`  ${line}\n`));
  const total = report.steps.reduce((n, s) => n + s.ms, 0);
  process.stdout.write(`\n${report.ok ? 'OK' : 'FAILED'}: the restored cluster ${report.ok ? 'holds exactly' : 'does not hold'} the data committed up to the target (${(total / 1000).toFixed(1)} s in all)\n`);
  if (keep) process.stdout.write(`work directory kept: ${report.workDir}\n`);
  return report.ok ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main();
}
