//! Hand-built segments: page headers, records across pages and segments, the ends of valid WAL,
//! the decoded record bodies, and garbage that must never panic.

use super::decode::*;
use super::rmgr::*;
use super::*;
use crate::page::tests::Rng;

const MIB: u32 = 1 << 20;
const SYSID: u64 = 7_301_234_567_890_123_456;
const SEGNO: u64 = 3;
const BLCKSZ: usize = XLOG_BLCKSZ;

fn context(pg_major: u32) -> SegmentContext {
    SegmentContext {
        segment_size: MIB,
        pg_major,
        timeline: 1,
        segment_no: SEGNO,
        system_identifier: Some(SYSID),
    }
}

/// A full-page image to attach to a block reference.
struct Image {
    bytes: Vec<u8>,
    hole_offset: u16,
    info: u8,
    /// Written for compressed images with a hole.
    hole_length: Option<u16>,
}

/// The part of a record after its 24-byte header: fragment headers, then payloads.
#[derive(Default)]
struct Body {
    headers: Vec<u8>,
    payload: Vec<u8>,
    main: Vec<u8>,
}

impl Body {
    fn new() -> Body {
        Body::default()
    }

    fn block(
        mut self,
        id: u8,
        fork_flags: u8,
        locator: Option<RelFileLocator>,
        block: u32,
        data: &[u8],
        image: Option<Image>,
    ) -> Body {
        let mut flags = fork_flags;
        if !data.is_empty() {
            flags |= BKPBLOCK_HAS_DATA;
        }
        if image.is_some() {
            flags |= BKPBLOCK_HAS_IMAGE;
        }
        if locator.is_none() {
            flags |= BKPBLOCK_SAME_REL;
        }
        self.headers.push(id);
        self.headers.push(flags);
        self.headers
            .extend_from_slice(&(data.len() as u16).to_le_bytes());
        if let Some(image) = &image {
            self.headers
                .extend_from_slice(&(image.bytes.len() as u16).to_le_bytes());
            self.headers
                .extend_from_slice(&image.hole_offset.to_le_bytes());
            self.headers.push(image.info);
            if let Some(hole) = image.hole_length {
                self.headers.extend_from_slice(&hole.to_le_bytes());
            }
            self.payload.extend_from_slice(&image.bytes);
        }
        if let Some(l) = locator {
            for v in [l.spc, l.db, l.rel] {
                self.headers.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.headers.extend_from_slice(&block.to_le_bytes());
        self.payload.extend_from_slice(data);
        self
    }

    fn origin(mut self, origin: u16) -> Body {
        self.headers.push(BLOCK_ID_ORIGIN);
        self.headers.extend_from_slice(&origin.to_le_bytes());
        self
    }

    fn toplevel(mut self, xid: u32) -> Body {
        self.headers.push(BLOCK_ID_TOPLEVEL_XID);
        self.headers.extend_from_slice(&xid.to_le_bytes());
        self
    }

    fn main(mut self, data: &[u8]) -> Body {
        self.main = data.to_vec();
        self
    }

    fn bytes(self) -> Vec<u8> {
        let mut out = self.headers;
        if self.main.len() >= 256 {
            out.push(BLOCK_ID_DATA_LONG);
            out.extend_from_slice(&(self.main.len() as u32).to_le_bytes());
        } else if !self.main.is_empty() {
            out.push(BLOCK_ID_DATA_SHORT);
            out.push(self.main.len() as u8);
        }
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.main);
        out
    }
}

fn record_bytes(rmid: u8, info: u8, xid: u32, prev: u64, body: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_HEADER_SIZE + body.len());
    rec.extend_from_slice(&((RECORD_HEADER_SIZE + body.len()) as u32).to_le_bytes());
    rec.extend_from_slice(&xid.to_le_bytes());
    rec.extend_from_slice(&prev.to_le_bytes());
    rec.push(info);
    rec.push(rmid);
    rec.extend_from_slice(&[0, 0]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(body), &rec[..20]);
    rec.extend_from_slice(&crc.to_le_bytes());
    rec.extend_from_slice(body);
    rec
}

/// Writes segments the way PostgreSQL's WAL insertion lays them out.
struct Builder {
    ctx: SegmentContext,
    magic: u16,
    buf: Vec<u8>,
    pos: usize,
    prev: u64,
    timeline: u32,
}

impl Builder {
    fn new(ctx: SegmentContext) -> Builder {
        Builder::continuing(ctx, 0)
    }

    /// `count` consecutive segments from `ctx`'s, written as one stream.
    fn segments(ctx: SegmentContext, count: usize) -> Builder {
        let mut b = Builder::new(ctx);
        b.buf.resize(ctx.segment_size as usize * count, 0);
        b
    }

    /// A segment whose first `rem` bytes finish a record begun in the previous segment.
    fn continuing(ctx: SegmentContext, rem: usize) -> Builder {
        let mut b = Builder {
            ctx,
            magic: page_magic(ctx.pg_major).unwrap(),
            buf: vec![0u8; ctx.segment_size as usize],
            pos: 0,
            prev: ctx.start_lsn() - 0x1000,
            timeline: ctx.timeline,
        };
        let flags = if rem > 0 { XLP_FIRST_IS_CONTRECORD } else { 0 };
        b.pos = b.page_header(0, flags, rem as u32);
        if rem > 0 {
            let junk: Vec<u8> = (0..rem).map(|i| (i * 7 + 3) as u8).collect();
            b.spill(&junk);
            b.pos = max_align(b.pos as u64) as usize;
        }
        b
    }

    fn start(&self) -> u64 {
        self.ctx.start_lsn()
    }

    fn lsn(&self) -> u64 {
        self.start() + self.pos as u64
    }

    /// Writes a page header (a long one at a segment start); returns its size.
    fn page_header(&mut self, at: usize, info: u16, rem_len: u32) -> usize {
        let segment = self.ctx.segment_size as usize;
        let info = if at.is_multiple_of(segment) {
            info | XLP_LONG_HEADER
        } else {
            info
        };
        let h = &mut self.buf[at..];
        h[0..2].copy_from_slice(&self.magic.to_le_bytes());
        h[2..4].copy_from_slice(&info.to_le_bytes());
        h[4..8].copy_from_slice(&self.timeline.to_le_bytes());
        h[8..16].copy_from_slice(&(self.ctx.start_lsn() + at as u64).to_le_bytes());
        h[16..20].copy_from_slice(&rem_len.to_le_bytes());
        if info & XLP_LONG_HEADER != 0 {
            h[24..32].copy_from_slice(&SYSID.to_le_bytes());
            h[32..36].copy_from_slice(&self.ctx.segment_size.to_le_bytes());
            h[36..40].copy_from_slice(&(BLCKSZ as u32).to_le_bytes());
            LONG_HEADER_SIZE
        } else {
            SHORT_HEADER_SIZE
        }
    }

    /// Copies `data` from `pos`, continuing onto new pages (with contrecord headers) as needed.
    /// Returns false when the data runs past the end of the buffer.
    fn spill(&mut self, mut data: &[u8]) -> bool {
        loop {
            let room = BLCKSZ - self.pos % BLCKSZ;
            let n = room.min(data.len());
            self.buf[self.pos..self.pos + n].copy_from_slice(&data[..n]);
            self.pos += n;
            data = &data[n..];
            if data.is_empty() {
                return true;
            }
            if self.pos >= self.buf.len() {
                return false;
            }
            self.pos += self.page_header(self.pos, XLP_FIRST_IS_CONTRECORD, data.len() as u32);
        }
    }

