//! WAL page headers (`XLogPageHeaderData`, `XLogLongPageHeaderData`) and the checks
//! `XLogReaderValidatePageHeader` makes on them.

use super::{format_lsn, Cursor};

/// `XLOG_BLCKSZ`: the only WAL page size this build reads (every packaged PostgreSQL uses it).
pub const XLOG_BLCKSZ: usize = 8192;
/// `SizeOfXLogShortPHD`: magic, info, timeline, page address, remaining length, padding.
pub const SHORT_HEADER_SIZE: usize = 24;
/// `SizeOfXLogLongPHD`: the short header plus system identifier, segment size and page size.
pub const LONG_HEADER_SIZE: usize = 40;

/// The page starts with the rest of a record begun on an earlier page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// The page has a long header (the first page of every segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Full-page images on this page may be removed (obsolete; still a valid bit).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// The record that should have continued onto this page was abandoned (crash, then a
/// `XLOG_OVERWRITE_CONTRECORD` record written here instead).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `XLP_ALL_FLAGS`: every other bit of `xlp_info` is invalid.
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// A decoded WAL page header; `long` is present when `XLP_LONG_HEADER` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: u32,
    /// `xlp_pageaddr`: the LSN of the page's first byte.
    pub page_address: u64,
    /// `xlp_rem_len`: bytes of a continued record on this and later pages.
    pub rem_len: u32,
    pub long: Option<LongHeader>,
}

/// The extra fields of the long header on the first page of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader {
    pub system_identifier: u64,
    pub segment_size: u32,
    pub page_size: u32,
}

impl PageHeader {
    /// Decodes the header at the start of `page`; `None` when the bytes are too few for it.
    pub fn parse(page: &[u8]) -> Option<PageHeader> {
        let mut c = Cursor::new(page);
        let magic = c.u16()?;
        let info = c.u16()?;
        let timeline = c.u32()?;
        let page_address = c.u64()?;
        let rem_len = c.u32()?;
        c.skip(4)?;
        let long = if info & XLP_LONG_HEADER != 0 {
            Some(LongHeader {
                system_identifier: c.u64()?,
                segment_size: c.u32()?,
                page_size: c.u32()?,
            })
        } else {
            None
        };
        Some(PageHeader {
            magic,
            info,
            timeline,
            page_address,
            rem_len,
            long,
        })
    }

    /// `XLogPageHeaderSize`: where the page's data starts.
    pub fn size(&self) -> usize {
        if self.info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_SIZE
        } else {
            SHORT_HEADER_SIZE
        }
    }

    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    pub fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }
}

/// What a page header must agree with: the expectations of `XLogReaderValidatePageHeader`.
pub(crate) struct PageExpectation {
    pub magic: u16,
    pub address: u64,
    pub segment_size: u32,
    pub system_identifier: Option<u64>,
    /// Highest timeline the file name allows.
    pub max_timeline: u32,
    /// Timeline of the previous page: timelines never go backwards within a segment.
    pub min_timeline: u32,
    /// The first page of a segment must have a long header.
    pub first_in_segment: bool,
}

impl PageExpectation {
    /// Why `header` cannot be the page at `address`, if it cannot.
    pub fn check(&self, header: &PageHeader) -> std::result::Result<(), String> {
        let at = format_lsn(self.address);
        if header.magic != self.magic {
            let known = super::major_of_magic(header.magic)
                .map(|major| format!(" (PostgreSQL {major}'s)"))
                .unwrap_or_default();
            return Err(format!(
                "page at {at} has magic 0x{:04X}{known}, expected 0x{:04X}",
                header.magic, self.magic
            ));
        }
        if header.info & !XLP_ALL_FLAGS != 0 {
            return Err(format!(
                "page at {at} has invalid info bits 0x{:04X}",
                header.info
            ));
        }
        match header.long {
            Some(long) => {
                if let Some(expected) = self.system_identifier {
                    if long.system_identifier != expected {
                        return Err(format!(
                            "page at {at} belongs to system {}, expected {expected}",
                            long.system_identifier
                        ));
                    }
                }
                if long.segment_size != self.segment_size {
                    return Err(format!(
                        "page at {at} says segments hold {} bytes, expected {}",
                        long.segment_size, self.segment_size
                    ));
                }
                if long.page_size as usize != XLOG_BLCKSZ {
                    return Err(format!(
                        "page at {at} says WAL pages hold {} bytes, only {XLOG_BLCKSZ} is supported",
                        long.page_size
                    ));
                }
            }
            None if self.first_in_segment => {
                return Err(format!("first page at {at} has no long header"));
            }
            None => {}
        }
        if header.page_address != self.address {
            return Err(format!(
                "page at {at} says it is at {}",
                format_lsn(header.page_address)
            ));
        }
        if header.timeline == 0 || header.timeline > self.max_timeline {
            return Err(format!(
                "page at {at} has timeline {}, the segment's name says {}",
                header.timeline, self.max_timeline
            ));
        }
        if header.timeline < self.min_timeline {
            return Err(format!(
                "page at {at} has timeline {} after a page of timeline {}",
                header.timeline, self.min_timeline
            ));
        }
        Ok(())
    }
}
