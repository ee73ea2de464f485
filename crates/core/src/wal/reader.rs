//! The records of one segment, in order, reassembled across pages and checked the way
//! `XLogReadRecord` checks them, up to the end of valid WAL.
//!
//! A segment usually begins with the rest of a record that started in the previous one. Alone,
//! that record cannot be read (its header and CRC are in the previous segment), so it is skipped
//! as `XLogFindNextRecord` does. Given the tail of the previous segment
//! ([`SegmentReader::with_previous`]), the reader starts there and returns that record first: then
//! every record belongs to exactly one segment, the one it ends in.

use std::borrow::Cow;

use super::decode::{crc_matches, decode, rmgr_id_is_valid, Record, RecordHeader};
use super::page::{PageExpectation, PageHeader, SHORT_HEADER_SIZE, XLOG_BLCKSZ};
use super::rmgr::{RM_XLOG_ID, XLOG_SWITCH};
use super::{format_lsn, max_align, Cursor, SegmentContext, RECORD_HEADER_SIZE};
use crate::error::{CoreError, ErrorCode, Result};

const PAGE: u64 = XLOG_BLCKSZ as u64;

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

/// The record a segment begins in the middle of, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadingRecord {
    /// The segment begins with a record (no continuation).
    None,
    /// Read from the previous segment's tail; the iterator returns it first.
    Read(u64),
    /// Skipped: its start is not available (no previous tail given, or it does not hold it).
    Skipped(String),
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
    /// A page-aligned tail of the previous segment (empty when not given).
    previous: &'a [u8],
    bytes: &'a [u8],
    pg_major: u32,
    /// LSN of this segment's first byte.
    start: u64,
    expect: PageExpectation,
    first_page: PageHeader,
    /// Where the next record (or the page header before it) starts.
    pos: u64,
    /// The previous record, once one was read.
    prev: Option<u64>,
    /// Until a record was read, its prev-link must point below this.
    prev_limit: u64,
    /// The validated header of the page that holds `pos`, by page LSN.
    page: Option<(u64, PageHeader)>,
    leading: LeadingRecord,
    aborted: Vec<u64>,
    end: Option<EndOfWal>,
}

