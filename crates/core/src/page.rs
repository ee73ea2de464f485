//! PostgreSQL data pages: the page header, PostgreSQL's header sanity checks (`PageIsVerified`)
//! and its data checksum (`pg_checksum_page`).
//!
//! Pages are read little-endian: PostgreSQL writes them in host byte order and every target this
//! crate ships for is little-endian.

mod checksum;

pub use checksum::checksum;

use crate::error::{CoreError, ErrorCode, Result};

/// `BLCKSZ`: the only page size this build reads (PostgreSQL's default, used by every packaged build).
pub const PAGE_SIZE: usize = 8192;
/// `SizeOfPageHeaderData`.
pub const PAGE_HEADER_SIZE: usize = 24;
/// `PG_PAGE_LAYOUT_VERSION` since PostgreSQL 8.3.
pub const PAGE_LAYOUT_VERSION: u8 = 4;

/// `PD_VALID_FLAG_BITS`: PD_HAS_FREE_LINE_POINTERS | PD_PAGE_FULL | PD_ALL_VISIBLE.
const VALID_FLAG_BITS: u16 = 0x0007;
/// `MAXIMUM_ALIGNOF` on the 64-bit platforms we ship for.
const MAX_ALIGN: u16 = 8;

/// `PageHeaderData`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// `pd_lsn` as one 64-bit LSN (xlogid << 32 | xrecoff).
    pub lsn: u64,
    pub checksum: u16,
    pub flags: u16,
    pub lower: u16,
    pub upper: u16,
    pub special: u16,
    /// High byte of `pd_pagesize_version`.
    pub page_size: u16,
    /// Low byte of `pd_pagesize_version`.
    pub layout_version: u8,
    pub prune_xid: u32,
}

impl PageHeader {
    /// Decodes the first 24 bytes of `page`; BUFFER_LENGTH when there are fewer.
    pub fn parse(page: &[u8]) -> Result<PageHeader> {
        let bytes: &[u8; PAGE_HEADER_SIZE] = page
            .get(..PAGE_HEADER_SIZE)
            .and_then(|head| head.try_into().ok())
            .ok_or_else(|| {
                CoreError::new(
                    ErrorCode::BufferLength,
                    format!(
                        "a page header needs {PAGE_HEADER_SIZE} bytes, got {}",
                        page.len()
                    ),
                )
            })?;
        Ok(PageHeader::decode(bytes))
    }

    fn decode(b: &[u8; PAGE_HEADER_SIZE]) -> PageHeader {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let size_version = u16_at(18);
        PageHeader {
            lsn: (u64::from(u32_at(0)) << 32) | u64::from(u32_at(4)),
            checksum: u16_at(8),
            flags: u16_at(10),
            lower: u16_at(12),
            upper: u16_at(14),
            special: u16_at(16),
            page_size: size_version & 0xFF00,
            layout_version: (size_version & 0x00FF) as u8,
            prune_xid: u32_at(20),
        }
    }

    /// `PageIsNew`: never initialised (pd_upper == 0), so it carries no LSN or checksum.
    pub fn is_new(&self) -> bool {
        self.upper == 0
    }

    /// The header checks of `PageIsVerified`. They do not prove the page is right, only that it
    /// looks like a page PostgreSQL would accept into its buffer pool.
    pub fn is_sane(&self) -> bool {
        self.flags & !VALID_FLAG_BITS == 0
            && self.lower <= self.upper
            && self.upper <= self.special
            && usize::from(self.special) <= PAGE_SIZE
            && self.special.is_multiple_of(MAX_ALIGN)
    }
}

/// `pd_lsn` of a page without decoding the rest of the header. `page` must hold at least 8 bytes.
#[inline]
pub(crate) fn lsn_of(page: &[u8; PAGE_SIZE]) -> u64 {
    let high = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    let low = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    (u64::from(high) << 32) | u64::from(low)
}

/// Whether every byte is zero (a page the file was extended with and never written).
#[inline]
pub fn is_all_zero(bytes: &[u8]) -> bool {
    // OR-fold fixed-size blocks so the compiler vectorises; stop at the first non-zero block,
    // which for a real page is the first one (its LSN).
    let mut blocks = bytes.chunks_exact(256);
    for block in &mut blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// What `PageIsVerified` would conclude about one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageVerdict {
    /// Initialised, sane header, checksum matches (or was not asked for).
    Valid,
    /// Every byte zero: PostgreSQL accepts it as a new page.
    AllZero,
    /// pd_upper == 0 but not all zero: PostgreSQL rejects it.
    NewNotZero,
    /// The header fails PostgreSQL's sanity checks.
    BadHeader,
    /// The stored checksum is not the one computed.
    ChecksumMismatch { expected: u16, found: u16 },
}

