/**
 * The native core as the rest of pgforever sees it: PostgreSQL pages and checksums, the extent scan
 * of the backup hot loop, extent ids, and zstd frames. Everything else imports this module, never the
 * binding. Heavy calls return promises and run on the libuv pool; each crosses into Rust once per
 * buffer of megabytes, never per page or extent.
 *
 * Buffers passed to an async call are read in place, not copied: do not modify them until the
 * promise settles. LSNs are bigints. Errors are PgfError with the core's code (BUFFER_LENGTH,
 * INVALID_ARGUMENT, FRAME_CORRUPT, FRAME_TRUNCATED, FRAME_VERSION, COMPRESSION, WAL_INVALID).
 */
import { PgfError } from '../errors/index.js';
import type { ScannedChunk, WalSegmentSummary as NativeWalSegmentSummary } from './binding.js';
import { binding, call, callAsync, fromNativeError } from './load.js';

/** PostgreSQL's BLCKSZ; the only page size pgforever reads. */
export const PAGE_SIZE = 8192;
/** Pages per extent. */
export const EXTENT_PAGES = 16;
/** Bytes per extent (128 KiB); files are cut into extents at multiples of this. */
export const EXTENT_BYTES = PAGE_SIZE * EXTENT_PAGES;
/** Length of an extent id and of the key it is computed with. */
export const EXTENT_ID_BYTES = 32;
export const EXTENT_KEY_BYTES = 32;
/** Length of a frame header; `readFrameHeader` needs this many bytes. */
export const FRAME_HEADER_BYTES = 24;
/** The most raw bytes one frame holds: the largest WAL segment PostgreSQL allows. */
export const MAX_FRAME_RAW_BYTES = 1 << 30;
export const MIN_ZSTD_LEVEL = 1;
export const MAX_ZSTD_LEVEL = 19;

export interface PageHeader {
  lsn: bigint;
  checksum: number;
  flags: number;
  lower: number;
  upper: number;
  special: number;
  pageSize: number;
  layoutVersion: number;
  pruneXid: number;
}

/** What PostgreSQL's PageIsVerified concludes about a page. */
export type PageVerdict = 'valid' | 'all-zero' | 'new-not-zero' | 'bad-header' | 'checksum-mismatch';

export interface PageCheck {
  verdict: PageVerdict;
  /** For 'checksum-mismatch': the checksum computed from the page. */
  expected?: number;
  /** For 'checksum-mismatch': the checksum stored in the page. */
  found?: number;
}

export interface ChecksumFailure {
  /** Block number in the relation (segment number * 131072 + block in the segment file). */
  block: number;
  /** Checksum computed from the page as read. */
  expected: number;
  /** Checksum stored in the page header. */
  found: number;
  /** The page's LSN as read. */
  lsn: bigint;
}

export interface ScanOptions {
  /** Relation block number of the chunk's first page; a multiple of EXTENT_PAGES. */
  firstBlock: number;
  /** The parent backup's start LSN; without it every extent is changed (no parent). */
  changedSince?: bigint;
  /** Verify page checksums (the server has data checksums). */
  verifyChecksums: boolean;
  /** This backup's start LSN: pages at or past it are not verified (a concurrent write may tear them). */
  backupStart?: bigint;
}

export interface ExtentInfo {
  /** Position of the extent in the chunk. */
  index: number;
  /** Relation block number of its first page. */
  firstBlock: number;
  /** Pages in the extent: EXTENT_PAGES except perhaps for the last extent of a file. */
  pages: number;
  /** Highest LSN among its initialised pages (0n when none). */
  maxLsn: bigint;
  /**
   * The parent's extent at this position must not be reused: no parent, a page at or past the parent's
   * start, or a page whose LSN cannot be trusted (all-zero, uninitialised or damaged header). The caller
   * must also treat a page count different from the parent's extent as changed.
   */
  changed: boolean;
  /** Every byte is zero: stored as nothing, restored as a hole. */
  allZero: boolean;
}