impl<'a> SegmentReader<'a> {
    /// Checks the first page (long header) against `context`; WAL_INVALID when it does not
    /// begin the segment the context describes, or when `bytes` is not a whole segment.
    pub fn new(bytes: &'a [u8], context: &SegmentContext) -> Result<SegmentReader<'a>> {
        let mut reader = SegmentReader::checked(bytes, context)?;
        reader.skip_leading_continuation();
        Ok(reader)
    }

    /// Like [`SegmentReader::new`], with `previous`: the WAL just before this segment, a whole
    /// number of pages ending where it starts (the previous segment, a tail of it, or several
    /// segments for records longer than one). When this segment begins in the
    /// middle of a record that starts in `previous`, that record is read and returned first.
    /// Anything wrong with `previous` only leaves that record skipped
    /// ([`SegmentReader::leading_record`] says why).
    pub fn with_previous(
        bytes: &'a [u8],
        context: &SegmentContext,
        previous: &'a [u8],
    ) -> Result<SegmentReader<'a>> {
        if !previous.len().is_multiple_of(XLOG_BLCKSZ)
            || previous.len() as u64 > context.start_lsn()
        {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the WAL before a segment must be whole {XLOG_BLCKSZ}-byte pages ending where the segment starts, got {} bytes",
                    previous.len()
                ),
            ));
        }
        let base = SegmentReader::checked(bytes, context)?;
        let first = base.first_page;
        if previous.is_empty() || !first.is_contrecord() || first.is_overwrite_contrecord() {
            let mut reader = base;
            reader.skip_leading_continuation();
            return Ok(reader);
        }
        let mut reader = SegmentReader {
            previous,
            ..SegmentReader::checked(bytes, context)?
        };
        match reader.read_leading() {
            Ok(()) => Ok(reader),
            Err((why, continuing)) => {
                let mut reader = base;
                reader.skip_leading_continuation();
                reader.leading = LeadingRecord::Skipped(why);
                // A record that covers this whole segment is known by its LSN, if not read.
                if let (Some(lsn), Some(end)) = (continuing, reader.end.as_mut()) {
                    if end.reason == EndReason::ContinuesIntoNext {
                        end.continued_record = Some(lsn);
                    }
                }
                Ok(reader)
            }
        }
    }

    fn checked(bytes: &'a [u8], context: &SegmentContext) -> Result<SegmentReader<'a>> {
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
        Ok(SegmentReader {
            previous: &[],
            bytes,
            pg_major: context.pg_major,
            start,
            expect,
            first_page,
            pos: start,
            prev: None,
            prev_limit: start,
            page: Some((start, first_page)),
            leading: LeadingRecord::None,
            aborted: Vec::new(),
            end: None,
        })
    }

    /// The first page's header (long header).
    pub fn first_page(&self) -> &PageHeader {
        &self.first_page
    }

    /// LSN of the segment's first byte.
    pub fn start_lsn(&self) -> u64 {
        self.start
    }

    /// The segment began with the rest of a record from the previous segment.
    pub fn continued_from_previous(&self) -> bool {
        self.leading != LeadingRecord::None
    }

    /// What became of the record the segment begins in the middle of.
    pub fn leading_record(&self) -> &LeadingRecord {
        &self.leading
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

    /// The 8 KiB page at `page_lsn`, from this segment or the previous tail.
    fn page_bytes(&self, page_lsn: u64) -> Option<&'a [u8]> {
        let (buffer, offset) = if page_lsn >= self.start {
            (self.bytes, page_lsn - self.start)
        } else {
            let tail_start = self.start - self.previous.len() as u64;
            (self.previous, page_lsn.checked_sub(tail_start)?)
        };
        let offset = usize::try_from(offset).ok()?;
        buffer.get(offset..)?.get(..XLOG_BLCKSZ)
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

    /// The validated header of the page at `page_lsn` (a multiple of the page size).
    fn enter_page(
        &mut self,
        page_lsn: u64,
    ) -> std::result::Result<PageHeader, (EndReason, String)> {
        if let Some((at, header)) = self.page {
            if at == page_lsn {
                return Ok(header);
            }
        }
        let cut = || {
            (
                EndReason::InvalidPage,
                format!("page at {} is cut short", format_lsn(page_lsn)),
            )
        };
        let bytes = self.page_bytes(page_lsn).ok_or_else(cut)?;
        if bytes.iter().take(SHORT_HEADER_SIZE).all(|&b| b == 0) {
            return Err((
                EndReason::Zeros,
                format!("page at {} is zeros", format_lsn(page_lsn)),
            ));
        }
        let header = PageHeader::parse(bytes).ok_or_else(cut)?;
        self.expect.address = page_lsn;
        self.expect
            .check(&header)
            .map_err(|detail| (EndReason::InvalidPage, detail))?;
        self.expect.min_timeline = header.timeline;
        self.page = Some((page_lsn, header));
        Ok(header)
    }

    /// Skips the rest of a record begun in the previous segment, as `XLogFindNextRecord` does.
    fn skip_leading_continuation(&mut self) {
        let mut header = self.first_page;
        let mut page = self.start;
        loop {
            if header.is_overwrite_contrecord() || !header.is_contrecord() {
                self.pos = page + header.size() as u64;
                return;
            }
            self.leading = LeadingRecord::Skipped(
                "the segment begins in the middle of a record and the previous one was not given"
                    .to_owned(),
            );
            let rem = u64::from(header.rem_len);
            let room = PAGE - header.size() as u64;
            if max_align(rem) < room {
                self.pos = page + header.size() as u64 + max_align(rem);
                return;
            }
            page += PAGE;
            if page >= self.segment_end() {
                // The whole segment is the middle of one record; it may even end here.
                self.pos = self.segment_end();
                if rem > room {
                    self.finish(self.pos, EndReason::ContinuesIntoNext, None, None);
                }
                return;
            }
            match self.enter_page(page) {
                Ok(next) => {
                    if next.is_contrecord()
                        && !next.is_overwrite_contrecord()
                        && u64::from(next.rem_len) != rem.saturating_sub(room)
                    {
                        let detail = format!(
                            "page at {} continues a record with {} bytes, expected {}",
                            format_lsn(page),
                            next.rem_len,
                            rem.saturating_sub(room)
                        );
                        self.pos = page;
                        self.finish(page, EndReason::InvalidPage, Some(detail), None);
                        return;
                    }
                    header = next;
                }
                Err((reason, detail)) => {
                    self.pos = page;
                    self.finish(page, reason, Some(detail), None);
                    return;
                }
            }
        }
    }

    /// Positions the reader on the record that starts in the previous tail and continues into
    /// this segment, reading the records before it on the way to check the chain.
    fn read_leading(&mut self) -> std::result::Result<(), (String, Option<u64>)> {
        let tail_start = self.start - self.previous.len() as u64;
        // The last page of the tail on which a record starts holds the one that continues.
        let mut page = self.start;
        let begin = loop {
            if page <= tail_start {
                return Err((
                    "the WAL given before the segment does not hold the start of the record that continues into it"
                        .to_owned(),
                    None,
                ));
            }
            page -= PAGE;
            let header = self
                .page_bytes(page)
                .and_then(PageHeader::parse)
                .ok_or_else(|| ("previous page cut short".to_owned(), None))?;
            if header.magic != self.expect.magic || header.page_address != page {
                return Err((
                    format!(
                        "the page at {} given before the segment does not precede it",
                        format_lsn(page)
                    ),
                    None,
                ));
            }
            let rem = if header.is_contrecord() && !header.is_overwrite_contrecord() {
                u64::from(header.rem_len)
            } else {
                0
            };
            if max_align(rem) < PAGE - header.size() as u64 {
                break page + header.size() as u64 + max_align(rem);
            }
        };
        // Validate the tail's pages from the one where reading begins, with timelines rising.
        let this_segment = self.expect.min_timeline;
        self.expect.min_timeline = 1;
        self.page = None;
        self.pos = begin;
        self.prev_limit = page;
        self.enter_page(page)
            .map_err(|(_, detail)| (format!("previous segment: {detail}"), None))?;
        // Records wholly inside the tail are read (and checked) but not returned.
        loop {
            let here = self.pos;
            if here >= self.start {
                return Err(("no record continues into this segment".to_owned(), None));
            }
            let saved_prev = self.prev;
            match self.read_record() {
                Some(record) if record.next_lsn > self.start || record.lsn >= self.start => {
                    // Rewind so the iterator returns this record first.
                    self.leading = LeadingRecord::Read(record.lsn);
                    // Abandoned records before it belong to the previous segment's summary.
                    self.aborted.clear();
                    self.pos = here;
                    self.prev = saved_prev;
                    self.page = None;
                    self.expect.min_timeline = 1;
                    let page_lsn = here - here % PAGE;
                    self.enter_page(page_lsn)
                        .map_err(|(_, detail)| (format!("previous segment: {detail}"), None))?;
                    if self.expect.min_timeline > this_segment {
                        return Err(("timeline goes backwards into this segment".to_owned(), None));
                    }
                    self.end = None;
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    let end = self.end.take();
                    return Err(match end {
                        Some(EndOfWal {
                            reason: EndReason::ContinuesIntoNext,
                            continued_record: Some(lsn),
                            ..
                        }) => (
                            format!(
                                "the record at {} continues past this segment too; it is read where it ends",
                                format_lsn(lsn)
                            ),
                            Some(lsn),
                        ),
                        end => (
                            format!(
                                "the record continuing into this segment could not be read: {}",
                                end.and_then(|e| e.detail)
                                    .unwrap_or_else(|| "reading stopped".to_owned())
                            ),
                            None,
                        ),
                    });
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
            // The first record read follows one that started before where reading began.
            None => header.prev < self.prev_limit,
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

    /// Collects a record that spans pages, starting at `lsn` with `first` bytes on its page.
    fn assemble(&mut self, lsn: u64, first: &[u8], tot_len: usize) -> Assembly {
        let available = (self.segment_end().saturating_sub(lsn)) as usize;
        let mut record = Vec::with_capacity(tot_len.min(available));
        record.extend_from_slice(first);
        let mut header_checked = first.len() >= RECORD_HEADER_SIZE;
        let mut page = lsn - lsn % PAGE + PAGE;
        loop {
            if page >= self.segment_end() {
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
                self.pos = page;
                return Assembly::Restart;
            }
            if !header.is_contrecord() {
                let detail = format!(
                    "there is no contrecord flag at {} for the record at {}",
                    format_lsn(page),
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
                    (tot_len as u64).saturating_sub(got),
                    format_lsn(page)
                );
                self.finish(lsn, EndReason::InvalidRecord, Some(detail), None);
                return Assembly::Stopped;
            }
            let len = (XLOG_BLCKSZ - header.size()).min(header.rem_len as usize);
            let part = self
                .page_bytes(page)
                .and_then(|p| p.get(header.size()..header.size() + len));
            match part {
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
                let next = page + header.size() as u64 + max_align(u64::from(header.rem_len));
                return Assembly::Done(record, next);
            }
            page += PAGE;
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
            if self.pos.is_multiple_of(PAGE) {
                let header = match self.enter_page(self.pos) {
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
                self.pos += header.size() as u64;
            }
            let lsn = self.pos;
            let in_page = (lsn % PAGE) as usize;
            let Some(on_page) = self
                .page_bytes(lsn - lsn % PAGE)
                .and_then(|p| p.get(in_page..))
            else {
                self.finish(lsn, EndReason::InvalidRecord, None, None);
                return None;
            };
            let Some(tot_len) = Cursor::new(on_page).u32() else {
                self.finish(lsn, EndReason::InvalidRecord, None, None);
                return None;
            };
            if tot_len == 0 {
                let detail = format!("record length 0 at {}", format_lsn(lsn));
                self.finish(lsn, EndReason::Zeros, Some(detail), None);
                return None;
            }
            if on_page.len() >= RECORD_HEADER_SIZE {
                let checked = RecordHeader::parse(on_page)
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
            let (bytes, next_lsn) = match on_page.get(..tot) {
                Some(record) => (Cow::Borrowed(record), lsn + max_align(tot as u64)),
                None => match self.assemble(lsn, on_page, tot) {
                    Assembly::Done(record, next) => (Cow::Owned(record), next),
                    Assembly::Restart => continue,
                    Assembly::Stopped => return None,
                },
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
            let segment_size = self.bytes.len() as u64;
            let record_next = if switch {
                next_lsn.div_ceil(segment_size) * segment_size
            } else {
                next_lsn
            };
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
