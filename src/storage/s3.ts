/**
 * A repository in an S3-compatible bucket prefix. Writes are single PUTs or completed multipart
 * uploads, so readers never see part of an object. Every request has a connect deadline and an idle
 * deadline and is retried with exponential backoff a bounded number of times, so an unreachable or
 * hung endpoint fails the command with a clear error instead of hanging.
 *
 * Integrity: every PUT and part carries a CRC32 checksum (x-amz-checksum-crc32) that the store
 * verifies before accepting the data; full GETs are verified by the SDK against the stored checksum.
 * CRC32 rather than CRC32C or SHA-256 because Node computes it natively (zlib.crc32, ~3.7 GB/s
 * here, against ~0.4 GB/s for the SDK's JavaScript CRC32C and ~1.7 GB/s for SHA-256), and AWS S3
 * and the S3-compatible stores we test against all accept it.
 *
 * ifAbsent uses `If-None-Match: *` on PutObject and CompleteMultipartUpload (AWS S3 since 2024,
 * versitygw, recent Ceph RGW/R2/GCS). For stores without it, `conditionalWrites: false` checks with
 * HEAD first; two writers racing inside that window can then both succeed, which is acceptable only
 * because repository writers coordinate through leases and write content-addressed objects.
 */
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { PgfError } from '../errors/index.js';
import { emptyStats, type ListPage, type ObjectInfo, type Storage, type StorageStats, type WriteOptions } from './storage.js';

export interface S3Options {
  bucket: string;
  /** Key prefix inside the bucket; '' for the whole bucket. */
  prefix: string;
  /** A custom endpoint such as `http://127.0.0.1:7070`; AWS S3 when absent. */
  endpoint?: string;
  /** Default us-east-1; requests to a bucket in another region follow the redirect. */
  region?: string;
  /** Bucket in the path rather than the host name; defaults to true with a custom endpoint. */
  forcePathStyle?: boolean;
  /** Explicit credentials; without them the standard AWS chain (environment, profile, SSO, instance role). */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** A request fails after this long without a byte sent or received (default 30 s). */
  idleTimeoutMs?: number;
  /** TCP/TLS connect deadline (default 5 s). */
  connectTimeoutMs?: number;
  /** Attempts per request, with the SDK's exponential backoff and jitter between them (default 4). */
  maxAttempts?: number;
  /** Objects larger than this go up as multipart uploads (default 100 MiB, so ~64 MiB packs take one PUT). */
  multipartThreshold?: number;
  /** Multipart part size (default 16 MiB; S3 wants at least 5 MiB for all parts but the last). */
  partSize?: number;
  /** Parts uploaded at once (default 4). */
  partsInFlight?: number;
  /** Whether the store honours `If-None-Match: *` (default true); see the header comment. */
  conditionalWrites?: boolean;
}

/** Everything but the location, as openStorage takes it. */
export type S3Settings = Omit<S3Options, 'bucket' | 'prefix'>;

const MiB = 1024 * 1024;

