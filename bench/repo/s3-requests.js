// S3 requests and bytes per GiB of extents written (backup) and read back (restore), through the
// real pack writer and coalescing reader against a real S3-compatible server (versitygw, the one
// the tests use) on loopback. Run after `npm run build:ts` and test/setup/install-s3.sh:
//   node bench/repo/s3-requests.js [MiB]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Storage } from '../../dist/storage/s3.js';
import { Repository } from '../../dist/repo/index.js';
import { compressExtents, extentIds } from '../../dist/native/index.js';

const mib = Number(process.argv[2] ?? 512);
const port = await new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => {
    const { port: p } = s.address();
    s.close(() => resolve(p));
  });
});
const root = mkdtempSync(join(tmpdir(), 'pgf-bench-s3-'));
const server = spawn(join(process.env.PGFOREVER_CACHE ?? join(homedir(), '.cache/pgforever'), 'bin/versitygw'), ['--quiet', '--port', `127.0.0.1:${port}`, 'posix', root], {
  env: { ...process.env, ROOT_ACCESS_KEY: 'x', ROOT_SECRET_KEY: 'y' },
  stdio: 'ignore',
});
const endpoint = `http://127.0.0.1:${port}`;
try {
  const admin = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await admin.send(new CreateBucketCommand({ Bucket: 'bench' }));
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const storage = new S3Storage({ bucket: 'bench', prefix: 'repo', endpoint, accessKeyId: 'x', secretAccessKey: 'y' });
  const repo = await Repository.init(storage, { systemIdentifier: '1', pgMajor: 17, walSegmentSize: 16 << 20, blockSize: 8192, compressLevel: 3 });
  const index = await repo.loadIndex({ forReuse: true });
  const writer = repo.packWriter(index);
  // Extents that compress about 3x, like real table data rather than pgbench filler.
  const chunkBytes = 8 << 20;
  const ids = [];
  const start = { ...storage.stats };
  let t = Date.now();
  for (let written = 0; written < mib << 20; written += chunkBytes) {
    const chunk = Buffer.alloc(chunkBytes);
    for (let at = 0; at < chunkBytes; at += 64) randomBytes(24).copy(chunk, at);
    const chunkIds = await extentIds(chunk, repo.extentKey);
    const frames = await compressExtents(chunk, chunkIds.map((_, i) => i), 3);
    await writer.add(chunkIds.map((id, i) => ({ id: Buffer.from(id), frame: frames[i], rawLength: 131072 })));
    ids.push(...chunkIds.map((id) => Buffer.from(id)));
  }
  await repo.recordIndex(await writer.finish());
  const writeSeconds = (Date.now() - t) / 1000;
  const afterWrite = { ...storage.stats };
  const reader = await repo.extentReaderFromDeltas({ parallel: 4 });
  t = Date.now();
  for (let i = 0; i < ids.length; i += 64) await reader.fetch(ids.slice(i, i + 64));
  const readSeconds = (Date.now() - t) / 1000;
  const end = { ...storage.stats };
  const perGiB = (n) => +(n / (mib / 1024)).toFixed(1);
  console.log(JSON.stringify({
    rawMiB: mib,
    write: { putRequestsPerGiB: perGiB(afterWrite.put - start.put), otherRequestsPerGiB: perGiB(afterWrite.list + afterWrite.head + afterWrite.get - start.list - start.head - start.get), bytesOutPerGiB: perGiB(afterWrite.bytesOut - start.bytesOut), seconds: writeSeconds },
    read: { getRequestsPerGiB: perGiB(end.get - afterWrite.get), bytesInPerGiB: perGiB(end.bytesIn - afterWrite.bytesIn), seconds: readSeconds },
  }));
  await storage.close();
  admin.destroy();
} finally {
  server.kill();
  rmSync(root, { recursive: true, force: true });
}
