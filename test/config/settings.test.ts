import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/index.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function configFile(content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgf-config-'));
  dirs.push(dir);
  const path = join(dir, 'pgforever.json');
  await writeFile(path, content);
  return path;
}

describe('loadSettings', () => {
  it('takes flags over PGFOREVER_* variables over the config file', async () => {
    const config = await configFile(JSON.stringify({ repo: '/from/file', compressLevel: 5, processMax: 3, s3: { region: 'eu-west-1', conditionalWrites: false }, retention: { retainFull: 4 } }));
    const fromFile = loadSettings({ config }, {});
    expect(fromFile).toMatchObject({ repo: '/from/file', compressLevel: 5, processMax: 3, s3: { region: 'eu-west-1', conditionalWrites: false }, retention: { retainFull: 4 } });
    const fromEnv = loadSettings({ config }, { PGFOREVER_REPO: '/from/env', PGFOREVER_COMPRESS_LEVEL: '7' });
    expect(fromEnv).toMatchObject({ repo: '/from/env', compressLevel: 7, processMax: 3 });
    const fromFlags = loadSettings({ config, repo: '/from/flag' }, { PGFOREVER_REPO: '/from/env' });
    expect(fromFlags.repo).toBe('/from/flag');
  });

  it('explains what is missing or wrong in one line', async () => {
    expect(() => loadSettings({}, {})).toThrow(/no repository given: pass --repo/);
    expect(() => loadSettings({ repo: '/r' }, { PGFOREVER_COMPRESS_LEVEL: '42' })).toThrow(/compress level must be a whole number from 1 to 19, got 42/);
    expect(() => loadSettings({ repo: '/r', logLevel: 'loud' }, {})).toThrow(/log level must be one of/);
    const broken = await configFile('{ not json');
    expect(() => loadSettings({ config: broken }, {})).toThrow(/is not valid JSON/);
    expect(() => loadSettings({ config: '/no/such/file.json' }, {})).toThrow(/cannot read config file/);
  });
});