export interface IdentifiedExtent extends ExtentInfo {
  /** Keyed BLAKE3 id, present exactly when the extent is changed and not all zero. */
  id: Buffer | null;
}

export interface ChunkScan<E extends ExtentInfo = ExtentInfo> {
  extents: E[];
  checksumFailures: ChecksumFailure[];
}

export interface FrameHeader {
  version: number;
  /** The payload is the raw bytes (zstd did not make them smaller). */
  storedRaw: boolean;
  /** zstd level the frame was written with: -1 (some WAL segments) or 1..19. */
  level: number;
  rawLength: number;
  payloadLength: number;
  /** Header plus payload: where the next frame starts when frames are laid end to end. */
  frameLength: number;
  rawCrc32c: number;
}

const FLAG_CHANGED = 1;
const FLAG_ALL_ZERO = 2;
const FLAG_HAS_ID = 4;

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new PgfError('INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}, got ${value}`);
  }
}

function requireBlock(name: string, value: number): void {
  requireInteger(name, value, 0, 0xfffffffe);
}

function requireLevel(level: number): void {
  requireInteger('zstd level', level, MIN_ZSTD_LEVEL, MAX_ZSTD_LEVEL);
}

/** Views into one buffer of results laid end to end; no copies. */
function split(batch: { data: Buffer; lengths: Uint32Array }): Buffer[] {
  const pieces: Buffer[] = [];
  let at = 0;
  for (const length of batch.lengths) {
    pieces.push(batch.data.subarray(at, at + length));
    at += length;
  }
  return pieces;
}

function nativeScanOptions(options: ScanOptions) {
  requireBlock('firstBlock', options.firstBlock);
  return {
    firstBlock: options.firstBlock,
    changedSince: options.changedSince,
    verifyChecksums: options.verifyChecksums,
    backupStart: options.backupStart,
  };
}

function extentInfo(scanned: ScannedChunk, firstBlock: number, index: number): ExtentInfo {
  const flags = scanned.flags[index]!;
  return {
    index,
    firstBlock: firstBlock + index * EXTENT_PAGES,
    pages: scanned.pages[index]!,
    maxLsn: scanned.maxLsn[index]!,
    changed: (flags & FLAG_CHANGED) !== 0,
    allZero: (flags & FLAG_ALL_ZERO) !== 0,
  };
}

/** The header of the page at the start of `page` (24 bytes are enough). */
export function parsePageHeader(page: Uint8Array): PageHeader {
  return call(() => binding.parsePageHeader(page));
}

/** pg_checksum_page: the checksum PostgreSQL stores for this 8192-byte page at relation block `block`. */
export function pageChecksum(page: Uint8Array, block: number): number {
  requireBlock('block', block);
  return call(() => binding.pageChecksum(page, block));
}

/** PostgreSQL's PageIsVerified for one page; `checksums` says whether the cluster has data checksums. */
export function verifyPage(page: Uint8Array, block: number, options: { checksums: boolean }): PageCheck {
  requireBlock('block', block);
  const check = call(() => binding.verifyPage(page, block, options.checksums));
  return { ...check, verdict: check.verdict as PageVerdict };
}

/**
 * Checksum failures among the whole pages of `buffer`, whose first page is relation block `firstBlock`.
 * Uninitialised pages (pd_upper 0) carry no checksum and are skipped, as pg_checksums does; so are pages
 * whose LSN is at or past `skipFromLsn` (give the backup start LSN when reading a running cluster).
 */
export async function verifyPages(
  buffer: Buffer,
  firstBlock: number,
  options: { skipFromLsn?: bigint } = {},
): Promise<ChecksumFailure[]> {
  requireBlock('firstBlock', firstBlock);
  return callAsync(() => binding.verifyChecksums(buffer, firstBlock, options.skipFromLsn));
}

