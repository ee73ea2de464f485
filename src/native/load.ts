/**
 * Loads the napi addon (the only place that does) and turns its errors into PgfError. Errors from Rust arrive as
 * `CODE: message` and leave here as PgfError with the same code.
 */
import { createRequire } from 'node:module';
import { PgfError, errorCodes, type ErrorCode } from '../errors/index.js';

type Binding = typeof import('./binding.js');

// Resolved from the package root so the same path works from src/native (tests), dist/native and
// dist/cli-bundle (the built CLI): all sit two levels below it, and the generated loader stays where
// `napi build` writes it.
const require = createRequire(import.meta.url);

/** The platforms npm/pack.sh builds prebuilt addons for. */
const prebuiltPlatforms = ['linux-x64-gnu', 'linux-arm64-gnu'];

/** This host's platform in the per-platform packages' naming (`linux-x64-gnu`, `linux-arm64-musl`, ...). */
function hostPlatform(): string {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return `linux-${process.arch}-${header?.glibcVersionRuntime !== undefined ? 'gnu' : 'musl'}`;
}

function loadBinding(): Binding {
  try {
    return require('../../src/native/binding.cjs') as Binding;
  } catch (cause) {
    const platform = hostPlatform();
    const why = prebuiltPlatforms.includes(platform)
      ? `install @pgforever/native-${platform} (npm installs it with pgforever unless optional dependencies are omitted)`
      : `no prebuilt addon exists for ${platform} (only ${prebuiltPlatforms.join(', ')})`;
    throw new PgfError('NATIVE_UNAVAILABLE', `the pgforever native addon could not be loaded: ${why}; in a checkout, build it with npm run build`, { cause });
  }
}

const binding = loadBinding();

export function fromNativeError(err: unknown): PgfError {
  const message = err instanceof Error ? err.message : String(err);
  const match = /^([A-Z_]+): (.*)$/s.exec(message);
  if (match && match[1]! in errorCodes) {
    return new PgfError(match[1] as ErrorCode, match[2]!, { cause: err });
  }
  return new PgfError('NATIVE_UNKNOWN', message, { cause: err });
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNativeError(err);
  }
}

async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNativeError(err);
  }
}

export { binding, call, callAsync };
