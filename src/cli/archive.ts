import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { openStorage } from '../storage/index.js';
import { Repository } from '../repo/index.js';
import { getWalFile, pushWalFile } from '../wal/archive.js';
import { commandContext, printJson, withCommonOptions } from './common.js';
import type { Settings } from '../config/index.js';

type Flags = Record<string, unknown> & { config?: string; json?: boolean };

async function openRepo(settings: Settings): Promise<Repository> {
  return Repository.open(await openStorage(settings.repo, settings.s3));
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The archive and restore commands for this repository, as postgresql.conf should hold them. */
export function archiveCommands(settings: Settings, configPath?: string): { archive_command: string; restore_command: string } {
  const executable = resolve(fileURLToPath(import.meta.url), '../../../bin/pgforever.js');
  const line = (command: string, args: string) => {
    const repo = settings.repo.startsWith('s3://') ? settings.repo : resolve(settings.repo);
    const words = [process.execPath, executable, command, '--repo', repo];
    if (configPath) words.push('--config', resolve(configPath));
    return `${words.map(shellQuote).join(' ')} ${args}`;
  };
  return { archive_command: line('archive-push', '%p'), restore_command: line('archive-get', '%f %p') };
}

export function registerArchiveCommands(program: Command): void {
  withCommonOptions(program.command('archive-push').description('archive one WAL segment or history file (archive_command)').argument('<path>'))
    .action(async (path: string, flags: Flags) => {
      const { settings, log } = commandContext(flags);
      const repo = await openRepo(settings);
      const outcome = await pushWalFile(repo, path, settings.compressLevel);
      log.debug({ path, outcome }, 'archive-push');
    });

  withCommonOptions(program.command('archive-get').description('fetch one WAL segment or history file (restore_command); exit 1 when absent').argument('<name>').argument('<dest>'))
    .action(async (name: string, dest: string, flags: Flags) => {
      const { settings } = commandContext(flags);
      const repo = await openRepo(settings);
      if (!(await getWalFile(repo, name, dest))) process.exitCode = 1;
    });

  withCommonOptions(program.command('archive-command').description('print the archive_command and restore_command for this repository'), { json: true })
    .action((flags: Flags) => {
      const { settings, json } = commandContext(flags);
      const commands = archiveCommands(settings, flags.config);
      if (json) printJson(commands);
      else process.stdout.write(`archive_command = '${commands.archive_command.replace(/'/g, "''")}'\nrestore_command = '${commands.restore_command.replace(/'/g, "''")}'\n`);
    });
}
