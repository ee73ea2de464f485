/**
 * The repository as a whole: its config (written once by init), the keyed-hash key, and access to
 * extents, extent lists, manifests and WAL objects. Knows the format, never PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { PgfError } from '../errors/index.js';
import type { Storage } from '../storage/index.js';
import { ExtentIndex, readIndexDeltas, writeIndexDelta, type IndexEntry } from './extent-index.js';
import { readExtentList, writeExtentList } from './extent-lists.js';
import { listBackupIds, readManifest, writeManifest, type BackupManifest } from './manifest.js';
import { keys, readSealed, seal } from './objects.js';
import { PackWriter, packIdOf, readPackFooter, type PackWriterOptions } from './packs.js';
import { ExtentReader } from './extent-reader.js';
import { condemnedPacks } from './gc-marks.js';

export const formatVersion = 1;

export interface RepositoryConfig {
  formatVersion: number;
  systemIdentifier: string;
  pgMajor: number;
  walSegmentSize: number;
  blockSize: number;
  hashKeyId: string;
  compression: { algorithm: 'zstd'; level: number };
  encryption: { algorithm: 'none' };
  createdAt: string;
}

export interface InitOptions {
  systemIdentifier: string;
  pgMajor: number;
  walSegmentSize: number;
  blockSize: number;
  compressLevel: number;
}

export class Repository {
  private constructor(
    readonly storage: Storage,
    readonly config: RepositoryConfig,
    /** Key of the keyed BLAKE3 extent ids. It guards against colliding pages crafted by database users, who cannot read the repository. */
    readonly extentKey: Buffer,
  ) {}

  get location(): string {
    return this.storage.location;
  }

  static async init(storage: Storage, options: InitOptions): Promise<Repository> {
    const existing = await storage.stat(keys.config);
    if (existing !== undefined) {
      throw new PgfError('REPO_ALREADY_INITIALIZED', `${storage.location} already holds a pgforever repository: use it as it is, or pick an empty location`);
    }
    const hashKeyId = randomBytes(8).toString('hex');
    const extentKey = randomBytes(32);
    await storage.write(keys.hashKey(hashKeyId), await seal(extentKey), { ifAbsent: true });
    const config: RepositoryConfig = {
      formatVersion,
      systemIdentifier: options.systemIdentifier,
      pgMajor: options.pgMajor,
      walSegmentSize: options.walSegmentSize,
      blockSize: options.blockSize,
      hashKeyId,
      compression: { algorithm: 'zstd', level: options.compressLevel },
      encryption: { algorithm: 'none' },
      createdAt: new Date().toISOString(),
    };
    // The config goes last: a repository exists once it names a key that is already durable.
    await storage.write(keys.config, Buffer.from(`${JSON.stringify(config, null, 2)}\n`), { ifAbsent: true });
    return new Repository(storage, config, extentKey);
  }

  /** Opens the repository; with `systemIdentifier`, refuses one that belongs to another cluster. */
  static async open(storage: Storage, expect: { systemIdentifier?: string } = {}): Promise<Repository> {
    let text: Buffer;
    try {
      text = await storage.read(keys.config);
    } catch (err) {
      if (err instanceof PgfError && err.code === 'STORAGE_NOT_FOUND') {
        throw new PgfError('REPO_NOT_INITIALIZED', `no pgforever repository at ${storage.location}: run pgforever init first`);
      }
      throw err;
    }
    let config: RepositoryConfig;
    try {
      config = JSON.parse(text.toString('utf8')) as RepositoryConfig;
    } catch (err) {
      throw new PgfError('REPO_CORRUPT', `${storage.location}/${keys.config} is not valid JSON`, { cause: err });
    }
    if (config.formatVersion !== formatVersion) {
      throw new PgfError('REPO_FORMAT', `repository format ${config.formatVersion} at ${storage.location}; this pgforever reads format ${formatVersion}`);
    }
    if (expect.systemIdentifier !== undefined && expect.systemIdentifier !== config.systemIdentifier) {
      throw new PgfError(
        'REPO_CLUSTER_MISMATCH',
        `repository at ${storage.location} belongs to cluster ${config.systemIdentifier}, this server is cluster ${expect.systemIdentifier}: use another --repo`,
      );
    }
    const extentKey = await readSealed(storage, keys.hashKey(config.hashKeyId));
    return new Repository(storage, config, extentKey);
  }

  /**
   * The index of stored extents: every index delta, plus the footers of packs no delta names yet
   * (left by a backup that was interrupted after uploading them), so their extents are reused.
   * `forReuse` (backups) leaves out packs a garbage-collection mark condemns: a backup must upload
   * its own copy rather than reference an extent that a sweep may delete.
   */
  async loadIndex(options: { forReuse: boolean }): Promise<ExtentIndex> {
    return (await this.loadIndexWithSources(options)).index;
  }

  /** The index and where it came from: the deltas read and the packs they name. */
  async loadIndexWithSources(options: { forReuse: boolean }): Promise<{ index: ExtentIndex; deltas: string[]; unindexedPacks: string[] }> {
    const excluded = options.forReuse ? await condemnedPacks(this.storage) : new Set<string>();
    const index = new ExtentIndex();
    const { covered, deltas } = await readIndexDeltas(this.storage, index, excluded);
    const unindexedPacks = await this.addUnindexedPacks(index, covered, excluded);
    return { index, deltas, unindexedPacks };
  }

  /** Adds to `index` the footers of the packs no index delta names (`covered`), except `excluded`; returns every such pack. */
  private async addUnindexedPacks(index: ExtentIndex, covered: ReadonlySet<string>, excluded: ReadonlySet<string>): Promise<string[]> {
    const unindexedPacks: string[] = [];
    for await (const object of this.storage.list(keys.packs)) {
      const packId = packIdOf(object.key);
      if (covered.has(packId)) continue;
      unindexedPacks.push(packId);
      if (excluded.has(packId)) continue;
      for (const entry of await readPackFooter(this.storage, packId, object.size)) index.add(entry);
    }
    return unindexedPacks;
  }

  /**
   * A reader of stored extents (restores) on the index deltas alone. Every pack a finished backup
   * wrote is in a delta; only extents a backup reused from packs an interrupted one left are not,
   * so the packs are listed (a request per thousand on S3) and those footers read only when an
   * extent asked for is missing.
   */
  async extentReaderFromDeltas(options: { parallel: number }): Promise<ExtentReader> {
    const index = new ExtentIndex();
    const { covered } = await readIndexDeltas(this.storage, index);
    const completeIndex = async () => {
      await this.addUnindexedPacks(index, covered, new Set());
    };
    return new ExtentReader(this.storage, index, this.extentKey, { ...options, completeIndex });
  }

  packWriter(index: ExtentIndex, options: PackWriterOptions = { targetBytes: 64 * 1024 * 1024, maxInFlight: 2 }): PackWriter {
    return new PackWriter(this.storage, index, options);
  }

  /** Records durable pack entries in a new index delta. */
  async recordIndex(entries: readonly IndexEntry[]): Promise<void> {
    if (entries.length > 0) await writeIndexDelta(this.storage, entries);
  }

  extentReader(index: ExtentIndex, options: { parallel: number; gapBytes?: number }): ExtentReader {
    return new ExtentReader(this.storage, index, this.extentKey, options);
  }

  writeExtentList(extents: readonly (Buffer | null)[]): Promise<string> {
    return writeExtentList(this.storage, extents);
  }

  readExtentList(id: string): Promise<(Buffer | null)[]> {
    return readExtentList(this.storage, id);
  }

  listBackups(): Promise<string[]> {
    return listBackupIds(this.storage);
  }

  readManifest(id: string): Promise<BackupManifest> {
    return readManifest(this.storage, id);
  }

  writeManifest(manifest: BackupManifest): Promise<void> {
    return writeManifest(this.storage, manifest);
  }
}
