/**
 * Settings come from flags, then PGFOREVER_* environment variables, then the config file (--config,
 * default /etc/pgforever/pgforever.json when present). They are validated once, here, into a typed
 * object; nothing else reads process.env or the file.
 */
import { readFileSync, existsSync } from 'node:fs';
import { PgfError } from '../errors/index.js';
import type { S3Settings as StorageS3Settings } from '../storage/index.js';

export const defaultConfigPath = '/etc/pgforever/pgforever.json';

/** The S3 options a user can set; their meaning is documented where the storage uses them. */
export type S3Settings = Pick<
  StorageS3Settings,
  'endpoint' | 'region' | 'forcePathStyle' | 'accessKeyId' | 'secretAccessKey' | 'sessionToken' | 'conditionalWrites' | 'maxAttempts'
>;

export interface Settings {
  repo: string;
  pgdata?: string;
  pgUrl?: string;
  logLevel: LogLevel;
  /** zstd level for extents and WAL. */
  compressLevel: number;
  /** Parallel workers for reading, hashing, compressing and uploading. */
  processMax: number;
  s3: S3Settings;
  retention: RetentionSettings;
}

export interface RetentionSettings {
  retainFull?: number;
  retainDays?: number;
  retainPitrDays?: number;
}

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/** Flags as commander parsed them: only the shared ones matter here. */
export interface CommonFlags {
  repo?: string;
  pgdata?: string;
  pgUrl?: string;
  config?: string;
  logLevel?: string;
}

type Source = Record<string, unknown>;

const keys = {
  repo: 'REPO',
  pgdata: 'PGDATA',
  pgUrl: 'PG_URL',
  logLevel: 'LOG_LEVEL',
  compressLevel: 'COMPRESS_LEVEL',
  processMax: 'PROCESS_MAX',
  's3.endpoint': 'S3_ENDPOINT',
  's3.region': 'S3_REGION',
  's3.forcePathStyle': 'S3_FORCE_PATH_STYLE',
  's3.accessKeyId': 'S3_ACCESS_KEY_ID',
  's3.secretAccessKey': 'S3_SECRET_ACCESS_KEY',
  's3.sessionToken': 'S3_SESSION_TOKEN',
  's3.conditionalWrites': 'S3_CONDITIONAL_WRITES',
  's3.maxAttempts': 'S3_MAX_ATTEMPTS',
  'retention.retainFull': 'RETAIN_FULL',
  'retention.retainDays': 'RETAIN_DAYS',
  'retention.retainPitrDays': 'RETAIN_PITR_DAYS',
} as const;

type Key = keyof typeof keys;

function readConfigFile(path: string | undefined): Source {
  const file = path ?? (existsSync(defaultConfigPath) ? defaultConfigPath : undefined);
  if (file === undefined) return {};
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new PgfError('CONFIG_INVALID', `cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Source;
  } catch (cause) {
    throw new PgfError('CONFIG_INVALID', `config file ${file} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

function fromFile(file: Source, key: Key): unknown {
  let node: unknown = file;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Source)[part];
  }
  return node;
}

function fromFlags(flags: Source, key: Key): unknown {
  return key.includes('.') ? undefined : flags[key];
}

function integer(name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new PgfError('CONFIG_INVALID', `${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return n;
}

function text(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
}

function bool(name: string, value: unknown): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === true || value === 'true' || value === '1' || value === 'y') return true;
  if (value === false || value === 'false' || value === '0' || value === 'n') return false;
  throw new PgfError('CONFIG_INVALID', `${name} must be true or false, got ${String(value)}`);
}

/**
 * Resolves the settings. `extra` carries command-specific flags that share a name with a setting
 * (e.g. expire's --retain-full).
 */
export function loadSettings(flags: CommonFlags & Source, env: NodeJS.ProcessEnv = process.env): Settings {
  const file = readConfigFile(flags.config ?? env.PGFOREVER_CONFIG);
  const pick = (key: Key): unknown => {
    const flag = fromFlags(flags, key) ?? flags[key.split('.').pop() ?? key];
    if (flag !== undefined) return flag;
    const fromEnv = env[`PGFOREVER_${keys[key]}`];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return fromFile(file, key);
  };

  const repo = text(pick('repo'));
  if (repo === undefined) {
    throw new PgfError('USAGE', 'no repository given: pass --repo DIR|s3://bucket/prefix, set PGFOREVER_REPO, or add "repo" to the config file');
  }
  const logLevel = text(pick('logLevel')) ?? 'info';
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new PgfError('CONFIG_INVALID', `log level must be one of ${logLevels.join(', ')}, got ${logLevel}`);
  }
  return {
    repo,
    pgdata: text(pick('pgdata')) ?? text(env.PGDATA),
    pgUrl: text(pick('pgUrl')),
    logLevel: logLevel as LogLevel,
    compressLevel: integer('compress level', pick('compressLevel'), 1, 19) ?? 3,
    processMax: integer('process max', pick('processMax'), 1, 64) ?? 2,
    s3: {
      endpoint: text(pick('s3.endpoint')) ?? text(env.AWS_ENDPOINT_URL_S3) ?? text(env.AWS_ENDPOINT_URL),
      region: text(pick('s3.region')) ?? text(env.AWS_REGION) ?? text(env.AWS_DEFAULT_REGION),
      forcePathStyle: bool('s3 force path style', pick('s3.forcePathStyle')),
      accessKeyId: text(pick('s3.accessKeyId')),
      secretAccessKey: text(pick('s3.secretAccessKey')),
      sessionToken: text(pick('s3.sessionToken')),
      conditionalWrites: bool('s3 conditional writes', pick('s3.conditionalWrites')),
      maxAttempts: integer('s3 max attempts', pick('s3.maxAttempts'), 1, 20),
    },
    retention: {
      retainFull: integer('retain full', pick('retention.retainFull'), 1, 1_000_000),
      retainDays: integer('retain days', pick('retention.retainDays'), 0, 1_000_000),
      retainPitrDays: integer('retain pitr days', pick('retention.retainPitrDays'), 0, 1_000_000),
    },
  };
}