/** Scans a chunk of a relation segment file (whole pages, starting at an extent boundary) per extent. */
export async function scanExtents(chunk: Buffer, options: ScanOptions): Promise<ChunkScan> {
  const native = nativeScanOptions(options);
  const scanned = await callAsync(() => binding.scanExtents(chunk, native));
  return {
    extents: Array.from(scanned.pages, (_, i) => extentInfo(scanned, options.firstBlock, i)),
    checksumFailures: scanned.checksumFailures,
  };
}

/**
 * The backup hot loop for one chunk: `scanExtents` plus the keyed BLAKE3 id of every changed extent
 * that is not all zero, hashed while the extent is still in cache. Ids are views into one buffer.
 */
export async function scanAndIdentifyExtents(
  chunk: Buffer,
  options: ScanOptions,
  key: Buffer,
): Promise<ChunkScan<IdentifiedExtent>> {
  const native = nativeScanOptions(options);
  const scanned = await callAsync(() => binding.scanAndIdentifyExtents(chunk, native, key));
  const ids = scanned.ids;
  return {
    extents: Array.from(scanned.pages, (_, i) => {
      const hasId = ids !== undefined && (scanned.flags[i]! & FLAG_HAS_ID) !== 0;
      return {
        ...extentInfo(scanned, options.firstBlock, i),
        id: hasId ? ids.subarray(i * EXTENT_ID_BYTES, (i + 1) * EXTENT_ID_BYTES) : null,
      };
    }),
    checksumFailures: scanned.checksumFailures,
  };
}

/** Ids of every 128 KiB piece of `data` (any length; the last piece may be short), as views into one buffer. */
export async function extentIds(data: Buffer, key: Buffer): Promise<Buffer[]> {
  const ids = await callAsync(() => binding.extentIds(data, key));
  return Array.from({ length: ids.length / EXTENT_ID_BYTES }, (_, i) =>
    ids.subarray(i * EXTENT_ID_BYTES, (i + 1) * EXTENT_ID_BYTES),
  );
}

/** Extends a CRC-32C (0 to start) over `data`: whole-file checksums for PostgreSQL backup manifests. */
export function crc32cAppend(crc: number, data: Uint8Array): number {
  return call(() => binding.crc32cAppend(crc >>> 0, data));
}

/** The CRC-32C of pieces laid back to back, from each one's CRC-32C and length (as many of each). */
export function crc32cConcat(crcs: Uint32Array, lengths: Uint32Array): number {
  return call(() => binding.crc32cConcat(crcs, lengths));
}

/** Bytes from the start of `buffer` to the first address that is a multiple of `alignment` (a power of two). */
export function alignmentOffset(buffer: Uint8Array, alignment: number): number {
  return call(() => binding.alignmentOffset(buffer, alignment));
}

/** A buffer of `bytes` whose start is a multiple of `alignment` (a power of two), for direct I/O. */
export function alignedBuffer(bytes: number, alignment: number): Buffer {
  const room = Buffer.allocUnsafeSlow(bytes + alignment);
  const offset = alignmentOffset(room, alignment);
  return room.subarray(offset, offset + bytes);
}

/** The id of one small piece of data, synchronously (bulk work belongs in `extentIds`). */
export function extentId(extent: Uint8Array, key: Uint8Array): Buffer {
  return call(() => binding.extentId(extent, key));
}

/** The verified header of the frame at the start of `bytes`, without reading its payload. */
export function readFrameHeader(bytes: Uint8Array): FrameHeader {
  return call(() => binding.readFrameHeader(bytes));
}

/** One frame holding `raw` (up to 1 GiB: an extent or a WAL segment) at zstd `level` 1..19. */
export async function compressFrame(raw: Buffer, level: number): Promise<Buffer> {
  requireLevel(level);
  return callAsync(() => binding.compressFrame(raw, level));
}

/** The longest frame `rawLength` bytes can make: the room encodeWalSegmentFile needs. */
export function frameBound(rawLength: number): number {
  requireInteger('raw length', rawLength, 0, MAX_FRAME_RAW_BYTES);
  return binding.frameBound(rawLength);
}

