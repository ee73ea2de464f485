import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isoUtc } from '../../src/time/utc.js';

const dist = fileURLToPath(new URL('../../dist/', import.meta.url));

/** Runs `body` in a fresh node process with createLogger imported from the built CLI; its stdout and stderr. */
function inChild(body: string): { stdout: string; stderr: string } {
  const script = `import { createLogger } from ${JSON.stringify(`${dist}log/index.js`)}; import { createRequire } from 'node:module'; ${body}`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`child failed (${child.status}): ${child.stderr}`);
  return { stdout: child.stdout, stderr: child.stderr };
}

describe('createLogger', () => {
  it('writes JSON lines with an ISO time and redacted secrets, only at or above its level', () => {
    const { stderr } = inChild(`
      const log = createLogger('info');
      log.debug('not shown');
      log.info({ password: 'hunter2', settings: { pgUrl: 'postgres://u:p@h/db' } }, 'hello');
    `);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as { time: string; msg: string; password: string; settings: { pgUrl: string } };
    expect(line.msg).toBe('hello');
    expect(line.password).toBe('[redacted]');
    expect(line.settings.pgUrl).toBe('[redacted]');
    expect(line.time).toBe(new Date(Date.parse(line.time)).toISOString());
    expect(Math.abs(Date.parse(line.time) - Date.now())).toBeLessThan(60_000);
  });

  it('loads pino only once a message passes the level', () => {
    const { stdout, stderr } = inChild(`
      const pinoLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((path) => path.includes('/pino/'));
      const log = createLogger('warn');
      log.info('quiet');
      log.debug('quieter');
      console.log(pinoLoaded());
      log.warn('loud');
      console.log(pinoLoaded());
    `);
    expect(stdout.trim().split('\n')).toEqual(['false', 'true']);
    expect(stderr).toContain('"msg":"loud"');
    expect(stderr).not.toContain('quiet');
  });
});

describe('isoUtc', () => {
  it('formats as toISOString does', () => {
    const times = [0, 1, 951_782_400_000, 1_764_619_317_212, 253_402_300_799_999];
    for (let i = 0; i < 1000; i++) times.push(Math.floor(Math.random() * 253_402_300_799_999));
    for (const time of times) expect(isoUtc(time)).toBe(new Date(time).toISOString());
  });
});
