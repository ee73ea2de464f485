/**
 * Object storage as the repository sees it. Implementations (posix, s3) are the only code that does
 * I/O on a repository; they know keys and bytes, never the repository format.
 *
 * Keys are '/'-separated relative paths such as `packs/ab/abcdef…`. Every write is all-or-nothing:
 * a reader sees either no object or the whole object, never a prefix of it.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification time in ms since the epoch (used by gc grace periods and lease expiry). */
  modifiedMs: number;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Present when more objects follow; pass it back as `after` to continue. */
  continuation?: string;
}

export interface WriteOptions {
  /** Fail with STORAGE_EXISTS instead of replacing an existing object (best effort on S3 without conditional writes). */
  ifAbsent?: boolean;
}

export interface Storage {
  /** A human-readable location for messages, e.g. `/var/lib/pgforever` or `s3://bucket/prefix`. */
  readonly location: string;
  /** One page of objects whose key starts with `prefix`, in key order. */
  listPage(prefix: string, continuation?: string): Promise<ListPage>;
  /** Every object under `prefix` (follows pagination). */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** The whole object; STORAGE_NOT_FOUND when absent. */
  read(key: string): Promise<Buffer>;
  /** `length` bytes from `offset`; STORAGE_NOT_FOUND when absent, STORAGE_IO when the range runs past the end. */
  readRange(key: string, offset: number, length: number): Promise<Buffer>;
  /** Durable once the promise resolves (fsync + rename + directory fsync; S3 PUT with checksum). */
  write(key: string, data: Buffer | Buffer[], options?: WriteOptions): Promise<void>;
  /** Removes the object; absent objects are not an error. */
  delete(key: string): Promise<void>;
  /** Size and time, or undefined when the object does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
}
