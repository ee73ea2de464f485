//! WAL segments of PostgreSQL 14 to 18: page headers, records reassembled across pages, their
//! CRC-32C, the end of valid WAL, and a summary of what a segment did (transactions, restore
//! points, checkpoints, the blocks it touched, relations created, truncated and dropped).
//!
//! The layouts follow PostgreSQL's `access/xlog_internal.h` (page headers), `access/xlogrecord.h`
//! and `xlogreader.c` (records, block references) and the rmgr headers for the record bodies that
//! are decoded (`access/xact.h`, `catalog/pg_control.h`, `catalog/storage_xlog.h`,
//! `commands/dbcommands_xlog.h`). Everything is read little-endian with 8 KiB WAL pages, like
//! [`crate::page`]: what every packaged PostgreSQL build for our targets writes.
//!
//! Reading follows `XLogReadRecord`: a page header that does not continue the segment, a record
//! whose length, prev-link or CRC is wrong, or zeros where a record should be, is where valid WAL
//! ends. That is not an error (a segment after a switch or a `.partial` one ends early); the
//! summary says where and why it ended. Only a first page that cannot begin this segment is an
//! error (WAL_INVALID). No input makes this module panic: every read of input-derived data is
//! bounds-checked.
//!
//! - [`SegmentReader`]: the records of one segment, one at a time, decoded down to their block
//!   references.
//! - [`summarize_segment`]: one pass over a segment into a [`SegmentSummary`].

pub mod decode;
mod page;
mod reader;
pub mod rmgr;
mod summary;

pub use decode::{BlockImage, BlockRef, ImageCompression, Record, RelFileLocator};
pub use page::{
    PageHeader, LONG_HEADER_SIZE, SHORT_HEADER_SIZE, XLOG_BLCKSZ, XLP_ALL_FLAGS, XLP_BKP_REMOVABLE,
    XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
};
pub use reader::{EndOfWal, EndReason, LeadingRecord, SegmentReader};
pub use rmgr::{
    decode_event, record_type_name, rmgr_name, CheckpointEvent, DatabaseCreate,
    DatabaseCreateStrategy, DatabaseDrop, Event, OverwrittenContrecord, RestorePointEvent,
    SmgrCreate, SmgrTruncate, XactEvent, XactKind,
};
pub use summary::{
    summarize_segment, summarize_segment_with_previous, DroppedRelation, RelationBlocks, RmgrCount,
    SegmentSummary, TypeCount,
};

use crate::error::{CoreError, ErrorCode, Result};

/// `SizeOfXLogRecord`: the fixed part of every record.
pub const RECORD_HEADER_SIZE: usize = 24;
/// Smallest WAL segment PostgreSQL allows (`WalSegMinSize`).
pub const MIN_SEGMENT_SIZE: u32 = 1 << 20;
/// Largest WAL segment PostgreSQL allows (`WalSegMaxSize`).
pub const MAX_SEGMENT_SIZE: u32 = 1 << 30;
/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The length of a segment without its trailing zeros. Since PostgreSQL 11 the rest of a segment
/// after an `XLOG_SWITCH` is zeros, page headers included: archive-push stores it as nothing and
/// archive-get restores it as zeros, which is lossless whatever the content.
pub fn zero_tail_start(bytes: &[u8]) -> usize {
    const WINDOW: usize = 64 * 1024;
    let mut end = bytes.len();
    while end >= WINDOW && bytes[end - WINDOW..end].iter().all(|&b| b == 0) {
        end -= WINDOW;
    }
    bytes[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |at| at + 1)
}

/// Bytes from the middle of a segment compressed at both levels by [`compression_level`].
const LEVEL_SAMPLE_BYTES: usize = 32 * 1024;
/// How much larger (percent) the sample may come out at [`frame::FAST_LEVEL`] for it to be chosen.
const FAST_LEVEL_MAX_GROWTH_PERCENT: usize = 5;

