import type { Command } from 'commander';
import { openStorage } from '../storage/index.js';
import { PgfError } from '../errors/index.js';
import type { VerifyReport } from '../verify/index.js';
import { commandContext, printJson, withCommonOptions } from './common.js';

type Flags = Record<string, unknown> & { json?: boolean; backup?: string; full?: boolean };

function render(r: VerifyReport): string {
  const c = r.checked;
  const lines = [
    `checked ${c.backups} backup(s), ${c.extentLists} extent list(s), ${c.extents} extent reference(s), ${c.walFiles} WAL file(s)` +
      (r.full ? `; re-read ${c.packs} pack(s) and ${(c.bytesReread / 1048576).toFixed(1)} MiB` : ''),
  ];
  if (r.ok) lines.push('no problems found');
  for (const p of r.problems) {
    lines.push(`${p.kind} ${p.object}: ${p.message}${p.backups.length > 0 ? ` [breaks ${p.backups.join(', ')}]` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerVerifyCommands(program: Command): void {
  withCommonOptions(program.command('verify').description('check manifests, extents and WAL continuity; --full re-hashes every stored object'), { json: true })
    .option('--backup <id>', 'verify one backup and the WAL recovery from it needs')
    .option('--full', 're-read every pack and WAL object and re-hash every extent')
    .action(async (flags: Flags) => {
      const { settings, json } = commandContext(flags);
      const storage = await openStorage(settings.repo, settings.s3);
      try {
        const [{ Repository }, { verifyRepository }] = await Promise.all([import('../repo/index.js'), import('../verify/index.js')]);
        const repo = await Repository.open(storage);
        if (flags.backup !== undefined && !(await repo.listBackups()).includes(flags.backup)) {
          throw new PgfError('USAGE', `no backup ${flags.backup} in ${repo.location}: pgforever info lists them`);
        }
        const report = await verifyRepository(repo, { ...(flags.backup !== undefined ? { backup: flags.backup } : {}), full: flags.full === true, parallel: settings.processMax });
        if (json) printJson(report);
        else process.stdout.write(render(report));
        if (!report.ok) {
          throw new PgfError('VERIFY_FAILED', `${report.problems.length} problem(s) found in ${repo.location}; see the report above`);
        }
      } finally {
        await storage.close();
      }
    });
}