impl PageVerdict {
    pub fn is_ok(self) -> bool {
        matches!(self, PageVerdict::Valid | PageVerdict::AllZero)
    }
}

/// `PageIsVerified` for one page at `block` (its block number in the relation, not in the segment
/// file). A bad checksum wins over a bad header, as it is the stronger evidence of damage.
pub fn verify(page: &[u8; PAGE_SIZE], block: u32, checksums: bool) -> PageVerdict {
    let header = page_header(page);
    if !header.is_new() {
        if checksums {
            let expected = checksum(page, block);
            if expected != header.checksum {
                return PageVerdict::ChecksumMismatch {
                    expected,
                    found: header.checksum,
                };
            }
        }
        if header.is_sane() {
            return PageVerdict::Valid;
        }
    }
    if is_all_zero(page) {
        PageVerdict::AllZero
    } else if header.is_new() {
        PageVerdict::NewNotZero
    } else {
        PageVerdict::BadHeader
    }
}

#[inline]
pub(crate) fn page_header(page: &[u8; PAGE_SIZE]) -> PageHeader {
    let mut head = [0u8; PAGE_HEADER_SIZE];
    head.copy_from_slice(&page[..PAGE_HEADER_SIZE]);
    PageHeader::decode(&head)
}

/// A page whose stored checksum differs from the computed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumFailure {
    /// Block number in the relation (as PostgreSQL and pg_checksums report it).
    pub block: u32,
    /// The checksum computed from the page as read.
    pub expected: u16,
    /// The checksum stored in the page header.
    pub found: u16,
    /// The page's LSN as read (it may be garbage on a damaged page).
    pub lsn: u64,
}

/// Splits `buffer` into whole pages; BUFFER_LENGTH unless its length is a multiple of the page size.
pub fn pages(buffer: &[u8]) -> Result<Pages<'_>> {
    if !buffer.len().is_multiple_of(PAGE_SIZE) {
        return Err(CoreError::new(
            ErrorCode::BufferLength,
            format!(
                "{} bytes is not a whole number of {PAGE_SIZE}-byte pages",
                buffer.len()
            ),
        ));
    }
    Ok(Pages(buffer.chunks_exact(PAGE_SIZE)))
}

/// The pages of a buffer, as fixed-size arrays so that per-page code has no bounds checks.
pub struct Pages<'a>(std::slice::ChunksExact<'a, u8>);

impl<'a> Iterator for Pages<'a> {
    type Item = &'a [u8; PAGE_SIZE];

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().and_then(|page| page.try_into().ok())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Pages<'_> {}

/// The block number of the last page of a buffer of `count` pages starting at `first_block`;
/// INVALID_ARGUMENT when it would pass the largest block number PostgreSQL uses.
pub(crate) fn check_block_range(first_block: u32, count: usize) -> Result<()> {
    let last = u64::from(first_block) + count.saturating_sub(1) as u64;
    // MaxBlockNumber is 0xFFFFFFFE; 0xFFFFFFFF is InvalidBlockNumber.
    if last > 0xFFFF_FFFE {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("{count} pages from block {first_block} pass the largest block number"),
        ));
    }
    Ok(())
}

/// Whether a page's checksum is checked when verifying: as pg_checksums and base backups do, new
/// pages carry no checksum, and pages at or past `skip_from_lsn` (the backup start) may be torn
/// by a concurrent write that WAL replay repairs.
#[inline]
pub(crate) fn wants_checksum(header: &PageHeader, skip_from_lsn: Option<u64>) -> bool {
    !header.is_new() && skip_from_lsn.is_none_or(|start| header.lsn < start)
}

/// Checks the checksum of every page in `buffer`, whose first page is relation block
/// `first_block`. Pages with pd_upper == 0 and pages whose LSN is at or past `skip_from_lsn` are
/// not checked (see [`wants_checksum`]).
pub fn verify_checksums(
    buffer: &[u8],
    first_block: u32,
    skip_from_lsn: Option<u64>,
) -> Result<Vec<ChecksumFailure>> {
    let pages = pages(buffer)?;
    check_block_range(first_block, pages.len())?;
    let mut failures = Vec::new();
    for (block, page) in (first_block..).zip(pages) {
        let header = page_header(page);
        if wants_checksum(&header, skip_from_lsn) {
            if let Some(failure) = check_checksum(page, &header, block) {
                failures.push(failure);
            }
        }
    }
    Ok(failures)
}

#[inline]
pub(crate) fn check_checksum(
    page: &[u8; PAGE_SIZE],
    header: &PageHeader,
    block: u32,
) -> Option<ChecksumFailure> {
    let expected = checksum(page, block);
    (expected != header.checksum).then_some(ChecksumFailure {
        block,
        expected,
        found: header.checksum,
        lsn: header.lsn,
    })
}

#[cfg(test)]
pub(crate) mod tests;
