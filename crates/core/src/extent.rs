//! Extents: runs of up to 16 pages (128 KiB) at aligned positions of a file. For relation files
//! this is where change detection happens (page LSNs against the parent backup's start) and
//! where pages are checked against their checksums; for every file, an extent's id is the keyed
//! BLAKE3 hash of its bytes.
//!
//! The backup hot loop calls [`scan_and_identify`] once per chunk of several MiB: each extent is
//! scanned and, when it must be hashed, hashed right away while its 128 KiB are still in cache.
//!
//! No rayon inside: the node binding already runs one chunk per libuv worker, so chunks of
//! different files use the cores; splitting a 128 KiB extent across threads would cost more in
//! hand-off than it saves, and BLAKE3 still uses SIMD across the 1 KiB chunks of one extent.

use crate::error::{CoreError, ErrorCode, Result};
use crate::frame::FrameHeader;
use crate::page::{
    check_block_range, check_checksum, is_all_zero, lsn_of, page_header, pages, wants_checksum,
    ChecksumFailure, PAGE_SIZE,
};

pub const EXTENT_PAGES: usize = 16;
pub const EXTENT_BYTES: usize = EXTENT_PAGES * PAGE_SIZE;
pub const KEY_BYTES: usize = 32;
pub const ID_BYTES: usize = 32;

pub type ExtentId = [u8; ID_BYTES];

/// What a scan of one chunk of a relation segment file needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// Relation block number of the chunk's first page; a multiple of [`EXTENT_PAGES`] since
    /// chunks start at extent boundaries (and relation segments hold a multiple of 16 pages).
    pub first_block: u32,
    /// The parent backup's start LSN; `None` when there is no parent (every extent is changed).
    pub changed_since: Option<u64>,
    /// Verify page checksums (the server has data checksums on).
    pub verify_checksums: bool,
    /// This backup's start LSN: pages at or past it are not checksum-verified, as they may be
    /// torn by a concurrent write that WAL replay repairs. `None` verifies every initialised page.
    pub backup_start: Option<u64>,
}

/// One extent of a scanned chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentScan {
    /// Pages in this extent: 16 except possibly for the last extent of a file. A parent's extent
    /// at the same position with a different page count must not be reused (the file shrank or
    /// grew inside it), which only the caller can see.
    pub pages: usize,
    /// Highest pd_lsn over the extent's initialised pages (0 when there are none).
    pub max_lsn: u64,
    /// Every byte is zero: the extent is stored as nothing and restored as a hole.
    pub all_zero: bool,
    /// The parent's extent at this position cannot be reused; see [`scan`] for the rule.
    pub changed: bool,
}

/// The scan of one chunk: one entry per extent, and the pages that failed checksum verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkScan {
    pub extents: Vec<ExtentScan>,
    pub checksum_failures: Vec<ChecksumFailure>,
}

/// A scanned chunk with the ids of the extents that need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifiedChunk {
    pub scan: ChunkScan,
    /// Per extent: its id when it changed and is not all zero, else `None`.
    pub ids: Vec<Option<ExtentId>>,
}

/// Scans a chunk of a relation segment file (whole pages, starting at an extent boundary).
///
/// An extent is `changed` (its parent copy may not be reused) when any of these holds:
/// - there is no parent (`changed_since` is `None`);
/// - its highest page LSN is at or past the parent's start: a page modified since then;
/// - any page is all zero, or has pd_upper == 0, or fails PostgreSQL's header checks. Such a page
///   carries no LSN we can trust. An all-zero page in particular can be a page truncated away
///   and re-extended since the parent, whose old contents must not come back; a garbage header
///   can hide a low LSN on a page that did change. Hashing these costs a little CPU on the odd
///   extent (the tail of a bulk-extended relation, hash index bucket pages); reusing a wrong
///   parent copy would cost a corrupt restore.
///
/// Everything else is unchanged: per DESIGN.md section 5, the parent's start checkpoint flushed
/// every page modified before it, so an on-disk page whose LSN is below it has not changed since.
/// Hint-bit and free-space-map updates that PostgreSQL does not WAL-log are the exception it
/// tolerates itself: the parent's copy of such a page is an older but valid version of it.
pub fn scan(chunk: &[u8], options: &ScanOptions) -> Result<ChunkScan> {
    let mut scan = ChunkScan {
        extents: Vec::new(),
        checksum_failures: Vec::new(),
    };
    for_each_extent(chunk, options, |_, summary, failures| {
        scan.extents.push(summary);
        scan.checksum_failures.extend_from_slice(failures);
    })?;
    Ok(scan)
}

/// [`scan`], plus the id of every extent that is changed and not all zero, in one pass.
pub fn scan_and_identify(
    chunk: &[u8],
    options: &ScanOptions,
    key: &[u8],
) -> Result<IdentifiedChunk> {
    let hasher = keyed_hasher(key)?;
    let mut scan = ChunkScan {
        extents: Vec::new(),
        checksum_failures: Vec::new(),
    };
    let mut ids = Vec::new();
    for_each_extent(chunk, options, |extent, summary, failures| {
        ids.push((summary.changed && !summary.all_zero).then(|| hash_with(&hasher, extent)));
        scan.extents.push(summary);
        scan.checksum_failures.extend_from_slice(failures);
    })?;
    Ok(IdentifiedChunk { scan, ids })
}

