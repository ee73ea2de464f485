/**
 * pino to stderr, one JSON object per line. Secrets are redacted by path.
 *
 * pino (about 40 modules) is loaded on the first message the level lets through, not at start: a
 * restore or archive-get started on a cold page cache would otherwise read and compile them all
 * before doing anything, only to log nothing at --log-level warn.
 */
import { createRequire } from 'node:module';
import type { LogFn, Logger as PinoLogger } from 'pino';
import type { LogLevel } from '../config/index.js';
import { isoUtc } from '../time/utc.js';

export type Logger = Pick<PinoLogger, 'debug' | 'info' | 'warn' | 'error'>;

const redact = {
  paths: [
    'secretAccessKey',
    'sessionToken',
    'password',
    '*.secretAccessKey',
    '*.sessionToken',
    '*.password',
    'settings.s3.secretAccessKey',
    'settings.s3.sessionToken',
    'settings.pgUrl',
    'pgUrl',
  ],
  censor: '[redacted]',
};

const levelValues: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Number.POSITIVE_INFINITY };

function pinoLogger(level: LogLevel): PinoLogger {
  const { pino } = createRequire(import.meta.url)('pino') as typeof import('pino');
  return pino({ level, redact, base: undefined, timestamp: () => `,"time":"${isoUtc(Date.now())}"` }, pino.destination({ dest: 2, sync: true }));
}

export function createLogger(level: LogLevel = 'info'): Logger {
  let logger: PinoLogger | undefined;
  const method = (name: keyof Logger): LogFn => {
    if (levelValues[name] < levelValues[level]) return () => undefined;
    return (...args: Parameters<LogFn>) => {
      logger ??= pinoLogger(level);
      logger[name](...args);
    };
  };
  return { debug: method('debug'), info: method('info'), warn: method('warn'), error: method('error') };
}