/** The raw bytes of exactly one frame, checked against its header and CRC-32C. */
export async function decompressFrame(frame: Buffer): Promise<Buffer> {
  return callAsync(() => binding.decompressFrame(frame));
}

/** One frame per buffer, in order; the frames are views into one buffer. */
export async function compressFrames(raws: readonly Buffer[], level: number): Promise<Buffer[]> {
  requireLevel(level);
  return split(await callAsync(() => binding.compressFrames([...raws], level)));
}

/**
 * One frame per listed extent of `chunk` (128 KiB pieces, by position, as `ExtentInfo.index`), in the
 * order listed; the frames are views into one buffer.
 */
export async function compressExtents(chunk: Buffer, extents: readonly number[], level: number): Promise<Buffer[]> {
  requireLevel(level);
  for (const index of extents) requireInteger('extent index', index, 0, 0xffffffff);
  return split(await callAsync(() => binding.compressExtents(chunk, [...extents], level)));
}

/**
 * The raw bytes of each frame (views into one buffer), all verified; the first bad frame rejects the
 * whole batch with a message naming its position.
 */
export async function decompressFrames(frames: readonly Buffer[]): Promise<Buffer[]> {
  return split(await callAsync(() => binding.decompressFrames([...frames])));
}

/** Extents decompressed into a caller's buffer: views into it, and the CRC-32C each one was checked against. */
export interface DecompressedExtents {
  extents: Buffer[];
  crc32c: Uint32Array;
}

/**
 * The extents whose frames lie in `packed` at `frameBounds` (offset and length pairs), decompressed
 * end to end into `out` (a buffer the caller reuses: a fresh buffer per batch makes V8 collect
 * garbage every few batches) and each checked against its id in `ids` (keyed with `key`).
 * FRAME_CORRUPT names the first frame that is damaged or holds another extent; BUFFER_LENGTH when
 * they do not fit.
 */
export async function decompressIdentifiedExtentsInto(
  packed: Buffer,
  frameBounds: Uint32Array,
  ids: readonly Buffer[],
  key: Buffer,
  out: Buffer,
): Promise<DecompressedExtents> {
  const idBytes = Buffer.concat(ids as Buffer[]);
  const { lengths, crc32c } = await callAsync(() => binding.decompressIdentifiedExtentsInto(packed, frameBounds, idBytes, key, out));
  return { extents: split({ data: out, lengths }), crc32c };
}

export interface WalReadOptions {
  /**
   * The WAL just before the segment: the previous segment, or its last pages (whole 8 KiB pages ending where the
   * segment starts), or several segments for records longer than one. Read only as far as needed to find the
   * record that continues into the segment; anything wrong with it only leaves that record skipped.
   */
  previous?: Buffer;
}

/** What the caller knows about a WAL segment before reading it: its file name and the cluster's settings. */
export interface WalSegmentContext {
  /** wal_segment_size in bytes; the buffer must be exactly this long. */
  segmentSize: number;
  /** PostgreSQL major version, 14..18: selects the page magic and the record formats. */
  pgMajor: number;
  /** Timeline of the file name (pages may carry a lower one on a new timeline's first segment, never a higher one). */
  timeline: number;
  /** Segment number of the file name: the segment starts at segmentNo * segmentSize. */
  segmentNo: bigint;
  /** The cluster's system identifier (decimal string or bigint); checked against the long page header when given. */
  systemIdentifier?: string | bigint;
}

/**
 * Why reading a segment stopped. `segment-end`, `continues` (the last record runs into the next segment) and
 * `switch` (the rest is padding) mean the WAL is complete; `zeros` (not written yet: a .partial, or the
 * current segment), `invalid-page`, `invalid-record` and `crc` mean valid WAL ends early at `endLsn`.
 */
export type WalEndReason = 'segment-end' | 'continues' | 'switch' | 'zeros' | 'invalid-page' | 'invalid-record' | 'crc';
export type WalTransactionKind = 'commit' | 'abort' | 'prepare' | 'commit-prepared' | 'abort-prepared';

