/**
 * What every command shares: the common flags of CLI.md, settings resolution, the logger, and the
 * mapping of failures to exit statuses (done once in main.ts).
 */
import type { Command } from 'commander';
import { loadSettings, type CommonFlags, type Settings } from '../config/index.js';
import { createLogger, type Logger } from '../log/index.js';

export interface CommandContext {
  settings: Settings;
  log: Logger;
  json: boolean;
}

export function withCommonOptions(command: Command, options: { json?: boolean } = {}): Command {
  command
    .option('--repo <location>', 'repository: a directory or s3://bucket/prefix (env PGFOREVER_REPO)')
    .option('--pgdata <dir>', 'PostgreSQL data directory (env PGDATA)')
    .option('--pg-url <url>', 'connection URL for the server (default: libpq environment PGHOST, PGPORT, PGUSER, PGDATABASE)')
    .option('--config <file>', 'JSON config file (default /etc/pgforever/pgforever.json when present)')
    .option('--log-level <level>', 'trace, debug, info, warn, error, fatal or silent');
  if (options.json) command.option('--json', 'print the result as JSON');
  return command;
}

export function commandContext(flags: CommonFlags & { json?: boolean } & Record<string, unknown>): CommandContext {
  const settings = loadSettings(flags);
  return { settings, log: createLogger(settings.logLevel), json: flags.json === true };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}