    /// Positions at the next record start: MAXALIGNed, past a page header at a page boundary.
    fn align(&mut self) {
        self.pos = max_align(self.pos as u64) as usize;
        if self.pos.is_multiple_of(BLCKSZ) && self.pos < self.buf.len() {
            self.pos += self.page_header(self.pos, 0, 0);
        }
    }

    /// Segment `i` of what was written, with its context.
    fn segment(&self, i: usize) -> (Vec<u8>, SegmentContext) {
        let size = self.ctx.segment_size as usize;
        let ctx = SegmentContext {
            segment_no: self.ctx.segment_no + i as u64,
            ..self.ctx
        };
        (self.buf[i * size..(i + 1) * size].to_vec(), ctx)
    }

    /// Appends a whole record; returns its LSN.
    fn raw(&mut self, record: &[u8]) -> u64 {
        self.align();
        let lsn = self.lsn();
        self.spill(record);
        self.prev = lsn;
        lsn
    }

    fn record(&mut self, rmid: u8, info: u8, xid: u32, body: Body) -> u64 {
        self.align();
        let rec = record_bytes(rmid, info, xid, self.prev, &body.bytes());
        self.raw(&rec)
    }

    /// Writes XLOG NOOP records until the next record would start at `offset` within a page.
    fn pad_to_page_offset(&mut self, offset: usize) {
        loop {
            self.align();
            let at = self.pos % BLCKSZ;
            if at == offset {
                return;
            }
            let gap = if at < offset {
                offset - at
            } else {
                BLCKSZ - at + offset
            };
            // Record sizes 32..=280 (24-byte header, 2-byte main data header, 6..=254 bytes);
            // never leave a gap smaller than the smallest record.
            let size = match gap {
                0..=31 => 32,
                32..=280 => gap,
                _ => (gap - 32).min(280),
            };
            self.record(
                RM_XLOG_ID,
                0x20,
                0,
                Body::new().main(&vec![0xAB; size - 26]),
            );
        }
    }

    fn finish(self) -> Vec<u8> {
        self.buf
    }
}

fn heap_insert(rel: u32, block: u32) -> Body {
    Body::new()
        .block(0, 0, Some(loc(rel)), block, &[1, 2, 3, 4, 5, 6], None)
        .main(&[0, 0, 0])
}

fn loc(rel: u32) -> RelFileLocator {
    RelFileLocator {
        spc: 1663,
        db: 5,
        rel,
    }
}

fn summary(bytes: &[u8], ctx: &SegmentContext) -> SegmentSummary {
    summarize_segment(bytes, ctx).unwrap()
}

#[test]
fn reads_records_on_one_page_and_stops_at_zeros() {
    let ctx = context(16);
    let mut b = Builder::new(ctx);
    let first = b.record(RM_HEAP_ID, 0x00, 700, heap_insert(16384, 0));
    let second = b.record(RM_HEAP_ID, 0x00, 700, heap_insert(16384, 1));
    let third = b.record(RM_HEAP_ID, 0x80, 701, heap_insert(16385, 0));
    let end = b.lsn();
    let seg = b.finish();

    let mut reader = SegmentReader::new(&seg, &ctx).unwrap();
    let records: Vec<_> = reader.by_ref().collect();
    assert_eq!(
        records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![first, second, third]
    );
    assert_eq!(first, ctx.start_lsn() + LONG_HEADER_SIZE as u64);
    assert_eq!(records[1].prev, first);
    assert_eq!(records[0].blocks[0].locator, loc(16384));
    assert_eq!(records[0].blocks[0].block, 0);
    assert_eq!(records[0].main_data(), &[0, 0, 0]);
    assert_eq!(
        records[0].block_data(&records[0].blocks[0]),
        &[1, 2, 3, 4, 5, 6]
    );
    let end_of_wal = reader.end().unwrap();
    assert_eq!(end_of_wal.reason, EndReason::Zeros);
    assert_eq!(end_of_wal.lsn, max_align(end));

    let s = summary(&seg, &ctx);
    assert_eq!(s.records, 3);
    assert_eq!(s.first_record_lsn, Some(first));
    assert_eq!(s.last_record_lsn, Some(third));
    assert!(!s.continued_from_previous);
    assert_eq!(s.system_identifier, SYSID);
    assert_eq!(s.rmgrs.len(), 1);
    assert_eq!(s.rmgrs[0].name, "Heap");
    assert_eq!(s.rmgrs[0].records, 3);
    let names: Vec<_> = s.types.iter().map(|t| t.name.clone().unwrap()).collect();
    assert_eq!(names, vec!["Heap/INSERT", "Heap/INSERT+INIT"]);
    assert_eq!(s.block_references, 3);
    assert_eq!(s.relations.len(), 2);
    assert_eq!(s.relations[0].ranges, vec![(0, 2)]);
    assert_eq!(s.relations[0].blocks, 2);
    assert_eq!(s.relations[1].locator.rel, 16385);
}

#[test]
fn records_span_pages_including_a_split_header() {
    let ctx = context(15);
    let mut b = Builder::new(ctx);
    let big = b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&vec![0x5A; 20_000]));
    // A record whose 24-byte header starts 16 bytes before a page end.
    b.pad_to_page_offset(BLCKSZ - 16);
    let split = b.record(RM_HEAP_ID, 0x00, 9, heap_insert(1, 7));
    // A record ending exactly at a page end, then one right after the next page header.
    b.pad_to_page_offset(BLCKSZ - 48);
    let exact = b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&[7u8; 22]));
    assert_eq!(b.pos % BLCKSZ, 0);
    let after = b.record(RM_HEAP_ID, 0x00, 9, heap_insert(1, 8));
    let seg = b.finish();

    let records: Vec<_> = SegmentReader::new(&seg, &ctx).unwrap().collect();
    let lsns: Vec<_> = records.iter().map(|r| r.lsn).collect();
    assert!(lsns.contains(&big) && lsns.contains(&split) && lsns.contains(&exact));
    assert_eq!(*lsns.last().unwrap(), after);
    assert_eq!(after % BLCKSZ as u64, SHORT_HEADER_SIZE as u64);
    let big = records.iter().find(|r| r.lsn == big).unwrap();
    assert_eq!(big.main_data(), &vec![0x5A; 20_000][..]);
    assert!(matches!(big.bytes, std::borrow::Cow::Owned(_)));
    let split = records.iter().find(|r| r.lsn == split).unwrap();
    assert_eq!(split.blocks[0].block, 7);
    assert_eq!(split.tot_len as usize, split.bytes.len());
}

#[test]
fn a_record_continuing_into_the_next_segment_ends_the_segment() {
    let ctx = context(17);
    let mut b = Builder::new(ctx);
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    b.pad_to_page_offset(4096);
    // Fill to near the end of the segment, then a record that runs past it.
    while b.pos < MIB as usize - 3 * BLCKSZ {
        b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&vec![1; 5000]));
    }
    let last_complete = b.prev;
    let crossing = b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&vec![2; 40_000]));
    let seg = b.finish();

    let s = summary(&seg, &ctx);
    assert_eq!(s.last_record_lsn, Some(last_complete));
    assert_eq!(s.end.reason, EndReason::ContinuesIntoNext);
    assert_eq!(s.end.continued_record, Some(crossing));
    assert_eq!(s.end.lsn, ctx.start_lsn() + u64::from(MIB));
    assert!(s.end.reason.is_complete());
}