/** A relation fork as PostgreSQL names its files: pg_tblspc/<spcOid> (1663 base, 1664 global), <dbOid>, <relNumber>. */
export interface WalRelation {
  spcOid: number;
  dbOid: number;
  relNumber: number;
}

/**
 * What one WAL segment holds. LSNs are bigints; `timeUs` values are microseconds since the Unix epoch
 * (`new Date(timeUs / 1000)`); forks are 0 main, 1 fsm, 2 vm, 3 init.
 */
export interface WalSegmentSummary
  extends Omit<NativeWalSegmentSummary, 'systemIdentifier' | 'endReason' | 'transactions' | 'droppedRelations' | 'databaseCreates'> {
  /** From the long page header, as a decimal string like the repository's. */
  systemIdentifier: string;
  /** The segment begins with the rest of a record that started before it. */
  continuedFromPrevious: boolean;
  /** That record, when it was read from `options.previous` (before `startLsn`): counted here, where it ends. */
  leadingRecordLsn?: bigint;
  /** Why that record was skipped: a block-level consumer has a gap at this segment's start. */
  leadingRecordSkipped?: string;
  /** Records read whole: those ending in this segment (all but a skipped leading one). */
  records: number;
  /** The first of them: `leadingRecordLsn` when it was read, else the first record starting in the segment. */
  firstRecordLsn?: bigint;
  /** End of valid WAL: the segment's end, the end of the XLOG_SWITCH record, or where the first unreadable record starts. */
  endLsn: bigint;
  endReason: WalEndReason;
  /** For `continues`: the record that runs into the next segment. */
  continuedRecordLsn?: bigint;
  /** The XLOG_SWITCH record, if any: everything after `endLsn` is padding. */
  switchLsn?: bigint;
  /**
   * Distinct blocks referenced per relation fork. `ranges` holds pairs [first, end) (end exclusive), sorted and
   * disjoint. Together with creations, truncations, dropped relations and database creates/drops, this is what a
   * block-level incremental backup needs; `unhandledSpecialUpdates` lists records that change relation files in
   * ways this summary does not decode (tablespace records, custom rmgrs).
   */
  relations: NativeWalSegmentSummary['relations'];
  transactions: Array<{ lsn: bigint; kind: WalTransactionKind; xid: number; timeUs: number }>;
  droppedRelations: Array<WalRelation & { lsn: bigint; xid: number; kind: WalTransactionKind }>;
  databaseCreates: Array<{
    lsn: bigint;
    dbOid: number;
    spcOid: number;
    /** file-copy: the template's files were copied without block references; wal-log: every block follows in WAL. */
    strategy: 'file-copy' | 'wal-log';
    sourceDbOid?: number;
    sourceSpcOid?: number;
  }>;
}

/**
 * Reads one whole WAL segment (PostgreSQL 14..18) and summarises it: records per rmgr and type, where valid WAL
 * ends and why, transaction ends with their times, restore points, checkpoints, block references per relation
 * fork, relation creations, truncations and drops, database creations and drops. Every record's CRC-32C is
 * checked; a bad record ends valid WAL (see `endReason`) rather than failing. Rejects with WAL_INVALID when the
 * buffer is not a whole segment or its first page cannot begin the segment `context` describes (magic of
 * another version, other system identifier, segment size, page address or a higher timeline), and with
 * INVALID_ARGUMENT for an unsupported version or segment size.
 *
 * A segment usually begins with the end of a record that started in the previous one. Without
 * `options.previous` that record is skipped (`leadingRecordSkipped` says so) and its block references and
 * transaction end are in no summary; with the previous segment (or its last pages) it is read, CRC-checked and
 * summarised here, where it ends, so that consecutive summaries cover every record exactly once.
 */
