/**
 * One suite for every Storage implementation, run by storage.test.ts against a directory and a real
 * S3-compatible server. A backend supplies fresh empty storages and a way to see what a killed
 * writer left behind (temporary files, incomplete multipart uploads), which the API itself hides.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isPgfError } from '../../src/errors/index.js';
import type { S3Settings, Storage } from '../../src/storage/index.js';
import { waitFor } from '../support/wait.js';

export interface FreshStorage {
  storage: Storage;
  /** What openStorage takes to reach the same place, for a child process. */
  location: string;
  settings: S3Settings;
  /** Temporaries (files or uploads) under the storage, invisible to list(). */
  leftovers(): Promise<number>;
}

export interface Backend {
  /** A new empty storage; objects above `multipartSize` bytes take the backend's multi-request path. */
  fresh(): Promise<FreshStorage>;
  multipartSize: number;
}

const built = resolve(import.meta.dirname, '../../dist/storage/index.js');

async function keysOf(storage: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of storage.list(prefix)) keys.push(o.key);
  return keys;
}

export function describeStorage(name: string, backend: () => Backend): void {
  describe(`${name} storage`, () => {
    it('round-trips empty, small and multi-part objects, with their sizes', async () => {
      const { storage } = await backend().fresh();
      const big = randomBytes(backend().multipartSize * 2 + 12345);
      await storage.write('a/empty', Buffer.alloc(0));
      await storage.write('a/small', [Buffer.from('hello '), Buffer.alloc(0), Buffer.from('world')]);
      await storage.write('b/big', [big.subarray(0, 1000), big.subarray(1000)]);
      expect((await storage.read('a/empty')).length).toBe(0);
      expect((await storage.read('a/small')).toString()).toBe('hello world');
      expect((await storage.read('b/big')).equals(big)).toBe(true);
      // Around the size a local read takes in one call.
      for (const size of [65_535, 65_536, 65_537]) {
        await storage.write(`c/${size}`, big.subarray(0, size));
        expect((await storage.read(`c/${size}`)).equals(big.subarray(0, size))).toBe(true);
      }
      expect(await storage.stat('a/empty')).toMatchObject({ key: 'a/empty', size: 0 });
      expect(await storage.stat('b/big')).toMatchObject({ key: 'b/big', size: big.length });
      expect((await storage.stat('a/small'))!.modifiedMs).toBeGreaterThan(Date.now() - 3_600_000);
      await storage.write('a/small', Buffer.from('replaced'));
      expect((await storage.read('a/small')).toString()).toBe('replaced');
      await storage.close();
    });

    it('reads ranges, and refuses ranges past the end and missing objects', async () => {
      const { storage } = await backend().fresh();
      const data = randomBytes(backend().multipartSize + 4096);
      await storage.write('ranged', data);
      const across = backend().multipartSize - 100;
      expect((await storage.readRange('ranged', across, 300)).equals(data.subarray(across, across + 300))).toBe(true);
      expect((await storage.readRange('ranged', 0, 1)).equals(data.subarray(0, 1))).toBe(true);
      expect((await storage.readRange('ranged', data.length - 10, 10)).equals(data.subarray(-10))).toBe(true);
      await expect(storage.readRange('ranged', data.length - 10, 11)).rejects.toMatchObject({ code: 'STORAGE_IO' });
      await expect(storage.readRange('ranged', data.length + 5, 10)).rejects.toMatchObject({ code: 'STORAGE_IO' });
      await expect(storage.readRange('missing', 0, 10)).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
      // The same with the hint that more ranges follow (restore reading packs).
      const keep = { keepOpen: true };
      expect((await storage.readRange('ranged', across, 300, keep)).equals(data.subarray(across, across + 300))).toBe(true);
      await expect(storage.readRange('ranged', data.length - 10, 11, keep)).rejects.toMatchObject({ code: 'STORAGE_IO' });
      expect((await storage.readRange('ranged', 0, 1, keep)).equals(data.subarray(0, 1))).toBe(true);
      await expect(storage.readRange('missing', 0, 10, keep)).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
      await storage.close();
    });

    it('stats and deletes; missing objects are undefined, not found, or silently absent', async () => {
      const { storage } = await backend().fresh();
      expect(await storage.stat('nope')).toBeUndefined();
      expect(await storage.stat('nope/deeper')).toBeUndefined();
      await expect(storage.read('nope')).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
      await storage.write('x/y', Buffer.from('1'));
      await storage.delete('x/y');
      await storage.delete('x/y');
      expect(await storage.stat('x/y')).toBeUndefined();
      expect(await keysOf(storage, '')).toEqual([]);
      await storage.close();
    });

    it('lists by prefix across pages, in key order', async () => {
      const { storage } = await backend().fresh();
      const keys = Array.from({ length: 1205 }, (_, i) => `list/k${String(i).padStart(5, '0')}`);
      // '-' sorts before '/', so a flat key can come between a directory's name and its contents.
      const nested = ['list/a/b', 'list/a-c', 'list/a/c/d', 'list/a.d'];
      for (let i = 0; i < keys.length; i += 100) await Promise.all(keys.slice(i, i + 100).map((k) => storage.write(k, Buffer.from(k))));
      for (const k of [...nested, 'lisx', 'listing', 'other/list/k']) await storage.write(k, Buffer.from(k));
      const expected = [...keys, ...nested].sort();

      const first = await storage.listPage('list/');
      expect(first.objects.length).toBeGreaterThan(0);
      expect(first.objects.length).toBeLessThanOrEqual(1000);
      expect(first.continuation).toBeDefined();
      const paged = first.objects.map((o) => o.key);
      for (let c = first.continuation; c !== undefined; ) {
        const page = await storage.listPage('list/', c);
        paged.push(...page.objects.map((o) => o.key));
        c = page.continuation;
      }
      expect(paged).toEqual(expected);
      expect(await keysOf(storage, 'list/')).toEqual(expected);
      expect(await keysOf(storage, 'list/a')).toEqual(['list/a-c', 'list/a.d', 'list/a/b', 'list/a/c/d']);
      expect(await keysOf(storage, 'lis')).toHaveLength(expected.length + 2);
      const one = (await storage.listPage('list/k00007')).objects;
      expect(one).toEqual([{ key: 'list/k00007', size: 'list/k00007'.length, modifiedMs: expect.any(Number) }]);
      await storage.close();
    });

    for (const [what, size] of [
      ['small', () => 64],
      ['multi-part', () => backend().multipartSize + 1000],
    ] as const) {
      it(`lets exactly one of two racing ifAbsent writers of ${what} objects win`, async () => {
        const { storage, leftovers } = await backend().fresh();
        const rounds = 8;
        for (let round = 0; round < rounds; round++) {
          const contents = [randomBytes(size()), randomBytes(size())];
          const results = await Promise.allSettled(contents.map((c) => storage.write(`race/${round}`, c, { ifAbsent: true })));
          const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
          expect(winners).toHaveLength(1);
          const loser = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
          expect(isPgfError(loser.reason, 'STORAGE_EXISTS')).toBe(true);
          expect((await storage.read(`race/${round}`)).equals(contents[winners[0]!]!)).toBe(true);
        }
        expect(await leftovers()).toBe(0);
        await storage.close();
      });
    }

    it('keeps an existing object when an ifAbsent write of any size meets it, leaving nothing behind', async () => {
      const { storage, leftovers } = await backend().fresh();
      await storage.write('kept', Buffer.from('original'), { ifAbsent: true });
      for (const size of [10, backend().multipartSize * 2]) {
        await expect(storage.write('kept', randomBytes(size), { ifAbsent: true })).rejects.toMatchObject({ code: 'STORAGE_EXISTS' });
      }
      expect((await storage.read('kept')).toString()).toBe('original');
      expect(await leftovers()).toBe(0);
      await storage.close();
    });

    it('counts requests and bytes by type', async () => {
      const { storage } = await backend().fresh();
      await storage.write('counted', Buffer.alloc(1000));
      await storage.read('counted');
      await storage.readRange('counted', 10, 20);
      await storage.stat('counted');
      await storage.listPage('');
      await storage.delete('counted');
      expect(storage.stats).toEqual({ put: 1, get: 2, head: 1, list: 1, delete: 1, bytesOut: 1000, bytesIn: 1020 });
      await storage.close();
    });

    it('shows nothing of a writer killed mid-write, and removes its leftovers once they are stale', async () => {
      expect(existsSync(built), `${built} is missing: run npm run build:ts`).toBe(true);
      const { storage, location, settings, leftovers } = await backend().fresh();
      // 1 GiB from one reused MiB: long enough to be caught mid-write, cheap in memory.
      const script = `
        const { openStorage } = await import(process.env.PGF_STORAGE_MODULE);
        const storage = await openStorage(process.env.PGF_LOCATION, JSON.parse(process.env.PGF_SETTINGS));
        const chunk = Buffer.alloc(1 << 20, 7);
        await storage.write('victim', Array.from({ length: 1024 }, () => chunk));
        process.exit(3);
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, PGF_STORAGE_MODULE: built, PGF_LOCATION: location, PGF_SETTINGS: JSON.stringify(settings) },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`the writer exited early (${child.exitCode}): ${stderr}`);
          return (await leftovers()) > 0;
        },
        { deadlineMs: 60_000, what: 'the writer to be mid-write' },
      );
      child.kill('SIGKILL');
      expect(await exited).toBeNull();

      expect(await storage.stat('victim')).toBeUndefined();
      await expect(storage.read('victim')).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
      expect(await keysOf(storage, '')).toEqual([]);
      expect(await leftovers()).toBe(1);
      expect(await storage.removeStaleTemporaries(3_600_000)).toBe(0);
      expect(await leftovers()).toBe(1);
      await waitFor(async () => (await storage.removeStaleTemporaries(0)) === 1, { what: 'the leftover to be removed' });
      expect(await leftovers()).toBe(0);
      expect(await keysOf(storage, '')).toEqual([]);
      await storage.close();
    });
  });
}