/// The zstd level for a segment's stored bytes: [`frame::FAST_LEVEL`] when a 32 KiB sample from
/// their middle comes out at most 5% larger at it than at `level`, else `level`. The fast level
/// skips the entropy coding of literals, which on WAL of bulk row copies barely shrinks them
/// (pgbench rows: 12% less compression time for 0.7% more bytes than level 1) and on text-heavy
/// WAL is worth a quarter of the size (24% more bytes); the sample tells them apart in 70-190 µs.
pub fn compression_level(stored: &[u8], level: i32) -> Result<i32> {
    if stored.len() < 2 * LEVEL_SAMPLE_BYTES {
        return Ok(level);
    }
    let start = stored.len() / 2 - LEVEL_SAMPLE_BYTES / 2;
    let sample = &stored[start..start + LEVEL_SAMPLE_BYTES];
    let at_level = crate::frame::compressed_length(sample, level)?;
    let fast = crate::frame::compressed_length(sample, crate::frame::FAST_LEVEL)?;
    Ok(
        if fast * 100 <= at_level * (100 + FAST_LEVEL_MAX_GROWTH_PERCENT) {
            crate::frame::FAST_LEVEL
        } else {
            level
        },
    )
}

/// `XLOG_PAGE_MAGIC` of each supported major version: the WAL format changes with each major.
pub fn page_magic(pg_major: u32) -> Option<u16> {
    match pg_major {
        14 => Some(0xD10D),
        15 => Some(0xD110),
        16 => Some(0xD113),
        17 => Some(0xD116),
        18 => Some(0xD118),
        _ => None,
    }
}

/// The major version whose WAL pages carry `magic`, if it is one we know.
pub fn major_of_magic(magic: u16) -> Option<u32> {
    (14..=18).find(|&major| page_magic(major) == Some(magic))
}

/// What the caller knows about a segment before reading it: its file name and the cluster's
/// settings. The first page must agree with all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentContext {
    /// `wal_segment_size` in bytes: a power of two from 1 MiB to 1 GiB. The buffer must be this long.
    pub segment_size: u32,
    /// PostgreSQL major version (14..=18): selects the page magic and the record formats.
    pub pg_major: u32,
    /// Timeline of the file name. Pages may carry a lower one (the first segment of a new
    /// timeline starts with its parent's pages), never a higher one.
    pub timeline: u32,
    /// Segment number of the file name: the segment starts at `segment_no * segment_size`.
    pub segment_no: u64,
    /// The cluster's system identifier; `None` skips that check.
    pub system_identifier: Option<u64>,
}

impl SegmentContext {
    /// LSN of the segment's first byte.
    pub fn start_lsn(&self) -> u64 {
        self.segment_no.wrapping_mul(u64::from(self.segment_size))
    }

    pub(crate) fn check(&self) -> Result<u16> {
        let magic = page_magic(self.pg_major).ok_or_else(|| {
            CoreError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "PostgreSQL {} is not supported (14 to 18 are)",
                    self.pg_major
                ),
            )
        })?;
        if !self.segment_size.is_power_of_two()
            || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
        {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "a WAL segment size is a power of two from 1 MiB to 1 GiB, got {}",
                    self.segment_size
                ),
            ));
        }
        if self.timeline == 0 {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "timeline 0 does not exist",
            ));
        }
        // The whole segment must lie below 2^64: its end LSN is computed everywhere.
        if self
            .segment_no
            .checked_add(1)
            .and_then(|n| n.checked_mul(u64::from(self.segment_size)))
            .is_none()
        {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                format!("segment number {} is past the end of WAL", self.segment_no),
            ));
        }
        Ok(magic)
    }
}

/// An LSN as PostgreSQL prints it: `%X/%X` (upper-case hex, no padding), e.g. `0/16B3D80`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// A PostgreSQL `TimestampTz` (microseconds since 2000-01-01 UTC) as microseconds since the Unix
/// epoch; saturates instead of overflowing on nonsense values.
pub fn unix_micros(timestamp_tz: i64) -> i64 {
    timestamp_tz.saturating_add(POSTGRES_EPOCH_UNIX_MICROS)
}

/// `MAXALIGN` on the 64-bit platforms we ship for.
pub(crate) fn max_align(len: u64) -> u64 {
    (len + 7) & !7
}

/// Bounds-checked little-endian reads over input bytes. Every accessor returns `None` past the
/// end instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.at
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    pub(crate) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    pub(crate) fn skip(&mut self, len: usize) -> Option<()> {
        self.take(len).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests;
