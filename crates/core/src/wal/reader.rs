//! The records of one segment, in order, reassembled across pages and checked the way
//! `XLogReadRecord` checks them, up to the end of valid WAL.

use std::borrow::Cow;

use super::decode::{crc_matches, decode, rmgr_id_is_valid, Record, RecordHeader};
use super::page::{PageExpectation, PageHeader, SHORT_HEADER_SIZE, XLOG_BLCKSZ};
use super::rmgr::{RM_XLOG_ID, XLOG_SWITCH};
use super::{format_lsn, max_align, Cursor, SegmentContext, RECORD_HEADER_SIZE};
use crate::error::{CoreError, ErrorCode, Result};

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The last record ends exactly at the end of the segment.
    SegmentEnd,
    /// The last record starts in this segment and continues into the next one.
    ContinuesIntoNext,
    /// An `XLOG_SWITCH` record: the rest of the segment is padding.
    Switch,
    /// Zeros where the next record or page should be: WAL not written (yet), e.g. a `.partial`.
    Zeros,
    /// A page that does not continue this segment (recycled segment, torn write, other magic).
    InvalidPage,
    /// A record whose length, resource manager, prev-link, continuation or layout is wrong.
    InvalidRecord,
    /// A record whose CRC-32C does not match.
    Crc,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::SegmentEnd => "segment-end",
            EndReason::ContinuesIntoNext => "continues",
            EndReason::Switch => "switch",
            EndReason::Zeros => "zeros",
            EndReason::InvalidPage => "invalid-page",
            EndReason::InvalidRecord => "invalid-record",
            EndReason::Crc => "crc",
        }
    }

    /// WAL runs to the end of the segment (nothing after `lsn` was cut off).
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            EndReason::SegmentEnd | EndReason::ContinuesIntoNext | EndReason::Switch
        )
    }
}

/// Where valid WAL ends in a segment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOfWal {
    /// End of valid WAL: the segment's end, the end of the `XLOG_SWITCH` record, or where the
    /// first record that could not be read starts.
    pub lsn: u64,
    pub reason: EndReason,
    /// What was wrong, for the reasons that mean something was.
    pub detail: Option<String>,
    /// For `ContinuesIntoNext`: the record that continues.
    pub continued_record: Option<u64>,
}

enum Assembly {
    Done(Vec<u8>, u64),
    /// An overwrite contrecord page: read again from `self.pos`.
    Restart,
    Stopped,
}

/// Iterates over the valid records of one whole segment.
///
/// ```ignore
/// let mut reader = SegmentReader::new(&segment, &context)?;
/// for record in reader.by_ref() { /* ... */ }
/// let end = reader.end().unwrap();
/// ```
pub struct SegmentReader<'a> {
    bytes: &'a [u8],
    pg_major: u32,
    start: u64,
    expect: PageExpectation,
    first_page: PageHeader,
    /// Where the next record (or the page header before it) starts.
    pos: u64,
    /// The previous record, once one was read in this segment.
    prev: Option<u64>,
    /// The validated header of the page that holds `pos` (offset in the segment).
    page: Option<(usize, PageHeader)>,
    continued_from_previous: bool,
    aborted: Vec<u64>,
    end: Option<EndOfWal>,
}