#[test]
fn the_leading_continuation_is_skipped() {
    let ctx = context(16);
    // 20000 bytes of a previous record: the rest of page 0, all of page 1, part of page 2.
    let mut b = Builder::continuing(ctx, 20_000);
    let first = b.record(RM_HEAP_ID, 0x00, 3, heap_insert(2, 0));
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert!(s.continued_from_previous);
    assert_eq!(s.records, 1);
    assert_eq!(s.first_record_lsn, Some(first));
    assert_eq!(first / BLCKSZ as u64, ctx.start_lsn() / BLCKSZ as u64 + 2);

    // A continuation that ends exactly at a page boundary: the next page starts a record.
    let room = BLCKSZ - LONG_HEADER_SIZE;
    let mut b = Builder::continuing(ctx, room);
    let first = b.record(RM_HEAP_ID, 0x00, 3, heap_insert(2, 0));
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert_eq!(s.first_record_lsn, Some(first));
    assert_eq!(first, ctx.start_lsn() + (BLCKSZ + SHORT_HEADER_SIZE) as u64);
}

#[test]
fn a_segment_inside_one_record_has_no_records() {
    let ctx = context(16);
    let b = Builder::continuing(ctx, 3 << 20);
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert!(s.continued_from_previous);
    assert_eq!(s.records, 0);
    assert_eq!(s.end.reason, EndReason::ContinuesIntoNext);
    assert_eq!(s.end.continued_record, None);
    assert_eq!(s.end.lsn, ctx.start_lsn() + u64::from(MIB));

    // A record that ends exactly at the end of the segment.
    let b = Builder::continuing(
        ctx,
        MIB as usize - LONG_HEADER_SIZE - 127 * SHORT_HEADER_SIZE,
    );
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert_eq!(s.records, 0);
    assert_eq!(s.end.reason, EndReason::SegmentEnd);
}

#[test]
fn a_switch_ends_the_segment_early() {
    let ctx = context(15);
    let mut b = Builder::new(ctx);
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    let switch = b.record(RM_XLOG_ID, XLOG_SWITCH, 0, Body::new());
    let switch_end = max_align(b.lsn());
    // Garbage after the switch is never read.
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 1));
    let seg = b.finish();

    let mut reader = SegmentReader::new(&seg, &ctx).unwrap();
    let records: Vec<_> = reader.by_ref().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].next_lsn, ctx.start_lsn() + u64::from(MIB));
    let s = summary(&seg, &ctx);
    assert_eq!(s.switch_lsn, Some(switch));
    assert_eq!(s.end.reason, EndReason::Switch);
    assert_eq!(s.end.lsn, switch_end);
    assert_eq!(s.records, 2);
}

#[test]
fn bad_crc_bad_prev_link_and_bad_pages_end_valid_wal() {
    let ctx = context(16);
    let mut b = Builder::new(ctx);
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    let second = b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 1));
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 2));
    let clean = b.finish();
    let at = (second - ctx.start_lsn()) as usize;

    // A flipped payload byte: CRC.
    let mut seg = clean.clone();
    seg[at + 30] ^= 0x40;
    let s = summary(&seg, &ctx);
    assert_eq!(
        (s.records, s.end.reason, s.end.lsn),
        (1, EndReason::Crc, second)
    );

    // A prev-link that does not point at the previous record.
    let mut seg = clean.clone();
    let mut rec = seg[at..at + 24 + heap_insert(1, 1).bytes().len()].to_vec();
    rec[8..16].copy_from_slice(&(second - 8).to_le_bytes());
    let body = rec[24..].to_vec();
    let fixed = record_bytes(RM_HEAP_ID, 0, 1, second - 8, &body);
    seg[at..at + fixed.len()].copy_from_slice(&fixed);
    let s = summary(&seg, &ctx);
    assert_eq!(
        (s.records, s.end.reason, s.end.lsn),
        (1, EndReason::InvalidRecord, second)
    );
    assert!(s.end.detail.unwrap().contains("prev-link"));

    // An invalid rmgr id.
    let mut seg = clean.clone();
    let fixed = record_bytes(99, 0, 1, second - 8, &body);
    seg[at..at + fixed.len()].copy_from_slice(&fixed);
    let s = summary(&seg, &ctx);
    assert_eq!(s.end.reason, EndReason::InvalidRecord);

    // A second page from another segment (recycled): the records before it stand.
    let mut b = Builder::new(ctx);
    while b.pos < BLCKSZ + 100 {
        b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    }
    let mut seg = b.finish();
    seg[BLCKSZ + 8..BLCKSZ + 16].copy_from_slice(&0xDEAD_0000u64.to_le_bytes());
    let s = summary(&seg, &ctx);
    assert!(s.records > 10);
    assert!(matches!(
        s.end.reason,
        EndReason::InvalidPage | EndReason::InvalidRecord
    ));
    assert!(s.end.lsn <= ctx.start_lsn() + BLCKSZ as u64);
}

#[test]
fn timelines_may_rise_within_a_segment_but_never_fall() {
    let mut ctx = context(16);
    ctx.timeline = 2;
    let mut b = Builder::new(ctx);
    b.timeline = 1;
    b.page_header(0, 0, 0);
    while b.pos < BLCKSZ - 100 {
        b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    }
    b.timeline = 2;
    while b.pos < 2 * BLCKSZ + 100 {
        b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    }
    b.timeline = 1;
    while b.pos < 3 * BLCKSZ + 100 {
        b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    }
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert_eq!(s.first_page_timeline, 1);
    assert_eq!(s.end.reason, EndReason::InvalidPage);
    assert!(s
        .end
        .detail
        .as_deref()
        .unwrap()
        .contains("timeline 1 after"));
    assert!(s.end.lsn >= ctx.start_lsn() + 2 * BLCKSZ as u64);
}

fn first_page_error(seg: &[u8], ctx: &SegmentContext) -> CoreError {
    let err = summarize_segment(seg, ctx).unwrap_err();
    assert_eq!(err.code, ErrorCode::WalInvalid, "{err}");
    err
}