export async function summarizeWalSegment(
  segment: Buffer,
  context: WalSegmentContext,
  options: WalReadOptions = {},
): Promise<WalSegmentSummary> {
  const nativeContext = nativeWalContext(context);
  return walSummaryOf(await callAsync(() => binding.summarizeWalSegment(segment, nativeContext, options.previous)));
}

function walSummaryOf(native: NativeWalSegmentSummary): WalSegmentSummary {
  return {
    ...native,
    systemIdentifier: native.systemIdentifier.toString(),
    endReason: native.endReason as WalEndReason,
    transactions: native.transactions.map((t) => ({ ...t, kind: t.kind as WalTransactionKind })),
    droppedRelations: native.droppedRelations.map((d) => ({ ...d, kind: d.kind as WalTransactionKind })),
    databaseCreates: native.databaseCreates.map((d) => ({ ...d, strategy: d.strategy as 'file-copy' | 'wal-log' })),
  };
}

function nativeWalContext(context: WalSegmentContext) {
  requireInteger('timeline', context.timeline, 1, 0xffffffff);
  requireInteger('pgMajor', context.pgMajor, 0, 0xffffffff);
  requireInteger('segmentSize', context.segmentSize, 0, 0xffffffff);
  let systemIdentifier: bigint | undefined;
  if (context.systemIdentifier !== undefined) {
    try {
      systemIdentifier = BigInt(context.systemIdentifier);
    } catch {
      throw new PgfError('INVALID_ARGUMENT', `systemIdentifier must be a decimal integer, got ${String(context.systemIdentifier)}`);
    }
  }
  return {
    segmentSize: context.segmentSize,
    pgMajor: context.pgMajor,
    timeline: context.timeline,
    segmentNo: context.segmentNo,
    systemIdentifier,
  };
}

function sharesMemory(a: Buffer, b: Buffer): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;
}

/** A WAL segment file as `encodeWalSegmentFile` read it. */
export interface EncodedWalSegment {
  /** The file's identity (as `BigIntStats` names it), the same before and after the read. */
  stat: WalFileStat;
  /** The file's first bytes: its long page header. */
  head: Buffer;
  /** Where the trailing zeros start: the frame holds the bytes before. */
  zeroFrom: number;
  /** The frame, a view of `room`; empty when the file is not a whole segment of the context. */
  frame: Buffer;
  summary?: WalSegmentSummary;
  /** Why there is no summary, when one was asked for. */
  summaryError?: PgfError;
}

