/**
 * A repository in an S3-compatible bucket prefix. Writes are single PUTs or completed multipart
 * uploads, so readers never see part of an object; every request has a timeout and bounded retries,
 * so an unreachable or hung endpoint fails the command with a clear error instead of hanging.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { PgfError } from '../errors/index.js';
import type { ListPage, ObjectInfo, Storage, WriteOptions } from './storage.js';

export interface S3Options {
  bucket: string;
  prefix: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Per request, in ms. */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxAttempts?: number;
  multipartThreshold?: number;
  partSize?: number;
  partsInFlight?: number;
}

export interface RequestStats {
  get: number;
  put: number;
  list: number;
  delete: number;
  head: number;
  bytesIn: number;
  bytesOut: number;
}

function errorOf(err: unknown, action: string, where: string): PgfError {
  if (err instanceof PgfError) return err;
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? e.code ?? '';
  if (name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchBucket')) {
    return new PgfError('STORAGE_NOT_FOUND', `${where} does not exist`, { cause: err });
  }
  if (name === 'NoSuchBucket') return new PgfError('STORAGE_NOT_FOUND', `bucket of ${where} does not exist: create it or fix --repo`, { cause: err });
  if (status === 412 || name === 'PreconditionFailed') return new PgfError('STORAGE_EXISTS', `${where} already exists`, { cause: err });
  if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
    return new PgfError('STORAGE_DENIED', `access denied to ${action} ${where} (${name}): check the credentials and the bucket policy`, { cause: err });
  }
  if (name === 'TimeoutError' || name === 'AbortError' || name === 'RequestTimeout' || /timed? ?out/i.test(e.message ?? '')) {
    return new PgfError('STORAGE_TIMEOUT', `the object store did not answer in time to ${action} ${where}: check the endpoint and network, then retry`, { cause: err });
  }
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNRESET', 'EAI_AGAIN'].some((c) => name.includes(c) || (e.message ?? '').includes(c))) {
    return new PgfError('STORAGE_UNREACHABLE', `cannot reach the object store to ${action} ${where} (${e.message}): check the endpoint and network, then retry`, { cause: err });
  }
  return new PgfError('STORAGE_IO', `cannot ${action} ${where}: ${e.message ?? name}`, { cause: err });
}

export class S3Storage implements Storage {
  readonly location: string;
  readonly stats: RequestStats = { get: 0, put: 0, list: 0, delete: 0, head: 0, bytesIn: 0, bytesOut: 0 };
  private readonly client: S3Client;
  private readonly prefix: string;

  constructor(private readonly options: S3Options) {
    this.prefix = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
    this.location = `s3://${options.bucket}/${this.prefix}`;
    this.client = new S3Client({
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      maxAttempts: options.maxAttempts ?? 4,
      requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 5_000 },
      ...(options.accessKeyId && options.secretAccessKey
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey, ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}) } }
        : {}),
    });
  }

  /** Every request gets a deadline: a hung endpoint must fail the command, not stall it. */
  private deadline(): { abortSignal: AbortSignal } {
    return { abortSignal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 120_000) };
  }

  private key(key: string): string {
    return `${this.prefix}${key}`;
  }

  private where(key: string): string {
    return `${this.location}${key}`;
  }

  async listPage(prefix: string, continuation?: string): Promise<ListPage> {
    this.stats.list += 1;
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.key(prefix), ...(continuation ? { ContinuationToken: continuation } : {}) }), this.deadline());
      const objects = (out.Contents ?? []).map((o) => ({ key: (o.Key ?? '').slice(this.prefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 }));
      return out.IsTruncated && out.NextContinuationToken ? { objects, continuation: out.NextContinuationToken } : { objects };
    } catch (err) {
      throw errorOf(err, 'list', this.where(prefix));
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
    this.stats.get += 1;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(key), ...(range ? { Range: range } : {}) }), this.deadline());
      const bytes = Buffer.from(await out.Body!.transformToByteArray());
      this.stats.bytesIn += bytes.length;
      return bytes;
    } catch (err) {
      throw errorOf(err, 'read', this.where(key));
    }
  }

  read(key: string): Promise<Buffer> {
    return this.get(key);
  }

  async readRange(key: string, offset: number, length: number): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const bytes = await this.get(key, `bytes=${offset}-${offset + length - 1}`);
    if (bytes.length !== length) throw new PgfError('STORAGE_IO', `${this.where(key)} ends before byte ${offset + length}: the object is truncated`);
    return bytes;
  }

  async write(key: string, data: Buffer | Buffer[], options: WriteOptions = {}): Promise<void> {
    const body = Array.isArray(data) ? Buffer.concat(data) : data;
    const threshold = this.options.multipartThreshold ?? 64 * 1024 * 1024;
    if (body.length > threshold && !options.ifAbsent) return this.writeMultipart(key, body);
    this.stats.put += 1;
    try {
      // IfNoneMatch makes the store refuse to replace an object: of two racing writers one wins.
      await this.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key: this.key(key), Body: body, ChecksumAlgorithm: 'CRC32C', ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}) }), this.deadline());
      this.stats.bytesOut += body.length;
    } catch (err) {
      throw errorOf(err, 'write', this.where(key));
    }
  }

  private async writeMultipart(key: string, body: Buffer): Promise<void> {
    const partSize = this.options.partSize ?? 16 * 1024 * 1024;
    const bucket = this.options.bucket;
    const objectKey = this.key(key);
    let uploadId: string | undefined;
    try {
      this.stats.put += 1;
      uploadId = (await this.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: objectKey, ChecksumAlgorithm: 'CRC32C' }), this.deadline())).UploadId;
      const parts: { PartNumber: number; ETag: string; ChecksumCRC32C?: string }[] = [];
      const count = Math.ceil(body.length / partSize);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const index = next++;
          const chunk = body.subarray(index * partSize, Math.min(body.length, (index + 1) * partSize));
          this.stats.put += 1;
          const out = await this.client.send(new UploadPartCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId, PartNumber: index + 1, Body: chunk, ChecksumAlgorithm: 'CRC32C' }), this.deadline());
          this.stats.bytesOut += chunk.length;
          parts[index] = { PartNumber: index + 1, ETag: out.ETag ?? '', ...(out.ChecksumCRC32C ? { ChecksumCRC32C: out.ChecksumCRC32C } : {}) };
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.options.partsInFlight ?? 4, count) }, worker));
      this.stats.put += 1;
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId, MultipartUpload: { Parts: parts } }), this.deadline());
    } catch (err) {
      if (uploadId !== undefined) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId }), this.deadline()).catch(() => undefined);
      }
      throw errorOf(err, 'write', this.where(key));
    }
  }

  async delete(key: string): Promise<void> {
    this.stats.delete += 1;
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }), this.deadline());
    } catch (err) {
      const e = errorOf(err, 'delete', this.where(key));
      if (e.code !== 'STORAGE_NOT_FOUND') throw e;
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.stats.head += 1;
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }), this.deadline());
      return { key, size: out.ContentLength ?? 0, modifiedMs: out.LastModified?.getTime() ?? 0 };
    } catch (err) {
      const e = errorOf(err, 'stat', this.where(key));
      if (e.code === 'STORAGE_NOT_FOUND') return undefined;
      throw e;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