#[test]
fn a_first_page_that_cannot_begin_the_segment_is_an_error() {
    let ctx = context(16);
    let mut b = Builder::new(ctx);
    b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    let seg = b.finish();
    assert!(summarize_segment(&seg, &ctx).is_ok());

    let mut other = ctx;
    other.pg_major = 15;
    assert!(first_page_error(&seg, &other)
        .message
        .contains("PostgreSQL 16's"));
    other = ctx;
    other.system_identifier = Some(1);
    assert!(first_page_error(&seg, &other).message.contains("system"));
    other.system_identifier = None;
    assert!(summarize_segment(&seg, &other).is_ok());
    other = ctx;
    other.segment_no += 1;
    assert!(first_page_error(&seg, &other)
        .message
        .contains("says it is at"));
    other = ctx;
    other.segment_size = 2 * MIB;
    first_page_error(&seg, &other);
    let mut doubled = seg.clone();
    doubled.extend_from_slice(&seg);
    first_page_error(&doubled, &other);
    first_page_error(&seg[..seg.len() - 1], &ctx);
    first_page_error(&[], &ctx);

    let mut bad = seg.clone();
    bad[2] |= 0x10; // unknown info bit
    first_page_error(&bad, &ctx);
    let mut bad = seg.clone();
    bad[2] &= !(XLP_LONG_HEADER as u8);
    first_page_error(&bad, &ctx);
    let mut bad = seg.clone();
    bad[4] = 2; // timeline 2 in a timeline-1 file
    first_page_error(&bad, &ctx);
    let mut bad = seg.clone();
    bad[36..40].copy_from_slice(&4096u32.to_le_bytes());
    first_page_error(&bad, &ctx);
    first_page_error(&vec![0u8; MIB as usize], &ctx);

    other = ctx;
    other.pg_major = 13;
    assert_eq!(
        summarize_segment(&seg, &other).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    other = ctx;
    other.segment_no = u64::MAX / u64::from(MIB);
    assert_eq!(
        summarize_segment(&seg, &other).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    other.segment_no -= 1;
    first_page_error(&seg, &other);
    other = ctx;
    other.segment_size = 3 * MIB;
    assert_eq!(
        summarize_segment(&seg, &other).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}

fn commit_body(time: i64, xinfo: u32, parts: &[&[u8]]) -> Body {
    let mut main = time.to_le_bytes().to_vec();
    if xinfo != 0 {
        main.extend_from_slice(&xinfo.to_le_bytes());
    }
    for part in parts {
        main.extend_from_slice(part);
    }
    Body::new().main(&main)
}

fn counted(items: &[&[u8]]) -> Vec<u8> {
    let mut out = (items.len() as i32).to_le_bytes().to_vec();
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

fn locator_bytes(l: RelFileLocator) -> Vec<u8> {
    [l.spc, l.db, l.rel]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn transaction_ends_carry_xid_time_and_dropped_relations() {
    for major in [14, 15, 16, 17, 18] {
        let ctx = context(major);
        let mut b = Builder::new(ctx);
        // 2024-01-02 03:04:05.678901 UTC in PostgreSQL's epoch.
        let t: i64 = 757_479_845_678_901;
        let plain = b.record(RM_XACT_ID, XLOG_XACT_COMMIT, 740, commit_body(t, 0, &[]));
        let dbinfo = [5u32.to_le_bytes(), 1663u32.to_le_bytes()].concat();
        let subxacts = counted(&[&741u32.to_le_bytes(), &742u32.to_le_bytes()]);
        let rels = counted(&[&locator_bytes(loc(16400)), &locator_bytes(loc(16401))]);
        let stats_item = vec![0u8; if major >= 18 { 16 } else { 12 }];
        let stats = counted(&[&stats_item]);
        let invals = counted(&[&[0u8; 16], &[1u8; 16]]);
        let mut xinfo = XACT_XINFO_HAS_DBINFO
            | XACT_XINFO_HAS_SUBXACTS
            | XACT_XINFO_HAS_RELFILELOCATORS
            | XACT_XINFO_HAS_INVALS;
        let mut parts: Vec<&[u8]> = vec![&dbinfo, &subxacts, &rels];
        if major >= 15 {
            xinfo |= XACT_XINFO_HAS_DROPPED_STATS;
            parts.push(&stats);
        }
        parts.push(&invals);
        let dropping = b.record(
            RM_XACT_ID,
            XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO,
            743,
            commit_body(t + 1, xinfo, &parts),
        );
        let twophase = 900u32.to_le_bytes();
        let gid = b"my-gid\0";
        let prepared = b.record(
            RM_XACT_ID,
            XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO,
            0,
            commit_body(
                t + 2,
                XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_GID,
                &[&twophase, gid],
            ),
        );
        let abort_rels = counted(&[&locator_bytes(loc(16500))]);
        let abort = b.record(
            RM_XACT_ID,
            XLOG_XACT_ABORT | XLOG_XACT_HAS_INFO,
            744,
            commit_body(t + 3, XACT_XINFO_HAS_RELFILELOCATORS, &[&abort_rels]),
        );
        let mut prepare = Vec::new();
        prepare.extend_from_slice(&0x57F9_4534u32.to_le_bytes());
        prepare.extend_from_slice(&100u32.to_le_bytes());
        prepare.extend_from_slice(&901u32.to_le_bytes());
        prepare.extend_from_slice(&5u32.to_le_bytes());
        prepare.extend_from_slice(&(t + 4).to_le_bytes());
        prepare.extend_from_slice(&[0u8; 40]);
        let prep = b.record(
            RM_XACT_ID,
            XLOG_XACT_PREPARE,
            901,
            Body::new().main(&prepare),
        );
        let seg = b.finish();

        let s = summary(&seg, &ctx);
        assert!(s.undecoded.is_empty(), "{major}: {:?}", s.undecoded);
        let got: Vec<_> = s
            .transactions
            .iter()
            .map(|x| (x.lsn, x.kind, x.xid, x.time_us))
            .collect();
        let unix = |us: i64| us + POSTGRES_EPOCH_UNIX_MICROS;
        assert_eq!(
            got,
            vec![
                (plain, XactKind::Commit, 740, unix(t)),
                (dropping, XactKind::Commit, 743, unix(t + 1)),
                (prepared, XactKind::CommitPrepared, 900, unix(t + 2)),
                (abort, XactKind::Abort, 744, unix(t + 3)),
                (prep, XactKind::Prepare, 901, unix(t + 4)),
            ],
            "PostgreSQL {major}"
        );
        assert_eq!(unix(t), 1_704_164_645_678_901);
        let dropped: Vec<_> = s
            .dropped_relations
            .iter()
            .map(|d| (d.lsn, d.xid, d.kind, d.locator.rel))
            .collect();
        assert_eq!(
            dropped,
            vec![
                (dropping, 743, XactKind::Commit, 16400),
                (dropping, 743, XactKind::Commit, 16401),
                (abort, 744, XactKind::Abort, 16500),
            ]
        );
    }
}

#[test]
fn restore_points_checkpoints_and_overwrites_decode() {
    let ctx = context(17);
    let mut b = Builder::new(ctx);
    let mut rp = 757_479_845_000_000i64.to_le_bytes().to_vec();
    let mut name = [0u8; 64];
    name[..9].copy_from_slice(b"before-it");
    rp.extend_from_slice(&name);
    let point = b.record(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, Body::new().main(&rp));

    let mut checkpoint = vec![0u8; 88];
    checkpoint[0..8].copy_from_slice(&0x0000_0001_0300_0028u64.to_le_bytes());
    checkpoint[8..12].copy_from_slice(&3u32.to_le_bytes());
    checkpoint[12..16].copy_from_slice(&2u32.to_le_bytes());
    checkpoint[64..72].copy_from_slice(&1_704_164_645i64.to_le_bytes());
    let online = b.record(
        RM_XLOG_ID,
        XLOG_CHECKPOINT_ONLINE,
        0,
        Body::new().main(&checkpoint),
    );
    let shutdown = b.record(
        RM_XLOG_ID,
        XLOG_CHECKPOINT_SHUTDOWN,
        0,
        Body::new().main(&checkpoint),
    );
    let mut overwrite = 0x0000_0001_0200_1000u64.to_le_bytes().to_vec();
    overwrite.extend_from_slice(&5i64.to_le_bytes());
    let ow = b.record(
        RM_XLOG_ID,
        XLOG_OVERWRITE_CONTRECORD,
        0,
        Body::new().main(&overwrite),
    );
    let seg = b.finish();

    let s = summary(&seg, &ctx);
    assert_eq!(s.restore_points.len(), 1);
    assert_eq!(s.restore_points[0].lsn, point);
    assert_eq!(s.restore_points[0].name, "before-it");
    assert_eq!(s.restore_points[0].time_us, 1_704_164_645_000_000);
    let cps: Vec<_> = s
        .checkpoints
        .iter()
        .map(|c| {
            (
                c.lsn,
                c.redo,
                c.timeline,
                c.prev_timeline,
                c.online,
                c.time_us,
            )
        })
        .collect();
    assert_eq!(
        cps,
        vec![
            (online, 0x1_0300_0028, 3, 2, true, 1_704_164_645_000_000),
            (shutdown, 0x1_0300_0028, 3, 2, false, 1_704_164_645_000_000),
        ]
    );
    assert_eq!(s.overwritten_contrecords.len(), 1);
    assert_eq!(s.overwritten_contrecords[0].lsn, ow);
    assert_eq!(s.overwritten_contrecords[0].overwritten_lsn, 0x1_0200_1000);
}

#[test]
fn storage_and_database_records_decode_per_version() {
    for major in [14, 15, 18] {
        let ctx = context(major);
        let mut b = Builder::new(ctx);
        let mut create = locator_bytes(loc(16600));
        create.extend_from_slice(&0u32.to_le_bytes());
        let c = b.record(
            RM_SMGR_ID,
            XLOG_SMGR_CREATE | XLR_SPECIAL_REL_UPDATE,
            0,
            Body::new().main(&create),
        );
        let mut truncate = 12u32.to_le_bytes().to_vec();
        truncate.extend_from_slice(&locator_bytes(loc(16600)));
        truncate.extend_from_slice(&(SMGR_TRUNCATE_HEAP | SMGR_TRUNCATE_FSM).to_le_bytes());
        let t = b.record(
            RM_SMGR_ID,
            XLOG_SMGR_TRUNCATE | XLR_SPECIAL_REL_UPDATE,
            0,
            Body::new().main(&truncate),
        );
        let (create_copy, drop) = if major == 14 {
            (0x00, 0x10)
        } else {
            (0x00, 0x20)
        };
        let copy: Vec<u8> = [16700u32, 1663, 1, 1663]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dc = b.record(RM_DBASE_ID, create_copy, 0, Body::new().main(&copy));
        let wal_log = if major >= 15 {
            let rec: Vec<u8> = [16701u32, 1663]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Some(b.record(RM_DBASE_ID, 0x10, 0, Body::new().main(&rec)))
        } else {
            None
        };
        let dropped: Vec<u8> = [16700u32, 2, 1663, 16800]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dd = b.record(RM_DBASE_ID, drop, 0, Body::new().main(&dropped));
        // A special update this summary does not decode.
        b.record(
            RM_TBLSPC_ID,
            XLR_SPECIAL_REL_UPDATE,
            0,
            Body::new().main(&[1, 2, 3, 4]),
        );
        let special = b.prev;
        let seg = b.finish();

        let s = summary(&seg, &ctx);
        assert!(s.undecoded.is_empty());
        assert_eq!(
            s.creations,
            vec![SmgrCreate {
                lsn: c,
                locator: loc(16600),
                fork: 0
            }]
        );
        assert_eq!(
            s.truncations,
            vec![SmgrTruncate {
                lsn: t,
                locator: loc(16600),
                blocks: 12,
                flags: 5
            }]
        );
        let mut creates = vec![DatabaseCreate {
            lsn: dc,
            db: 16700,
            tablespace: 1663,
            strategy: DatabaseCreateStrategy::FileCopy,
            source: Some((1, 1663)),
        }];
        if let Some(lsn) = wal_log {
            creates.push(DatabaseCreate {
                lsn,
                db: 16701,
                tablespace: 1663,
                strategy: DatabaseCreateStrategy::WalLog,
                source: None,
            });
        }
        assert_eq!(s.database_creates, creates, "PostgreSQL {major}");
        assert_eq!(
            s.database_drops,
            vec![DatabaseDrop {
                lsn: dd,
                db: 16700,
                tablespaces: vec![1663, 16800]
            }]
        );
        assert_eq!(s.unhandled_special_updates, vec![special]);
        let names: Vec<_> = s.types.iter().filter_map(|t| t.name.clone()).collect();
        if major == 14 {
            assert!(names.contains(&"Database/CREATE".to_owned()));
            assert!(names.contains(&"Database/DROP".to_owned()));
        } else {
            assert!(names.contains(&"Database/CREATE_FILE_COPY".to_owned()));
            assert!(names.contains(&"Database/CREATE_WAL_LOG".to_owned()));
        }
    }
}

#[test]
fn short_bodies_of_decoded_types_are_reported_not_fatal() {
    let ctx = context(16);
    let mut b = Builder::new(ctx);
    let bad = b.record(
        RM_XACT_ID,
        XLOG_XACT_COMMIT,
        5,
        Body::new().main(&[1, 2, 3]),
    );
    let after = b.record(RM_HEAP_ID, 0x00, 1, heap_insert(1, 0));
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert_eq!(s.records, 2);
    assert_eq!(s.last_record_lsn, Some(after));
    assert_eq!(s.undecoded.len(), 1);
    assert_eq!(s.undecoded[0].0, bad);
}

#[test]
fn block_references_decode_with_images_forks_and_same_rel() {
    for major in [14, 15] {
        let ctx = context(major);
        let mut b = Builder::new(ctx);
        let (apply, compressed) = if major == 14 {
            (BKPIMAGE_APPLY_14, BKPIMAGE_IS_COMPRESSED_14)
        } else {
            (BKPIMAGE_APPLY, BKPIMAGE_COMPRESS_LZ4)
        };
        let body = Body::new()
            .toplevel(77)
            .origin(3)
            .block(
                0,
                0,
                Some(loc(10)),
                5,
                &[9, 9],
                Some(Image {
                    bytes: vec![0x11; BLCKSZ - 100],
                    hole_offset: 40,
                    info: BKPIMAGE_HAS_HOLE | apply,
                    hole_length: None,
                }),
            )
            .block(1, 2, None, 0, &[], None)
            .block(
                3,
                1 | BKPBLOCK_WILL_INIT,
                Some(loc(11)),
                4,
                &[],
                Some(Image {
                    bytes: vec![0x22; 300],
                    hole_offset: 64,
                    info: BKPIMAGE_HAS_HOLE | compressed,
                    hole_length: Some(7000),
                }),
            )
            .block(4, 0, Some(loc(10)), 6, &[1], None)
            .main(&[1, 2, 3, 4]);
        let lsn = b.record(RM_HEAP2_ID, 0x50, 78, body);
        // More blocks of relation 10 to exercise range compaction.
        for blk in [7u32, 9, 8, 100, 5] {
            b.record(RM_HEAP_ID, 0, 1, heap_insert(10, blk));
        }
        let seg = b.finish();

        let mut reader = SegmentReader::new(&seg, &ctx).unwrap();
        let r = reader.next().unwrap();
        assert_eq!(r.lsn, lsn);
        assert_eq!(r.toplevel_xid, Some(77));
        assert_eq!(r.origin, Some(3));
        assert_eq!(r.main_data(), &[1, 2, 3, 4]);
        let ids: Vec<_> = r.blocks.iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![0, 1, 3, 4]);
        let b0 = &r.blocks[0];
        let img = b0.image.as_ref().unwrap();
        assert_eq!(
            (img.length, img.hole_offset, img.hole_length),
            (8092, 40, 100)
        );
        assert!(img.apply);
        assert_eq!(img.compression, ImageCompression::None);
        assert_eq!(r.block_data(b0), &[9, 9]);
        assert_eq!(r.block_image(img), &vec![0x11; 8092][..]);
        assert_eq!((r.blocks[1].locator, r.blocks[1].fork), (loc(10), 2));
        let b3 = &r.blocks[2];
        assert!(b3.will_init());
        assert_eq!(b3.fork, 1);
        let img = b3.image.as_ref().unwrap();
        assert_eq!((img.length, img.hole_length), (300, 7000));
        assert!(!img.apply);
        let expected = if major == 14 {
            ImageCompression::Pglz
        } else {
            ImageCompression::Lz4
        };
        assert_eq!(img.compression, expected);
        assert_eq!(r.fpi_len(), 8092 + 300);

        let s = summary(&seg, &ctx);
        assert_eq!(s.full_page_images, 2);
        let rel10: Vec<_> = s
            .relations
            .iter()
            .filter(|r| r.locator == loc(10))
            .map(|r| (r.fork, r.ranges.clone(), r.blocks))
            .collect();
        assert_eq!(
            rel10,
            vec![(0, vec![(5, 10), (100, 101)], 6), (2, vec![(0, 1)], 1)]
        );
        let heap2 = s.rmgrs.iter().find(|r| r.name == "Heap2").unwrap();
        assert_eq!((heap2.fpi, heap2.fpi_bytes), (2, 8392));
    }
}

#[test]
fn malformed_block_headers_end_valid_wal() {
    let ctx = context(16);
    let cases: Vec<Vec<u8>> = vec![
        // Out-of-order block ids.
        Body::new()
            .block(2, 0, Some(loc(1)), 0, &[1], None)
            .block(1, 0, Some(loc(1)), 1, &[1], None)
            .bytes(),
        // SAME_REL with no previous relation.
        Body::new().block(0, 0, None, 0, &[1], None).bytes(),
        // An invalid block id.
        vec![40, 0, 0, 0],
        // HAS_DATA with no data.
        vec![
            0,
            BKPBLOCK_HAS_DATA,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            0,
            0,
            0,
            3,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ],
        // An uncompressed image without a hole shorter than a page.
        Body::new()
            .block(
                0,
                0,
                Some(loc(1)),
                0,
                &[],
                Some(Image {
                    bytes: vec![0; 100],
                    hole_offset: 0,
                    info: BKPIMAGE_APPLY,
                    hole_length: None,
                }),
            )
            .bytes(),
        // Main data longer than the record.
        vec![BLOCK_ID_DATA_SHORT, 200, 1, 2, 3],
    ];
    for (i, body) in cases.into_iter().enumerate() {
        let mut b = Builder::new(ctx);
        b.record(RM_HEAP_ID, 0, 1, heap_insert(1, 0));
        let rec = record_bytes(RM_HEAP_ID, 0, 1, b.prev, &body);
        let bad = b.raw(&rec);
        let seg = b.finish();
        let s = summary(&seg, &ctx);
        assert_eq!(s.records, 1, "case {i}");
        assert_eq!(s.end.reason, EndReason::InvalidRecord, "case {i}");
        assert_eq!(s.end.lsn, bad, "case {i}");
    }
}

#[test]
fn an_overwritten_contrecord_is_skipped() {
    let ctx = context(15);
    let mut b = Builder::new(ctx);
    b.record(RM_HEAP_ID, 0, 1, heap_insert(1, 0));
    let before = b.prev;
    // A record that should continue onto page 1, but page 1 was rewritten after a crash.
    let aborted_rec = record_bytes(
        RM_XLOG_ID,
        0x20,
        0,
        before,
        &Body::new().main(&[3; 9000]).bytes(),
    );
    let aborted = b.raw(&aborted_rec);
    b.pos = BLCKSZ;
    b.page_header(BLCKSZ, XLP_FIRST_IS_OVERWRITE_CONTRECORD, 0);
    b.pos = BLCKSZ + SHORT_HEADER_SIZE;
    b.prev = before;
    let mut overwrite = aborted.to_le_bytes().to_vec();
    overwrite.extend_from_slice(&1i64.to_le_bytes());
    let rec = record_bytes(
        RM_XLOG_ID,
        XLOG_OVERWRITE_CONTRECORD,
        0,
        before,
        &Body::new().main(&overwrite).bytes(),
    );
    let ow = b.raw(&rec);
    let after = b.record(RM_HEAP_ID, 0, 1, heap_insert(1, 1));
    let seg = b.finish();

    let s = summary(&seg, &ctx);
    assert_eq!(s.aborted_records, vec![aborted]);
    assert_eq!(s.records, 3);
    assert_eq!(s.last_record_lsn, Some(after));
    assert_eq!(s.overwritten_contrecords.len(), 1);
    assert_eq!(s.overwritten_contrecords[0].lsn, ow);
    assert_eq!(s.overwritten_contrecords[0].overwritten_lsn, aborted);

    // A first page that abandons the previous segment's last record.
    let mut b = Builder::new(ctx);
    b.page_header(0, XLP_FIRST_IS_OVERWRITE_CONTRECORD, 0);
    let first = b.record(
        RM_XLOG_ID,
        XLOG_OVERWRITE_CONTRECORD,
        0,
        Body::new().main(&overwrite),
    );
    let seg = b.finish();
    let s = summary(&seg, &ctx);
    assert_eq!(s.first_record_lsn, Some(first));
    assert!(!s.continued_from_previous);
}

#[test]
fn lsns_print_like_postgresql() {
    assert_eq!(format_lsn(0x0000_0001_0200_00A8), "1/20000A8");
    assert_eq!(format_lsn(0x16B_3D80), "0/16B3D80");
    assert_eq!(major_of_magic(0xD118), Some(18));
    assert_eq!(major_of_magic(0xD10C), None);
}

/// A realistic segment: many records of varied sizes, some spanning pages.
fn busy_segment(ctx: SegmentContext, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new(ctx);
    while b.pos < ctx.segment_size as usize - 40_000 {
        match rng.below(6) {
            0 => {
                let len = rng.below(30_000);
                b.record(
                    RM_XLOG_ID,
                    0x20,
                    0,
                    Body::new().main(&vec![rng.below(256) as u8; len]),
                );
            }
            1 => {
                let body = commit_body(rng.next() as i64 >> 8, 0, &[]);
                b.record(RM_XACT_ID, XLOG_XACT_COMMIT, rng.below(1000) as u32, body);
            }
            _ => {
                let rel = 16384 + rng.below(4) as u32;
                let blk = rng.below(2000) as u32;
                b.record(RM_HEAP_ID, 0, 1, heap_insert(rel, blk));
            }
        }
    }
    b.finish()
}

#[test]
fn garbage_never_panics() {
    let ctx = context(16);
    let mut rng = Rng::new(2024);
    let clean = busy_segment(ctx, 1);
    let reference = summary(&clean, &ctx);
    assert!(reference.records > 200, "{}", reference.records);
    assert_eq!(reference.end.reason, EndReason::Zeros);

    let check = |bytes: &[u8], ctx: &SegmentContext| match summarize_segment(bytes, ctx) {
        Ok(s) => {
            assert!(s.end.lsn >= ctx.start_lsn());
            assert!(s.end.lsn <= ctx.start_lsn() + u64::from(ctx.segment_size));
        }
        Err(e) => assert!(
            matches!(e.code, ErrorCode::WalInvalid | ErrorCode::InvalidArgument),
            "{e}"
        ),
    };

    // Random bytes, with and without a valid first page header.
    for i in 0..40 {
        let mut bytes = vec![0u8; MIB as usize];
        rng.fill(&mut bytes);
        check(&bytes, &ctx);
        if i % 2 == 0 {
            bytes[..LONG_HEADER_SIZE].copy_from_slice(&clean[..LONG_HEADER_SIZE]);
            let s = summarize_segment(&bytes, &ctx).unwrap();
            assert!(!s.end.reason.is_complete() || s.records == 0);
        }
    }
    // Random page headers that pass the checks, over random record bytes.
    for _ in 0..20 {
        let mut bytes = clean.clone();
        for page in 0..(MIB as usize / BLCKSZ) {
            let start = page * BLCKSZ
                + if page == 0 {
                    LONG_HEADER_SIZE
                } else {
                    SHORT_HEADER_SIZE
                };
            rng.fill(&mut bytes[start..(page + 1) * BLCKSZ]);
        }
        check(&bytes, &ctx);
    }
    // Bit flips anywhere in a valid segment: valid WAL ends at or before the damage.
    for _ in 0..300 {
        let mut bytes = clean.clone();
        let at = rng.below(bytes.len());
        bytes[at] ^= 1 << rng.below(8);
        match summarize_segment(&bytes, &ctx) {
            Ok(s) => {
                assert!(s.records <= reference.records);
                assert!(s.end.lsn <= reference.end.lsn.max(ctx.start_lsn() + at as u64 + 1));
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::WalInvalid);
                assert!(at < LONG_HEADER_SIZE, "flip at {at} made an error: {e}");
            }
        }
    }
    // Flips of record length fields specifically (the riskiest for reassembly).
    let mut reader = SegmentReader::new(&clean, &ctx).unwrap();
    let lsns: Vec<u64> = reader.by_ref().map(|r| r.lsn).collect();
    for (i, lsn) in lsns.iter().enumerate().step_by(7) {
        let at = (lsn - ctx.start_lsn()) as usize;
        let mut bytes = clean.clone();
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let garbage = [0u32, 1, 23, 25, len + 8, len * 3, 0x7FFF_FFFF, u32::MAX][i % 8];
        bytes[at..at + 4].copy_from_slice(&garbage.to_le_bytes());
        let s = summarize_segment(&bytes, &ctx).unwrap();
        assert_eq!(s.end.lsn, *lsn);
        assert!(!s.end.reason.is_complete());
    }
    // Truncated and extended buffers are errors.
    for len in [0, 1, 23, 39, 40, BLCKSZ, MIB as usize / 2, MIB as usize - 1] {
        check(&clean[..len], &ctx);
        assert!(summarize_segment(&clean[..len], &ctx).is_err());
    }
    // Every PostgreSQL version's parser on every other version's segment.
    for major in [14, 15, 16, 17, 18] {
        for other in [14, 15, 16, 17, 18] {
            let seg = busy_segment(context(other), major.into());
            check(&seg, &context(major));
            assert_eq!(
                summarize_segment(&seg, &context(major)).is_ok(),
                major == other
            );
        }
    }
}

#[test]
fn throughput_figure() {
    // A rough per-core figure for the report; never asserted (timing belongs in bench/).
    let ctx = SegmentContext {
        segment_size: 16 * MIB,
        ..context(16)
    };
    let seg = busy_segment(ctx, 9);
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < std::time::Duration::from_millis(300) {
        std::hint::black_box(summarize_segment(&seg, &ctx).unwrap());
        n += 1;
    }
    let mbps = (n * seg.len()) as f64 / start.elapsed().as_secs_f64() / 1e6;
    eprintln!("summarize_segment: {mbps:.0} MB/s on synthetic WAL ({n} passes)");
}

#[test]
fn a_record_crossing_segments_is_read_where_it_ends_given_the_previous_segment() {
    for major in [14, 16, 18] {
        let ctx = context(major);
        let mut b = Builder::segments(ctx, 4);
        b.record(RM_HEAP_ID, 0, 1, heap_insert(1, 0));
        // A commit with dropped relations that crosses from segment 0 into segment 1.
        b.pad_to_page_offset(BLCKSZ - 64);
        while b.pos < MIB as usize - 4 * BLCKSZ {
            b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&[0; 8000]));
        }
        // Start it 40 bytes before the end of the second-to-last page: it spans three pages.
        while b.pos / BLCKSZ != MIB as usize / BLCKSZ - 2 {
            b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&[0; 200]));
        }
        b.pad_to_page_offset(BLCKSZ - 40);
        let rels = counted(&[&locator_bytes(loc(16400))]);
        let body = commit_body(5, XACT_XINFO_HAS_RELFILELOCATORS, &[&rels]).block(
            0,
            0,
            Some(loc(77)),
            9,
            &[1; 9000],
            None,
        );
        let crossing = b.record(RM_XACT_ID, XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO, 900, body);
        assert!(crossing < b.start() + u64::from(MIB) && b.lsn() > b.start() + u64::from(MIB));
        let after = b.record(RM_HEAP_ID, 0, 1, heap_insert(2, 0));
        // A record longer than a segment, from segment 1 through segment 2 into segment 3.
        let giant = b.record(
            RM_LOGICALMSG_ID,
            0,
            0,
            Body::new().main(&vec![7; 2 * MIB as usize]),
        );
        let last = b.record(RM_HEAP_ID, 0, 1, heap_insert(3, 0));
        let (s0, c0) = b.segment(0);
        let (s1, c1) = b.segment(1);
        let (s2, c2) = b.segment(2);
        let (s3, c3) = b.segment(3);

        let first = summary(&s0, &c0);
        assert_eq!(first.end.reason, EndReason::ContinuesIntoNext);
        assert_eq!(first.end.continued_record, Some(crossing));
        assert!(first.relations.iter().all(|r| r.locator != loc(77)));

        // Alone, segment 1 skips the commit.
        let alone = summary(&s1, &c1);
        assert!(alone.continued_from_previous);
        assert_eq!(alone.leading_record_lsn, None);
        assert!(alone.leading_record_skipped.is_some());
        assert!(alone.transactions.is_empty());
        assert_eq!(alone.first_record_lsn, Some(after));

        // With the previous segment, or just its last pages, it reads it.
        for tail in [MIB as usize, 2 * BLCKSZ] {
            let s = summarize_segment_with_previous(&s1, &c1, &s0[s0.len() - tail..]).unwrap();
            assert_eq!(s.leading_record_lsn, Some(crossing), "{major} tail {tail}");
            assert_eq!(s.leading_record_skipped, None);
            assert_eq!(s.first_record_lsn, Some(crossing));
            assert_eq!(s.records, alone.records + 1);
            assert_eq!(s.transactions.len(), 1);
            assert_eq!(s.transactions[0].lsn, crossing);
            assert_eq!(s.transactions[0].xid, 900);
            assert_eq!(s.dropped_relations[0].locator, loc(16400));
            assert!(s
                .relations
                .iter()
                .any(|r| r.locator == loc(77) && r.ranges == [(9, 10)]));
            assert_eq!(s.end, alone.end);
            assert_eq!(s.end.continued_record, Some(giant));
        }
        // A tail too short to hold the record's start.
        let s = summarize_segment_with_previous(&s1, &c1, &s0[s0.len() - BLCKSZ..]).unwrap();
        assert_eq!(s.leading_record_lsn, None);
        assert!(s.leading_record_skipped.unwrap().contains("does not hold"));
        assert_eq!(s.records, alone.records);
        // Not the previous segment at all.
        let s = summarize_segment_with_previous(&s1, &c1, &s2).unwrap();
        assert_eq!(s.leading_record_lsn, None);
        assert!(s
            .leading_record_skipped
            .unwrap()
            .contains("does not precede"));
        // Damaged: the commit's CRC fails, so it is skipped, not wrongly read.
        let mut damaged = s0.clone();
        let at = (crossing - c0.start_lsn()) as usize + 30;
        damaged[at] ^= 0x08;
        let s = summarize_segment_with_previous(&s1, &c1, &damaged).unwrap();
        assert_eq!(s.leading_record_lsn, None);
        assert!(s.transactions.is_empty());

        // Segment 2 lies inside the giant record.
        let inside = summarize_segment_with_previous(&s2, &c2, &s1).unwrap();
        assert_eq!(inside.records, 0);
        assert!(inside
            .leading_record_skipped
            .unwrap()
            .contains("continues past this segment too"));
        assert_eq!(inside.end.reason, EndReason::ContinuesIntoNext);
        assert_eq!(inside.end.continued_record, Some(giant));
        // Segment 3 reads it given the two segments before; one is not enough.
        let one = summarize_segment_with_previous(&s3, &c3, &s2).unwrap();
        assert_eq!(one.leading_record_lsn, None);
        assert_eq!(one.first_record_lsn, Some(last));
        let both = [s1.clone(), s2.clone()].concat();
        let two = summarize_segment_with_previous(&s3, &c3, &both).unwrap();
        assert_eq!(two.leading_record_lsn, Some(giant));
        assert_eq!(two.records, one.records + 1);
        assert_eq!(
            two.rmgrs
                .iter()
                .find(|r| r.rmid == RM_LOGICALMSG_ID)
                .unwrap()
                .bytes,
            2 * u64::from(MIB) + 24 + 5
        );
        let mut reader = SegmentReader::with_previous(&s3, &c3, &both).unwrap();
        let giant_record = reader.next().unwrap();
        assert_eq!(giant_record.main_data().len(), 2 * MIB as usize);

        // Previous given to a segment that does not need it changes nothing.
        let plain = summarize_segment_with_previous(&s0, &c0, &[]).unwrap();
        assert_eq!(plain, first);
        // A tail that is not whole pages is an argument error.
        assert_eq!(
            summarize_segment_with_previous(&s1, &c1, &s0[1..])
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument
        );
    }
}

