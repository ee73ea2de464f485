/**
 * A real S3-compatible server on loopback for the tests: versitygw in posix mode over a temporary
 * directory, installed by test/setup/install-s3.sh. Started on a free port, polled until it answers
 * (with a deadline), given a bucket, and stopped (directory removed) after.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './postgres.js';
import { waitFor } from './wait.js';

export interface S3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** The directory holding the bucket's files (objects appear as `<root>/<bucket>/<key>`). */
  root: string;
  stop(): Promise<void>;
}

const server = join(process.env.PGFOREVER_CACHE ?? join(homedir(), '.cache/pgforever'), 'bin/versitygw');

export async function startS3Server(bucket = 'pgforever-test'): Promise<S3Server> {
  if (!existsSync(server)) throw new Error(`${server} is missing: run test/setup/install-s3.sh`);
  const root = await mkdtemp(join(tmpdir(), 'pgf-s3-'));
  const port = await freePort();
  const credentials = { accessKeyId: 'pgforever-test', secretAccessKey: randomBytes(12).toString('hex') };
  const region = 'us-east-1';
  // Credentials through the environment, so they do not show in process listings.
  const child = spawn(server, ['--quiet', '--port', `127.0.0.1:${port}`, 'posix', root], {
    env: { ...process.env, ROOT_ACCESS_KEY: credentials.accessKeyId, ROOT_SECRET_KEY: credentials.secretAccessKey },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint, region, forcePathStyle: true, credentials, maxAttempts: 1 });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    await rm(root, { recursive: true, force: true });
  };
  try {
    const died = exited.then(() => {
      throw new Error(`versitygw exited with code ${child.exitCode}: ${log}`);
    });
    died.catch(() => undefined); // only the race below cares; stop() makes it reject later
    const ready = waitFor(
      () =>
        client.send(new CreateBucketCommand({ Bucket: bucket })).then(
          () => true,
          (err: Error) => {
            if (err.name === 'BucketAlreadyOwnedByYou') return true;
            throw err;
          },
        ),
      { deadlineMs: 30_000, what: `versitygw on ${endpoint} to create bucket ${bucket}` },
    );
    await Promise.race([ready, died]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    client.destroy();
  }
  return { endpoint, bucket, region, root, ...credentials, stop };
}