/// Ids of every 128 KiB piece of `data` (any length; the last piece may be short). For files
/// that are not relation files, and for hashing extents read back at restore (`--delta`).
pub fn ids(data: &[u8], key: &[u8]) -> Result<Vec<ExtentId>> {
    let hasher = keyed_hasher(key)?;
    Ok(data
        .chunks(EXTENT_BYTES)
        .map(|extent| hash_with(&hasher, extent))
        .collect())
}

/// The id of one extent's bytes.
pub fn id(extent: &[u8], key: &[u8]) -> Result<ExtentId> {
    Ok(hash_with(&keyed_hasher(key)?, extent))
}

/// Restore's read path in one pass: decompresses `frames` end to end into `out` (as
/// [`crate::frame::decompress_many_into_checked`]) and checks that each holds the extent `ids` names
/// (`ids` is the ids end to end, [`ID_BYTES`] each, one per frame). The frame checksums catch
/// damaged bytes; the ids catch an index that points at the wrong frame. Returns each frame's
/// header: the extent's length and the CRC-32C its bytes were checked against.
pub fn decompress_identified_into(
    frames: &[&[u8]],
    ids: &[u8],
    key: &[u8],
    out: &mut [u8],
) -> Result<Vec<FrameHeader>> {
    if ids.len() != frames.len() * ID_BYTES {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} frames need {} bytes of ids, got {}",
                frames.len(),
                frames.len() * ID_BYTES,
                ids.len()
            ),
        ));
    }
    let hasher = keyed_hasher(key)?;
    // Each extent is hashed as soon as it is decompressed, while its 128 KiB are still in cache.
    crate::frame::decompress_many_into_checked(frames, out, |i, raw| {
        let expected = ids
            .get(i * ID_BYTES..(i + 1) * ID_BYTES)
            .unwrap_or_default();
        if hash_with(&hasher, raw) != expected {
            return Err(CoreError::new(
                ErrorCode::FrameCorrupt,
                format!("frame {i} does not hold the extent its index entry names"),
            ));
        }
        Ok(())
    })
}

fn keyed_hasher(key: &[u8]) -> Result<blake3::Hasher> {
    let key: &[u8; KEY_BYTES] = key.try_into().map_err(|_| {
        CoreError::new(
            ErrorCode::InvalidArgument,
            format!("an extent key is {KEY_BYTES} bytes, got {}", key.len()),
        )
    })?;
    Ok(blake3::Hasher::new_keyed(key))
}

fn hash_with(keyed: &blake3::Hasher, extent: &[u8]) -> ExtentId {
    // Cloning a fresh keyed hasher skips re-deriving the key schedule per extent.
    let mut hasher = keyed.clone();
    hasher.update(extent);
    *hasher.finalize().as_bytes()
}

fn for_each_extent(
    chunk: &[u8],
    options: &ScanOptions,
    mut visit: impl FnMut(&[u8], ExtentScan, &[ChecksumFailure]),
) -> Result<()> {
    let page_count = pages(chunk)?.len();
    if !(options.first_block as usize).is_multiple_of(EXTENT_PAGES) {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!(
                "a chunk starts at an extent boundary (a multiple of {EXTENT_PAGES} blocks), not at block {}",
                options.first_block
            ),
        ));
    }
    check_block_range(options.first_block, page_count)?;
    let mut failures = Vec::new();
    let mut first_block = options.first_block;
    for extent in chunk.chunks(EXTENT_BYTES) {
        failures.clear();
        let summary = scan_extent(extent, first_block, options, &mut failures)?;
        visit(extent, summary, &failures);
        first_block = first_block.wrapping_add(EXTENT_PAGES as u32);
    }
    Ok(())
}

fn scan_extent(
    extent: &[u8],
    first_block: u32,
    options: &ScanOptions,
    failures: &mut Vec<ChecksumFailure>,
) -> Result<ExtentScan> {
    let pages = pages(extent)?;
    let mut summary = ExtentScan {
        pages: pages.len(),
        max_lsn: 0,
        all_zero: true,
        changed: options.changed_since.is_none(),
    };
    for (block, page) in (first_block..).zip(pages) {
        // A real page's LSN is never zero, so this settles almost every page without a full
        // zero check.
        if lsn_of(page) == 0 && is_all_zero(page) {
            summary.changed = true;
            continue;
        }
        summary.all_zero = false;
        let header = page_header(page);
        if header.is_new() || !header.is_sane() {
            summary.changed = true;
        }
        if !header.is_new() {
            summary.max_lsn = summary.max_lsn.max(header.lsn);
        }
        if options.verify_checksums && wants_checksum(&header, options.backup_start) {
            if let Some(failure) = check_checksum(page, &header, block) {
                failures.push(failure);
            }
        }
    }
    if let Some(since) = options.changed_since {
        if summary.max_lsn >= since {
            summary.changed = true;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