#[test]
fn garbage_before_a_segment_never_panics() {
    let ctx = context(16);
    let mut b = Builder::segments(ctx, 2);
    while b.pos < MIB as usize + 4 * BLCKSZ {
        b.record(RM_XLOG_ID, 0x20, 0, Body::new().main(&vec![3; 3000]));
        b.record(RM_HEAP_ID, 0, 1, heap_insert(1, 2));
    }
    let (s0, _) = b.segment(0);
    let (s1, c1) = b.segment(1);
    let reference = summarize_segment_with_previous(&s1, &c1, &s0).unwrap();
    assert!(reference.leading_record_lsn.is_some());
    let mut rng = Rng::new(77);
    for round in 0..200 {
        let mut previous = s0[s0.len() - 4 * BLCKSZ..].to_vec();
        if round % 4 == 0 {
            rng.fill(&mut previous);
        } else {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(previous.len());
                previous[at] ^= 1 << rng.below(8);
            }
        }
        let s = summarize_segment_with_previous(&s1, &c1, &previous).unwrap();
        match s.leading_record_lsn {
            Some(lsn) => {
                assert_eq!(Some(lsn), reference.leading_record_lsn);
                assert_eq!(s.records, reference.records);
            }
            None => assert_eq!(s.records, reference.records - 1),
        }
    }
}

