/**
 * A real S3-compatible server on loopback for the tests: moto in server mode, installed by
 * test/setup/install-s3.sh. Started on a free port, polled until it answers, stopped after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort, waitFor } from './postgres.js';

export interface S3Server {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  stop(): Promise<void>;
}

const motoServer = join(process.env.PGFOREVER_S3_VENV ?? join(homedir(), '.cache/pgforever/moto'), 'bin/moto_server');

export async function startS3Server(bucket = 'pgforever-test'): Promise<S3Server> {
  const port = await freePort();
  const child: ChildProcess = spawn(motoServer, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials, maxAttempts: 1 });
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`moto_server exited: ${log}`);
        return client.send(new CreateBucketCommand({ Bucket: bucket })).then(() => true, () => false);
      },
      { deadlineMs: 60_000, what: 'the S3 server to answer' },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    client.destroy();
  }
  return {
    endpoint,
    bucket,
    region: 'us-east-1',
    ...credentials,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
