/** pino to stderr: JSON when piped, readable lines on a terminal. Secrets are redacted by path. */
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/index.js';

export type { Logger };

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

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, redact, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
}
