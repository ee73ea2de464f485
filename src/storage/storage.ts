/**
 * Object storage as the repository sees it. Implementations (posix, s3) are the only code that does
 * I/O on a repository; they know keys and bytes, never the repository format.
 *
 * Keys are '/'-separated relative paths such as `packs/ab/abcdef…`, without empty, `.` or `..`
 * segments. A key is never also a folder of other keys (`a/b` and `a/b/c` cannot both exist), since
 * a directory repository, and file-backed S3 servers, store keys as paths. Every write is
 * all-or-nothing: a reader sees either no object or the whole object, never a prefix of it.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Last modification time in ms since the epoch (used by gc grace periods and lease expiry). */
  modifiedMs: number;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Present when more objects follow; pass it back to `listPage` to continue. */
  continuation?: string;
}

export interface WriteOptions {
  /**
   * Fail with STORAGE_EXISTS instead of replacing an existing object; of two writers racing on one
   * key exactly one succeeds (posix link(2); S3 `If-None-Match: *`, see s3.ts for stores without it).
   */
  ifAbsent?: boolean;
}

/**
 * What a storage has done since it was opened. S3 counts HTTP requests (multipart create, part and
 * complete count as PUT; abort as DELETE); posix counts the same operations, a list walk as one LIST.
 * Bytes are object payload only, so a benchmark can report requests and bytes per GiB backed up.
 */
export interface StorageStats {
  get: number;
  put: number;
  list: number;
  delete: number;
  head: number;
  /** Bytes read from storage. */
  bytesIn: number;
  /** Bytes written to storage. */
  bytesOut: number;
}

export function emptyStats(): StorageStats {
  return { get: 0, put: 0, list: 0, delete: 0, head: 0, bytesIn: 0, bytesOut: 0 };
}

export interface Storage {
  /** A human-readable location for messages, e.g. `/var/lib/pgforever` or `s3://bucket/prefix`. */
  readonly location: string;
  /** Live counters; read them at any time. */
  readonly stats: StorageStats;
  /** One page of objects whose key starts with `prefix`, in key order. */
  listPage(prefix: string, continuation?: string): Promise<ListPage>;
  /** Every object under `prefix` (follows pagination). */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** The whole object; STORAGE_NOT_FOUND when absent. */
  read(key: string): Promise<Buffer>;
  /**
   * `length` bytes from `offset`; STORAGE_NOT_FOUND when absent, STORAGE_IO when the range runs past
   * the end. `keepOpen` says more ranges of this object will follow (a restore reading a pack): a
   * local repository then keeps its descriptor open, at most a few dozen of them, until close().
   */
  readRange(key: string, offset: number, length: number, options?: { keepOpen?: boolean }): Promise<Buffer>;
  /** Durable once the promise resolves (fsync + rename + directory fsync; S3 PUT with checksum). */
  write(key: string, data: Buffer | Buffer[], options?: WriteOptions): Promise<void>;
  /** Removes the object; absent objects are not an error. */
  delete(key: string): Promise<void>;
  /** Size and time, or undefined when the object does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /**
   * Removes what killed writers left behind (posix temporary files, S3 incomplete multipart uploads)
   * that were started more than `olderThanMs` ago, and returns how many. Readers never see these.
   */
  removeStaleTemporaries(olderThanMs: number): Promise<number>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
}