export interface WalFileStat {
  size: bigint;
  dev: bigint;
  ino: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/**
 * Reads the whole-segment file open at `fd` by mapping it (no copy into the process) and, when it
 * is as long as `context` says: summarises it when `encoding.summarize` (`previous` as for
 * summarizeWalSegment; a failure comes back as `summaryError`), compresses it without its trailing
 * zeros into one frame at `encoding.level` at the start of `room` (frameBound(segmentSize) long)
 * and copies its last bytes into `tail`. WAL_INVALID when the file changed while it was read.
 * Check `head` before storing anything.
 */
export async function encodeWalSegmentFile(
  fd: number,
  path: string,
  context: WalSegmentContext,
  encoding: { level: number; summarize: boolean },
  buffers: { room: Buffer; previous?: Buffer; tail?: Buffer },
): Promise<EncodedWalSegment> {
  requireLevel(encoding.level);
  // The worker thread writes `room` and `tail` while it reads `previous`: none may share memory.
  const { room, previous, tail } = buffers;
  const overlaps = (a: Buffer | undefined, b: Buffer | undefined) => a !== undefined && b !== undefined && sharesMemory(a, b);
  if (overlaps(room, tail) || overlaps(room, previous) || overlaps(tail, previous)) {
    throw new PgfError('INVALID_ARGUMENT', 'encodeWalSegmentFile needs room, tail and previous apart from one another');
  }
  const nativeContext = nativeWalContext(context);
  const native = await callAsync(() => binding.encodeWalSegmentFile(fd, path, nativeContext, encoding, previous, room, tail));
  return {
    stat: native.stat,
    head: native.head,
    zeroFrom: native.zeroFrom,
    frame: room.subarray(0, native.frameLength),
    ...summaryFields(native),
  };
}

/**
 * The summary encodeWalSegmentFile would have made of the whole-segment file open at `fd`, for a
 * segment pushed without one; with the file's identity. WAL_INVALID when the file is not a whole
 * segment of `context` or changed while it was read.
 */
export async function summarizeWalSegmentFile(
  fd: number,
  path: string,
  context: WalSegmentContext,
  previous?: Buffer,
): Promise<{ stat: WalFileStat; summary?: WalSegmentSummary; summaryError?: PgfError }> {
  const nativeContext = nativeWalContext(context);
  const native = await callAsync(() => binding.summarizeWalSegmentFile(fd, path, nativeContext, previous));
  return { stat: native.stat, ...summaryFields(native) };
}

function summaryFields(native: { summary?: NativeWalSegmentSummary | null; summaryError?: string | null }): { summary?: WalSegmentSummary; summaryError?: PgfError } {
  return {
    ...(native.summary != null ? { summary: walSummaryOf(native.summary) } : {}),
    ...(native.summaryError != null ? { summaryError: fromNativeError(new Error(native.summaryError)) } : {}),
  };
}

export interface WalBlockReference extends WalRelation {
  /** Block reference id within the record (0..32). */
  id: number;
  fork: number;
  block: number;
  /** The reference carries a full-page image. */
  image: boolean;
}

/** One record as pg_waldump shows it. */
export interface WalRecordInfo {
  lsn: bigint;
  prev: bigint;
  /** xl_tot_len (pg_waldump's "tot"; its "rec" is totLen - fpiLen). */
  totLen: number;
  fpiLen: number;
  xid: number;
  rmid: number;
  info: number;
  /** `Rmgr/TYPE` as pg_waldump names it (e.g. `Heap/INSERT`), null where it prints UNKNOWN. */
  type: string | null;
  blocks: WalBlockReference[];
}

/**
 * Every valid record of one whole WAL segment with its block references, and where valid WAL ends (the same rules,
 * options and errors as `summarizeWalSegment`). For tools and tests: archive-push wants the summary.
 */
export async function listWalRecords(
  segment: Buffer,
  context: WalSegmentContext,
  options: WalReadOptions = {},
): Promise<{ records: WalRecordInfo[]; endLsn: bigint; endReason: WalEndReason; endDetail?: string }> {
  const nativeContext = nativeWalContext(context);
  const list = await callAsync(() => binding.listWalRecords(segment, nativeContext, options.previous));
  const names = new Map<number, string | null>();
  const typeName = (rmid: number, info: number) => {
    const key = rmid * 256 + info;
    if (!names.has(key)) names.set(key, binding.walRecordTypeName(context.pgMajor, rmid, info));
    return names.get(key)!;
  };
  const records = Array.from(list.lsn, (lsn, i): WalRecordInfo => {
    const blocks: WalBlockReference[] = [];
    for (let b = list.blockStart[i]!; b < list.blockStart[i + 1]!; b++) {
      blocks.push({
        id: list.blockId[b]!,
        spcOid: list.blockSpcOid[b]!,
        dbOid: list.blockDbOid[b]!,
        relNumber: list.blockRelNumber[b]!,
        fork: list.blockFork[b]!,
        block: list.blockNumber[b]!,
        image: list.blockImage[b] === 1,
      });
    }
    return {
      lsn,
      prev: list.prev[i]!,
      totLen: list.totLen[i]!,
      fpiLen: list.fpiLen[i]!,
      xid: list.xid[i]!,
      rmid: list.rmid[i]!,
      info: list.info[i]!,
      type: typeName(list.rmid[i]!, list.info[i]!),
      blocks,
    };
  });
  return { records, endLsn: list.endLsn, endReason: list.endReason as WalEndReason, endDetail: list.endDetail };
}
