import { Command, CommanderError } from 'commander';
import { PgfError, errorLine } from '../errors/index.js';
import { registerArchiveCommands } from './archive.js';
import { registerBackupCommands } from './backup.js';
import { registerRestoreCommands } from './restore.js';
import { registerInfoCommands } from './info.js';
import { registerExpireCommands } from './expire.js';
import { registerVerifyCommands } from './verify.js';

// Each command imports what does its work when it runs (see the register functions): a restore or an
// archive-get started on a cold page cache then reads only its own modules from disk.
export function buildProgram(): Command {
  const program = new Command('pgforever')
    .description('incremental-forever physical backups with point-in-time recovery for PostgreSQL')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError();
  registerBackupCommands(program);
  registerArchiveCommands(program);
  registerRestoreCommands(program);
  registerInfoCommands(program);
  registerExpireCommands(program);
  registerVerifyCommands(program);
  return program;
}

/** Runs the CLI and returns the process exit status (CLI.md: 0 ok, 1 operational, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    // A command may end with a status of its own (archive-get: 1 = not found, said by nothing else).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(errorLine(err));
    return err instanceof PgfError ? err.exitCode : 1;
  }
}