impl<'a> SegmentReader<'a> {
    /// Checks the first page (long header) against `context`; WAL_INVALID when it does not
    /// begin the segment the context describes, or when `bytes` is not a whole segment.
    pub fn new(bytes: &'a [u8], context: &SegmentContext) -> Result<SegmentReader<'a>> {
        let magic = context.check()?;
        let start = context.start_lsn();
        let invalid = |what: String| {
            CoreError::new(
                ErrorCode::WalInvalid,
                format!(
                    "not a valid WAL segment at {} on timeline {}: {what}",
                    format_lsn(start),
                    context.timeline
                ),
            )
        };
        if bytes.len() != context.segment_size as usize {
            return Err(invalid(format!(
                "it holds {} bytes, the cluster's segments hold {}",
                bytes.len(),
                context.segment_size
            )));
        }
        let first_page = PageHeader::parse(bytes)
            .ok_or_else(|| invalid("it is shorter than a page header".to_owned()))?;
        let mut expect = PageExpectation {
            magic,
            address: start,
            segment_size: context.segment_size,
            system_identifier: context.system_identifier,
            max_timeline: context.timeline,
            min_timeline: 1,
            first_in_segment: true,
        };
        expect.check(&first_page).map_err(invalid)?;
        expect.first_in_segment = false;
        expect.min_timeline = first_page.timeline;
        let mut reader = SegmentReader {
            bytes,
            pg_major: context.pg_major,
            start,
            expect,
            first_page,
            pos: start,
            prev: None,
            page: Some((0, first_page)),
            continued_from_previous: false,
            aborted: Vec::new(),
            end: None,
        };
        reader.skip_leading_continuation();
        Ok(reader)
    }

    /// The first page's header (long header).
    pub fn first_page(&self) -> &PageHeader {
        &self.first_page
    }

    /// LSN of the segment's first byte.
    pub fn start_lsn(&self) -> u64 {
        self.start
    }

    /// The segment began with the rest of a record from the previous segment (skipped).
    pub fn continued_from_previous(&self) -> bool {
        self.continued_from_previous
    }

    /// Records abandoned by a crash and overwritten (`XLP_FIRST_IS_OVERWRITE_CONTRECORD`).
    pub fn aborted_records(&self) -> &[u64] {
        &self.aborted
    }

    /// Where and why reading stopped; `None` until the iterator has returned `None`.
    pub fn end(&self) -> Option<&EndOfWal> {
        self.end.as_ref()
    }

    fn segment_end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn lsn_at(&self, offset: usize) -> u64 {
        self.start + offset as u64
    }

    fn finish(
        &mut self,
        lsn: u64,
        reason: EndReason,
        detail: Option<String>,
        continued: Option<u64>,
    ) {
        self.end = Some(EndOfWal {
            lsn,
            reason,
            detail,
            continued_record: continued,
        });
    }

    /// The validated header of the page at `offset` (a multiple of the page size).
    fn enter_page(
        &mut self,
        offset: usize,
    ) -> std::result::Result<PageHeader, (EndReason, String)> {
        if let Some((at, header)) = self.page {
            if at == offset {
                return Ok(header);
            }
        }
        let address = self.lsn_at(offset);
        let bytes = self
            .bytes
            .get(offset..)
            .and_then(|rest| rest.get(..XLOG_BLCKSZ))
            .ok_or_else(|| {
                (
                    EndReason::InvalidPage,
                    format!("page at {} is cut short", format_lsn(address)),
                )
            })?;
        if bytes.iter().take(SHORT_HEADER_SIZE).all(|&b| b == 0) {
            return Err((
                EndReason::Zeros,
                format!("page at {} is zeros", format_lsn(address)),
            ));
        }
        let header = PageHeader::parse(bytes).ok_or_else(|| {
            (
                EndReason::InvalidPage,
                format!("page at {} is cut short", format_lsn(address)),
            )
        })?;
        self.expect.address = address;
        self.expect
            .check(&header)
            .map_err(|detail| (EndReason::InvalidPage, detail))?;
        self.expect.min_timeline = header.timeline;
        self.page = Some((offset, header));
        Ok(header)
    }

    /// Skips the rest of a record begun in the previous segment, as `XLogFindNextRecord` does.
    fn skip_leading_continuation(&mut self) {
        let mut header = self.first_page;
        let mut offset = 0usize;
        loop {
            if header.is_overwrite_contrecord() || !header.is_contrecord() {
                self.pos = self.lsn_at(offset + header.size());
                return;
            }
            self.continued_from_previous = true;
            let rem = u64::from(header.rem_len);
            let room = (XLOG_BLCKSZ - header.size()) as u64;
            if max_align(rem) < room {
                self.pos = self.lsn_at(offset) + header.size() as u64 + max_align(rem);
                return;
            }
            offset += XLOG_BLCKSZ;
            if offset >= self.bytes.len() {
                // The whole segment is the middle of one record.
                self.pos = self.segment_end();
                return;
            }
            match self.enter_page(offset) {
                Ok(next) => {
                    if next.is_contrecord()
                        && !next.is_overwrite_contrecord()
                        && u64::from(next.rem_len) != rem.saturating_sub(room)
                    {
                        let detail = format!(
                            "page at {} continues a record with {} bytes, expected {}",
                            format_lsn(self.lsn_at(offset)),
                            next.rem_len,
                            rem.saturating_sub(room)
                        );
                        self.finish(
                            self.lsn_at(offset),
                            EndReason::InvalidPage,
                            Some(detail),
                            None,
                        );
                        return;
                    }
                    header = next;
                }
                Err((reason, detail)) => {
                    self.pos = self.lsn_at(offset);
                    self.finish(self.pos, reason, Some(detail), None);
                    return;
                }
            }
        }
    }

    /// `ValidXLogRecordHeader`.
    fn check_header(&self, header: &RecordHeader, lsn: u64) -> std::result::Result<(), String> {
        if (header.tot_len as usize) < RECORD_HEADER_SIZE {
            return Err(format!(
                "invalid record length at {}: expected at least {RECORD_HEADER_SIZE}, got {}",
                format_lsn(lsn),
                header.tot_len
            ));
        }
        if !rmgr_id_is_valid(self.pg_major, header.rmid) {
            return Err(format!(
                "invalid resource manager ID {} at {}",
                header.rmid,
                format_lsn(lsn)
            ));
        }
        let prev_ok = match self.prev {
            Some(prev) => header.prev == prev,
            // The first record starting in a segment follows one that started before it.
            None => header.prev < self.start,
        };
        if !prev_ok {
            return Err(format!(
                "record with incorrect prev-link {} at {}",
                format_lsn(header.prev),
                format_lsn(lsn)
            ));
        }
        Ok(())
    }

    /// Collects a record that spans pages, starting at `offset` with `first` bytes on its first page.
    fn assemble(&mut self, offset: usize, first: usize, tot_len: usize, lsn: u64) -> Assembly {
        let available = self.bytes.len().saturating_sub(offset);
        let mut record = Vec::with_capacity(tot_len.min(available));
        match self.bytes.get(offset..offset + first) {
            Some(part) => record.extend_from_slice(part),
            None => {
                self.finish(lsn, EndReason::InvalidRecord, None, None);
                return Assembly::Stopped;
            }
        }
        let mut header_checked = first >= RECORD_HEADER_SIZE;
        let mut page = offset + first;
        loop {
            if page >= self.bytes.len() {
                let end = self.segment_end();
                self.finish(end, EndReason::ContinuesIntoNext, None, Some(lsn));
                return Assembly::Stopped;
            }
            let header = match self.enter_page(page) {
                Ok(header) => header,
                Err((reason, detail)) => {
                    self.finish(lsn, reason, Some(detail), None);
                    return Assembly::Stopped;
                }
            };
            if header.is_overwrite_contrecord() {
                self.aborted.push(lsn);
                self.pos = self.lsn_at(page);
                return Assembly::Restart;
            }
            if !header.is_contrecord() {
                let detail = format!(
                    "there is no contrecord flag at {} for the record at {}",
                    format_lsn(self.lsn_at(page)),
                    format_lsn(lsn)
                );
                self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                return Assembly::Stopped;
            }
            let got = record.len() as u64;
            if header.rem_len == 0 || tot_len as u64 != u64::from(header.rem_len) + got {
                let detail = format!(
                    "invalid contrecord length {} (expected {}) at {}",
                    header.rem_len,
                    tot_len as u64 - got.min(tot_len as u64),
                    format_lsn(self.lsn_at(page))
                );
                self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                return Assembly::Stopped;
            }
            let data = page + header.size();
            let len = (XLOG_BLCKSZ - header.size()).min(header.rem_len as usize);
            match self.bytes.get(data..data + len) {
                Some(part) => record.extend_from_slice(part),
                None => {
                    self.finish(lsn, EndReason::InvalidRecord, None, None);
                    return Assembly::Stopped;
                }
            }
            if !header_checked && record.len() >= RECORD_HEADER_SIZE {
                let checked = RecordHeader::parse(&record)
                    .ok_or_else(|| "record header cut short".to_owned())
                    .and_then(|h| self.check_header(&h, lsn));
                if let Err(detail) = checked {
                    self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                    return Assembly::Stopped;
                }
                header_checked = true;
            }
            if record.len() >= tot_len {
                let next = self.lsn_at(data) + max_align(u64::from(header.rem_len));
                return Assembly::Done(record, next);
            }
            page += XLOG_BLCKSZ;
        }
    }

    fn read_record(&mut self) -> Option<Record<'a>> {
        loop {
            if self.end.is_some() {
                return None;
            }
            let segment_end = self.segment_end();
            if self.pos >= segment_end {
                self.finish(segment_end, EndReason::SegmentEnd, None, None);
                return None;
            }
            let mut offset = (self.pos - self.start) as usize;
            if offset % XLOG_BLCKSZ == 0 {
                let header = match self.enter_page(offset) {
                    Ok(header) => header,
                    Err((reason, detail)) => {
                        self.finish(self.pos, reason, Some(detail), None);
                        return None;
                    }
                };
                if header.is_contrecord() && !header.is_overwrite_contrecord() {
                    let detail = format!(
                        "page at {} continues a record that no earlier page began",
                        format_lsn(self.pos)
                    );
                    self.finish(self.pos, EndReason::InvalidPage, Some(detail), None);
                    return None;
                }
                offset += header.size();
                self.pos += header.size() as u64;
            }
            let lsn = self.pos;
            let on_page = XLOG_BLCKSZ - offset % XLOG_BLCKSZ;
            let tot_len = match self.bytes.get(offset..).and_then(|b| Cursor::new(b).u32()) {
                Some(len) => len,
                None => {
                    self.finish(lsn, EndReason::InvalidRecord, None, None);
                    return None;
                }
            };
            if tot_len == 0 {
                let detail = format!("record length 0 at {}", format_lsn(lsn));
                self.finish(lsn, EndReason::Zeros, Some(detail), None);
                return None;
            }
            if on_page >= RECORD_HEADER_SIZE {
                let checked = self
                    .bytes
                    .get(offset..)
                    .and_then(RecordHeader::parse)
                    .ok_or_else(|| "record header cut short".to_owned())
                    .and_then(|h| self.check_header(&h, lsn));
                if let Err(detail) = checked {
                    self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                    return None;
                }
            } else if (tot_len as usize) < RECORD_HEADER_SIZE {
                let detail = format!(
                    "invalid record length at {}: expected at least {RECORD_HEADER_SIZE}, got {tot_len}",
                    format_lsn(lsn)
                );
                self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                return None;
            }
            let tot = tot_len as usize;
            let (bytes, next_lsn) = if tot <= on_page {
                match self.bytes.get(offset..offset + tot) {
                    Some(record) => (Cow::Borrowed(record), lsn + max_align(tot as u64)),
                    None => {
                        self.finish(lsn, EndReason::InvalidRecord, None, None);
                        return None;
                    }
                }
            } else {
                match self.assemble(offset, on_page, tot, lsn) {
                    Assembly::Done(record, next) => (Cow::Owned(record), next),
                    Assembly::Restart => continue,
                    Assembly::Stopped => return None,
                }
            };
            let Some(header) = RecordHeader::parse(&bytes) else {
                self.finish(lsn, EndReason::InvalidRecord, None, None);
                return None;
            };
            if !crc_matches(&bytes, header.crc) {
                let detail = format!(
                    "incorrect resource manager data checksum in record at {}",
                    format_lsn(lsn)
                );
                self.finish(lsn, EndReason::Crc, Some(detail), None);
                return None;
            }
            let switch = header.rmid == RM_XLOG_ID && header.info & 0xF0 == XLOG_SWITCH;
            // PostgreSQL pretends a switch record extends to the end of its segment.
            let record_next = if switch { segment_end } else { next_lsn };
            let record = match decode(self.pg_major, lsn, record_next, bytes) {
                Ok(record) => record,
                Err(detail) => {
                    let detail = format!("{detail} at {}", format_lsn(lsn));
                    self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                    return None;
                }
            };
            self.prev = Some(lsn);
            self.pos = record_next;
            if switch {
                self.finish(next_lsn.min(segment_end), EndReason::Switch, None, None);
            }
            return Some(record);
        }
    }
}

impl<'a> Iterator for SegmentReader<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        self.read_record()
    }
}