/** Bytes [start, end) of the concatenation of `parts`, copying only when they span several parts. */
function slice(parts: Buffer[], start: number, end: number): Buffer {
  const pieces: Buffer[] = [];
  let at = 0;
  for (const part of parts) {
    const from = Math.max(start - at, 0);
    const to = Math.min(end - at, part.length);
    if (from < to) pieces.push(part.subarray(from, to));
    at += part.length;
    if (at >= end) break;
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

function crc32Base64(data: Buffer): string {
  const digest = Buffer.alloc(4);
  digest.writeUInt32BE(crc32(data));
  return digest.toString('base64');
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
}

const networkCodes = ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EAI_AGAIN', 'EPIPE'];

/** One line that says what happened and what to do; credentials never appear in SDK messages. */
function storageError(err: unknown, action: string, where: string): PgfError {
  if (err instanceof PgfError) return err;
  const e = err as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? '';
  const detail = `${name}${status ? ` HTTP ${status}` : ''}${e.$metadata?.attempts ? ` after ${e.$metadata.attempts} attempts` : ''}`;
  const make = (code: ConstructorParameters<typeof PgfError>[0], message: string) => new PgfError(code, message, { cause: err });
  if (name === 'NoSuchBucket') return make('STORAGE_NOT_FOUND', `the bucket of ${where} does not exist: create it or fix --repo`);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return make('STORAGE_NOT_FOUND', `${where} does not exist: check --repo, or the repository lost this object`);
  if (name === 'PreconditionFailed' || status === 412) return make('STORAGE_EXISTS', `${where} already exists: another writer created it first`);
  if (name === 'InvalidRange' || status === 416) return make('STORAGE_IO', `${where} is shorter than the range asked for: the object is truncated; run verify on the repository`);
  if (name === 'CredentialsProviderError') {
    return make('STORAGE_DENIED', `no S3 credentials found to ${action} ${where}: set an access key, or AWS_PROFILE/AWS_ACCESS_KEY_ID, or use an instance role`);
  }
  if (status === 403 || ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken'].includes(name)) {
    return make('STORAGE_DENIED', `access denied to ${action} ${where} (${detail}): check the credentials and the bucket policy`);
  }
  if (status === 501 || name === 'NotImplemented') {
    return make('STORAGE_IO', `the object store cannot ${action} ${where} (${detail}): it lacks a feature pgforever uses (conditional writes need If-None-Match; set s3 conditionalWrites to false)`);
  }
  if (name === 'TimeoutError' || name === 'RequestTimeout' || e.code === 'ETIMEDOUT') {
    return make('STORAGE_TIMEOUT', `the object store did not answer in time to ${action} ${where} (${detail}): check the endpoint and the network, then retry`);
  }
  if (networkCodes.some((c) => e.code === c || name === c)) {
    return make('STORAGE_UNREACHABLE', `cannot reach the object store to ${action} ${where} (${e.code ?? name}${detail ? `, ${detail}` : ''}): check the endpoint and the network, then retry`);
  }
  return make('STORAGE_IO', `cannot ${action} ${where} (${detail}: ${e.message ?? 'no message'}): retry; if it persists, check the object store`);
}

export class S3Storage implements Storage {
  readonly location: string;
  readonly stats = emptyStats();
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partsInFlight: number;
  private readonly conditionalWrites: boolean;

  constructor(options: S3Options) {
    // Credentials go to the client only: nothing on this object may carry a secret into a log.
    this.bucket = options.bucket;
    this.prefix = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
    this.location = `s3://${options.bucket}/${this.prefix}`.replace(/\/$/, '');
    this.multipartThreshold = options.multipartThreshold ?? 100 * MiB;
    this.partSize = options.partSize ?? 16 * MiB;
    this.partsInFlight = options.partsInFlight ?? 4;
    this.conditionalWrites = options.conditionalWrites ?? true;
    const { accessKeyId, secretAccessKey, sessionToken } = options;
    // On Node 20 the SDK warns, in seven lines, that its versions published after January 2027 will
    // need Node 22: news for whoever updates pgforever's dependencies, not for a DBA, in whose
    // PostgreSQL log it would land from every archive or restore command that reaches S3 through the
    // Node CLI. A value the user set stays.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      region: options.region ?? 'us-east-1',
      followRegionRedirects: true,
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      maxAttempts: options.maxAttempts ?? 4,
      // socketTimeout is an idle deadline: a stalled endpoint fails, a long healthy transfer does not.
      requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 5_000, socketTimeout: options.idleTimeoutMs ?? 30_000 },
      ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } } : {}),
    });
  }

  private where(key: string): string {
    return `${this.location}/${key}`;
  }

  /** Sends one request and counts it, with the SDK's retries, under `kind`. */
  private async send<T extends { $metadata: { attempts?: number } }>(kind: keyof StorageStats, request: () => Promise<T>): Promise<T> {
    try {
      const out = await request();
      this.stats[kind] += out.$metadata.attempts ?? 1;
      return out;
    } catch (err) {
      this.stats[kind] += (err as SdkError).$metadata?.attempts ?? 1;
      throw err;
    }
  }

  async listPage(prefix: string, continuation?: string): Promise<ListPage> {
    try {
      const out = await this.send('list', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ...(continuation ? { ContinuationToken: continuation } : {}) })),
      );
      const objects = (out.Contents ?? []).map((o) => ({ key: (o.Key ?? '').slice(this.prefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 }));
      return out.IsTruncated && out.NextContinuationToken ? { objects, continuation: out.NextContinuationToken } : { objects };
    } catch (err) {
      throw storageError(err, 'list', this.where(prefix));
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let continuation: string | undefined;
    do {
      const page = await this.listPage(prefix, continuation);
      yield* page.objects;
      continuation = page.continuation;
    } while (continuation !== undefined);
  }

  private async get(key: string, range?: string): Promise<Buffer> {
    try {
      const out = await this.send('get', () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, ...(range ? { Range: range } : {}) })));
      const bytes = await out.Body!.transformToByteArray();
      this.stats.bytesIn += bytes.length;
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    } catch (err) {
      throw storageError(err, 'read', this.where(key));
    }
  }

  read(key: string): Promise<Buffer> {
    return this.get(key);
  }

  async readRange(key: string, offset: number, length: number): Promise<Buffer> {
    // HTTP cannot ask for zero bytes.
    if (length === 0) return Buffer.alloc(0);
    const bytes = await this.get(key, `bytes=${offset}-${offset + length - 1}`);
    if (bytes.length !== length) {
      throw new PgfError('STORAGE_IO', `${this.where(key)} ends before byte ${offset + length}: the object is truncated; run verify on the repository`);
    }
    return bytes;
  }

  async write(key: string, data: Buffer | Buffer[], options: WriteOptions = {}): Promise<void> {
    const parts = Array.isArray(data) ? data : [data];
    const size = parts.reduce((sum, p) => sum + p.length, 0);
    const ifAbsent = options.ifAbsent === true;
    try {
      if (ifAbsent && !this.conditionalWrites && (await this.stat(key)) !== undefined) {
        throw new PgfError('STORAGE_EXISTS', `${this.where(key)} already exists: another writer created it first`);
      }
      if (size > this.multipartThreshold) {
        await this.writeMultipart(key, parts, size, ifAbsent && this.conditionalWrites);
      } else {
        const body = slice(parts, 0, size);
        await this.send('put', () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: this.prefix + key,
              Body: body,
              ChecksumCRC32: crc32Base64(body),
              ...(ifAbsent && this.conditionalWrites ? { IfNoneMatch: '*' } : {}),
            }),
          ),
        );
        this.stats.bytesOut += size;
      }
    } catch (err) {
      throw storageError(err, 'write', this.where(key));
    }
  }

  /** Parts go up `partsInFlight` at a time; any failure aborts the upload so no parts linger. */
  private async writeMultipart(key: string, parts: Buffer[], size: number, ifNoneMatch: boolean): Promise<void> {
    const Bucket = this.bucket;
    const Key = this.prefix + key;
    const created = await this.send('put', () => this.client.send(new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: 'CRC32' })));
    const UploadId = created.UploadId;
    const count = Math.ceil(size / this.partSize);
    const completed: CompletedPart[] = [];
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < count) {
        const index = next++;
        const body = slice(parts, index * this.partSize, Math.min(size, (index + 1) * this.partSize));
        const ChecksumCRC32 = crc32Base64(body);
        try {
          const out = await this.send('put', () => this.client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: index + 1, Body: body, ChecksumCRC32 })));
          this.stats.bytesOut += body.length;
          completed[index] = { PartNumber: index + 1, ETag: out.ETag, ChecksumCRC32 };
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    try {
      // allSettled, not all: the abort below must come after every part request has finished.
      const results = await Promise.allSettled(Array.from({ length: Math.min(this.partsInFlight, count) }, worker));
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;
      await this.send('put', () =>
        this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: completed }, ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}) })),
      );
    } catch (err) {
      await this.send('delete', () => this.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }))).catch(() => undefined);
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.send('delete', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })));
    } catch (err) {
      const e = storageError(err, 'delete', this.where(key));
      if (e.code !== 'STORAGE_NOT_FOUND') throw e;
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.send('head', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })));
      return { key, size: out.ContentLength ?? 0, modifiedMs: out.LastModified?.getTime() ?? 0 };
    } catch (err) {
      const e = storageError(err, 'stat', this.where(key));
      if (e.code === 'STORAGE_NOT_FOUND') return undefined;
      throw e;
    }
  }

  async removeStaleTemporaries(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    let marker: { KeyMarker?: string; UploadIdMarker?: string } = {};
    try {
      for (;;) {
        const out = await this.send('list', () => this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, ...marker })));
        for (const upload of out.Uploads ?? []) {
          if ((upload.Initiated?.getTime() ?? 0) >= cutoff) continue;
          await this.send('delete', () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId })));
          removed += 1;
        }
        if (!out.IsTruncated) return removed;
        marker = { KeyMarker: out.NextKeyMarker, UploadIdMarker: out.NextUploadIdMarker };
      }
    } catch (err) {
      throw storageError(err, 'clean incomplete uploads under', this.location);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