#[test]
fn zero_tail_start_finds_where_trailing_zeros_begin_at_any_offset() {
    let size = MIB as usize;
    for end in [
        0,
        1,
        40,
        8191,
        8192,
        65535,
        65536,
        65537,
        3 * 65536 + 17,
        size - 1,
        size,
    ] {
        let mut segment = vec![0u8; size];
        for (i, byte) in segment[..end].iter_mut().enumerate() {
            *byte = (i % 251) as u8 + 1;
        }
        assert_eq!(zero_tail_start(&segment), end, "data up to {end}");
    }
    let mut segment = vec![0u8; size];
    segment[10] = 1;
    segment[size - 70_000] = 2;
    assert_eq!(
        zero_tail_start(&segment),
        size - 69_999,
        "zeros followed by data stay"
    );
}

/// Rows of a bulk copy: the same 120-byte row with its own key, one after another.
fn bulk_rows(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 120);
    let mut key = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&[b' '; 100]);
        bytes.extend_from_slice(&(key * 7).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        key += 1;
    }
    bytes.truncate(len);
    bytes
}

/// Prose: words of a few letters in random order, which zstd matches little and whose letters its
/// entropy coding shrinks.
fn prose(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(11);
    let mut bytes = Vec::with_capacity(len + 16);
    while bytes.len() < len {
        for _ in 0..3 + rng.below(6) {
            bytes.push(b'a' + rng.below(26) as u8);
        }
        bytes.push(b' ');
    }
    bytes.truncate(len);
    bytes
}

#[test]
fn bulk_rows_are_compressed_at_the_fast_level_and_prose_at_the_given_one() {
    let rows = bulk_rows(MIB as usize);
    assert_eq!(
        compression_level(&rows, 1).unwrap(),
        crate::frame::FAST_LEVEL
    );
    assert_eq!(compression_level(&prose(MIB as usize), 1).unwrap(), 1);
    // Too little to sample (a segment cut short by a switch): the given level.
    assert_eq!(compression_level(&rows[..40_000], 1).unwrap(), 1);
    let frame = crate::frame::compress(&rows, crate::frame::FAST_LEVEL).unwrap();
    assert_eq!(crate::frame::read_header(&frame).unwrap().level, -1);
    assert_eq!(crate::frame::decompress(&frame).unwrap(), rows);
}
