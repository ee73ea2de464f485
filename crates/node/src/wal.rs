//! WAL segments: one whole segment in, its summary out, parsed on the libuv pool.
//!
//! LSNs are bigints; times are microseconds since the Unix epoch (exact as numbers until the
//! year 2255); relations are `{ spcOid, dbOid, relNumber }` as pg_waldump's `rel spc/db/rel`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgforever_core::wal::{self, DatabaseCreateStrategy, RelFileLocator, SegmentContext};

use crate::error::{invalid_argument, to_napi};
use crate::page::lsn_arg;

#[napi(object)]
pub struct WalSegmentContext {
    /// `wal_segment_size` in bytes; the buffer must be exactly this long.
    pub segment_size: u32,
    /// 14..18: selects the page magic and record formats.
    pub pg_major: u32,
    /// Timeline of the file name.
    pub timeline: u32,
    /// Segment number of the file name (the segment starts at segmentNo * segmentSize).
    pub segment_no: BigInt,
    /// Checked against the long page header when given.
    pub system_identifier: Option<BigInt>,
}

#[napi(object)]
pub struct WalRmgrCount {
    pub rmid: u32,
    pub name: String,
    pub records: u32,
    pub bytes: i64,
    pub fpi: u32,
    pub fpi_bytes: i64,
}

#[napi(object)]
pub struct WalTypeCount {
    pub rmid: u32,
    /// `xl_info & 0xF0` (for transaction records `& 0x70`).
    pub info: u32,
    /// `Rmgr/TYPE` as pg_waldump names it, e.g. `Heap/INSERT`.
    pub name: Option<String>,
    pub records: u32,
}

#[napi(object)]
pub struct WalRelationBlocks {
    pub spc_oid: u32,
    pub db_oid: u32,
    pub rel_number: u32,
    /// 0 main, 1 fsm, 2 vm, 3 init.
    pub fork: u32,
    /// Pairs [first, end) of block ranges: sorted, disjoint.
    pub ranges: Uint32Array,
    /// Distinct blocks in `ranges`.
    pub blocks: u32,
}

#[napi(object)]
pub struct WalTransaction {
    pub lsn: BigInt,
    /// commit | abort | prepare | commit-prepared | abort-prepared
    pub kind: String,
    pub xid: u32,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
}

#[napi(object)]
pub struct WalRestorePoint {
    pub lsn: BigInt,
    pub name: String,
    pub time_us: i64,
}

#[napi(object)]
pub struct WalCheckpoint {
    pub lsn: BigInt,
    pub redo: BigInt,
    pub timeline: u32,
    pub prev_timeline: u32,
    pub online: bool,
    pub time_us: i64,
}

#[napi(object)]
pub struct WalRelationCreate {
    pub lsn: BigInt,
    pub spc_oid: u32,
    pub db_oid: u32,
    pub rel_number: u32,
    pub fork: u32,
}

#[napi(object)]
pub struct WalRelationTruncate {
    pub lsn: BigInt,
    pub spc_oid: u32,
    pub db_oid: u32,
    pub rel_number: u32,
    /// The relation's new length in blocks.
    pub blocks: u32,
    /// SMGR_TRUNCATE_HEAP 1 (main fork), _VM 2, _FSM 4.
    pub flags: u32,
}

#[napi(object)]
pub struct WalRelationDrop {
    pub lsn: BigInt,
    pub xid: u32,
    /// commit (dropped) | abort (created, then rolled back) | commit-prepared | abort-prepared
    pub kind: String,
    pub spc_oid: u32,
    pub db_oid: u32,
    pub rel_number: u32,
}

#[napi(object)]
pub struct WalDatabaseCreate {
    pub lsn: BigInt,
    pub db_oid: u32,
    pub spc_oid: u32,
    /// file-copy (no block references follow) | wal-log (every block follows in WAL)
    pub strategy: String,
    pub source_db_oid: Option<u32>,
    pub source_spc_oid: Option<u32>,
}

#[napi(object)]
pub struct WalDatabaseDrop {
    pub lsn: BigInt,
    pub db_oid: u32,
    pub spc_oids: Vec<u32>,
}

#[napi(object)]
pub struct WalOverwrittenContrecord {
    pub lsn: BigInt,
    pub overwritten_lsn: BigInt,
    pub time_us: i64,
}

#[napi(object)]
pub struct WalUndecoded {
    pub lsn: BigInt,
    pub detail: String,
}

#[napi(object)]
pub struct WalSegmentSummary {
    pub pg_major: u32,
    pub start_lsn: BigInt,
    pub segment_size: u32,
    pub first_page_timeline: u32,
    pub system_identifier: BigInt,
    /// The segment begins with the rest of a record that started before it.
    pub continued_from_previous: bool,
    /// That record, when it was read from `previous`: counted here, where it ends.
    pub leading_record_lsn: Option<BigInt>,
    /// Why it was skipped (no `previous`, or `previous` did not hold its start): its block
    /// references and transaction end are in no summary.
    pub leading_record_skipped: Option<String>,
    /// Records read whole (those that end in this segment, when the leading one was read).
    pub records: u32,
    pub first_record_lsn: Option<BigInt>,
    pub last_record_lsn: Option<BigInt>,
    pub end_lsn: BigInt,
    /// segment-end | continues | switch | zeros | invalid-page | invalid-record | crc
    pub end_reason: String,
    pub end_detail: Option<String>,
    pub continued_record_lsn: Option<BigInt>,
    pub switch_lsn: Option<BigInt>,
    pub rmgrs: Vec<WalRmgrCount>,
    pub types: Vec<WalTypeCount>,
    pub block_references: u32,
    pub full_page_images: u32,
    pub relations: Vec<WalRelationBlocks>,
    pub transactions: Vec<WalTransaction>,
    pub restore_points: Vec<WalRestorePoint>,
    pub checkpoints: Vec<WalCheckpoint>,
    pub creations: Vec<WalRelationCreate>,
    pub truncations: Vec<WalRelationTruncate>,
    pub dropped_relations: Vec<WalRelationDrop>,
    pub database_creates: Vec<WalDatabaseCreate>,
    pub database_drops: Vec<WalDatabaseDrop>,
    pub aborted_records: Vec<BigInt>,
    pub overwritten_contrecords: Vec<WalOverwrittenContrecord>,
    pub unhandled_special_updates: Vec<BigInt>,
    pub undecoded: Vec<WalUndecoded>,
}

fn lsn(value: u64) -> BigInt {
    BigInt::from(value)
}

/// Counts of records in one segment: at most a segment's bytes / 24, so they fit in u32.
fn count(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn convert(s: wal::SegmentSummary) -> WalSegmentSummary {
    let rel = |l: RelFileLocator| (l.spc, l.db, l.rel);
    WalSegmentSummary {
        pg_major: s.pg_major,
        start_lsn: lsn(s.start_lsn),
        segment_size: s.segment_size,
        first_page_timeline: s.first_page_timeline,
        system_identifier: BigInt::from(s.system_identifier),
        continued_from_previous: s.continued_from_previous,
        leading_record_lsn: s.leading_record_lsn.map(lsn),
        leading_record_skipped: s.leading_record_skipped,
        records: count(s.records),
        first_record_lsn: s.first_record_lsn.map(lsn),
        last_record_lsn: s.last_record_lsn.map(lsn),
        end_lsn: lsn(s.end.lsn),
        end_reason: s.end.reason.as_str().to_owned(),
        end_detail: s.end.detail,
        continued_record_lsn: s.end.continued_record.map(lsn),
        switch_lsn: s.switch_lsn.map(lsn),
        rmgrs: s
            .rmgrs
            .into_iter()
            .map(|r| WalRmgrCount {
                rmid: r.rmid.into(),
                name: r.name,
                records: count(r.records),
                bytes: bytes(r.bytes),
                fpi: count(r.fpi),
                fpi_bytes: bytes(r.fpi_bytes),
            })
            .collect(),
        types: s
            .types
            .into_iter()
            .map(|t| WalTypeCount {
                rmid: t.rmid.into(),
                info: t.info.into(),
                name: t.name,
                records: count(t.records),
            })
            .collect(),
        block_references: count(s.block_references),
        full_page_images: count(s.full_page_images),
        relations: s
            .relations
            .into_iter()
            .map(|r| {
                let flat: Vec<u32> = r.ranges.iter().flat_map(|&(a, b)| [a, b]).collect();
                WalRelationBlocks {
                    spc_oid: r.locator.spc,
                    db_oid: r.locator.db,
                    rel_number: r.locator.rel,
                    fork: r.fork.into(),
                    ranges: Uint32Array::new(flat),
                    blocks: count(r.blocks),
                }
            })
            .collect(),
        transactions: s
            .transactions
            .into_iter()
            .map(|x| WalTransaction {
                lsn: lsn(x.lsn),
                kind: x.kind.as_str().to_owned(),
                xid: x.xid,
                time_us: x.time_us,
            })
            .collect(),
        restore_points: s
            .restore_points
            .into_iter()
            .map(|p| WalRestorePoint {
                lsn: lsn(p.lsn),
                name: p.name,
                time_us: p.time_us,
            })
            .collect(),
        checkpoints: s
            .checkpoints
            .into_iter()
            .map(|c| WalCheckpoint {
                lsn: lsn(c.lsn),
                redo: lsn(c.redo),
                timeline: c.timeline,
                prev_timeline: c.prev_timeline,
                online: c.online,
                time_us: c.time_us,
            })
            .collect(),
        creations: s
            .creations
            .into_iter()
            .map(|c| {
                let (spc_oid, db_oid, rel_number) = rel(c.locator);
                WalRelationCreate {
                    lsn: lsn(c.lsn),
                    spc_oid,
                    db_oid,
                    rel_number,
                    fork: c.fork,
                }
            })
            .collect(),
        truncations: s
            .truncations
            .into_iter()
            .map(|t| {
                let (spc_oid, db_oid, rel_number) = rel(t.locator);
                WalRelationTruncate {
                    lsn: lsn(t.lsn),
                    spc_oid,
                    db_oid,
                    rel_number,
                    blocks: t.blocks,
                    flags: t.flags,
                }
            })
            .collect(),
        dropped_relations: s
            .dropped_relations
            .into_iter()
            .map(|d| {
                let (spc_oid, db_oid, rel_number) = rel(d.locator);
                WalRelationDrop {
                    lsn: lsn(d.lsn),
                    xid: d.xid,
                    kind: d.kind.as_str().to_owned(),
                    spc_oid,
                    db_oid,
                    rel_number,
                }
            })
            .collect(),
        database_creates: s
            .database_creates
            .into_iter()
            .map(|c| WalDatabaseCreate {
                lsn: lsn(c.lsn),
                db_oid: c.db,
                spc_oid: c.tablespace,
                strategy: match c.strategy {
                    DatabaseCreateStrategy::FileCopy => "file-copy",
                    DatabaseCreateStrategy::WalLog => "wal-log",
                }
                .to_owned(),
                source_db_oid: c.source.map(|(db, _)| db),
                source_spc_oid: c.source.map(|(_, spc)| spc),
            })
            .collect(),
        database_drops: s
            .database_drops
            .into_iter()
            .map(|d| WalDatabaseDrop {
                lsn: lsn(d.lsn),
                db_oid: d.db,
                spc_oids: d.tablespaces,
            })
            .collect(),
        aborted_records: s.aborted_records.into_iter().map(lsn).collect(),
        overwritten_contrecords: s
            .overwritten_contrecords
            .into_iter()
            .map(|o| WalOverwrittenContrecord {
                lsn: lsn(o.lsn),
                overwritten_lsn: lsn(o.overwritten_lsn),
                time_us: o.time_us,
            })
            .collect(),
        unhandled_special_updates: s.unhandled_special_updates.into_iter().map(lsn).collect(),
        undecoded: s
            .undecoded
            .into_iter()
            .map(|(at, detail)| WalUndecoded {
                lsn: lsn(at),
                detail,
            })
            .collect(),
    }
}

pub struct SummarizeWal {
    bytes: Buffer,
    context: SegmentContext,
    previous: Option<Buffer>,
}

impl Task for SummarizeWal {
    type Output = wal::SegmentSummary;
    type JsValue = WalSegmentSummary;

    fn compute(&mut self) -> Result<Self::Output> {
        match &self.previous {
            Some(previous) => {
                wal::summarize_segment_with_previous(&self.bytes, &self.context, previous)
            }
            None => wal::summarize_segment(&self.bytes, &self.context),
        }
        .map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(convert(output))
    }
}

/// The records of a segment, column by column: record `i`'s block references are entries
/// `blockStart[i]..blockStart[i + 1]` of the `block*` columns.
#[napi(object)]
pub struct WalRecordList {
    pub lsn: BigUint64Array,
    pub prev: BigUint64Array,
    pub tot_len: Uint32Array,
    /// Bytes of full-page images in the record.
    pub fpi_len: Uint32Array,
    pub xid: Uint32Array,
    pub rmid: Uint8Array,
    pub info: Uint8Array,
    pub block_start: Uint32Array,
    pub block_id: Uint8Array,
    pub block_spc_oid: Uint32Array,
    pub block_db_oid: Uint32Array,
    pub block_rel_number: Uint32Array,
    pub block_fork: Uint8Array,
    pub block_number: Uint32Array,
    /// 1 where the block reference carries a full-page image.
    pub block_image: Uint8Array,
    pub end_lsn: BigInt,
    pub end_reason: String,
    pub end_detail: Option<String>,
}

#[derive(Default)]
pub struct RecordColumns {
    lsn: Vec<u64>,
    prev: Vec<u64>,
    tot_len: Vec<u32>,
    fpi_len: Vec<u32>,
    xid: Vec<u32>,
    rmid: Vec<u8>,
    info: Vec<u8>,
    block_start: Vec<u32>,
    block_id: Vec<u8>,
    block_spc: Vec<u32>,
    block_db: Vec<u32>,
    block_rel: Vec<u32>,
    block_fork: Vec<u8>,
    block_number: Vec<u32>,
    block_image: Vec<u8>,
    end: Option<wal::EndOfWal>,
}

pub struct ListWal {
    bytes: Buffer,
    context: SegmentContext,
    previous: Option<Buffer>,
}

impl Task for ListWal {
    type Output = RecordColumns;
    type JsValue = WalRecordList;

    fn compute(&mut self) -> Result<Self::Output> {
        let mut reader = match &self.previous {
            Some(previous) => {
                wal::SegmentReader::with_previous(&self.bytes, &self.context, previous)
            }
            None => wal::SegmentReader::new(&self.bytes, &self.context),
        }
        .map_err(to_napi)?;
        let mut c = RecordColumns::default();
        for record in reader.by_ref() {
            c.lsn.push(record.lsn);
            c.prev.push(record.prev);
            c.tot_len.push(record.tot_len);
            c.fpi_len.push(record.fpi_len());
            c.xid.push(record.xid);
            c.rmid.push(record.rmid);
            c.info.push(record.info);
            c.block_start.push(count(c.block_id.len() as u64));
            for block in &record.blocks {
                c.block_id.push(block.id);
                c.block_spc.push(block.locator.spc);
                c.block_db.push(block.locator.db);
                c.block_rel.push(block.locator.rel);
                c.block_fork.push(block.fork);
                c.block_number.push(block.block);
                c.block_image.push(u8::from(block.image.is_some()));
            }
        }
        c.block_start.push(count(c.block_id.len() as u64));
        c.end = reader.end().cloned();
        Ok(c)
    }

    fn resolve(&mut self, _env: Env, c: Self::Output) -> Result<Self::JsValue> {
        let end = c.end.unwrap_or(wal::EndOfWal {
            lsn: self.context.start_lsn(),
            reason: wal::EndReason::InvalidRecord,
            detail: None,
            continued_record: None,
        });
        Ok(WalRecordList {
            lsn: BigUint64Array::new(c.lsn),
            prev: BigUint64Array::new(c.prev),
            tot_len: Uint32Array::new(c.tot_len),
            fpi_len: Uint32Array::new(c.fpi_len),
            xid: Uint32Array::new(c.xid),
            rmid: Uint8Array::new(c.rmid),
            info: Uint8Array::new(c.info),
            block_start: Uint32Array::new(c.block_start),
            block_id: Uint8Array::new(c.block_id),
            block_spc_oid: Uint32Array::new(c.block_spc),
            block_db_oid: Uint32Array::new(c.block_db),
            block_rel_number: Uint32Array::new(c.block_rel),
            block_fork: Uint8Array::new(c.block_fork),
            block_number: Uint32Array::new(c.block_number),
            block_image: Uint8Array::new(c.block_image),
            end_lsn: lsn(end.lsn),
            end_reason: end.reason.as_str().to_owned(),
            end_detail: end.detail,
        })
    }
}

pub(crate) fn segment_context(context: &WalSegmentContext) -> Result<SegmentContext> {
    let system_identifier = match context.system_identifier.as_ref() {
        Some(id) => Some(lsn_arg(id, "systemIdentifier")?),
        None => None,
    };
    let segment_no = lsn_arg(&context.segment_no, "segmentNo")?;
    if context.timeline == 0 {
        return Err(invalid_argument("timeline must be at least 1"));
    }
    Ok(SegmentContext {
        segment_size: context.segment_size,
        pg_major: context.pg_major,
        timeline: context.timeline,
        segment_no,
        system_identifier,
    })
}

/// Every valid record of one whole WAL segment with its block references, column by column
/// (for tools and tests; archive-push wants `summarize_wal_segment`). `previous` as there.
#[napi(ts_return_type = "Promise<WalRecordList>")]
pub fn list_wal_records(
    bytes: Buffer,
    context: WalSegmentContext,
    previous: Option<Buffer>,
) -> Result<AsyncTask<ListWal>> {
    Ok(AsyncTask::new(ListWal {
        bytes,
        context: segment_context(&context)?,
        previous,
    }))
}

/// pg_waldump's name of a record type (`Rmgr/TYPE`, e.g. `Heap/INSERT`) from `xl_rmid` and
/// `xl_info`; null where PostgreSQL would print UNKNOWN.
#[napi]
pub fn wal_record_type_name(pg_major: u32, rmid: u32, info: u32) -> Option<String> {
    let rmid = u8::try_from(rmid).ok()?;
    let info = u8::try_from(info).ok()?;
    let rmgr = wal::rmgr_name(rmid)?;
    let kind = wal::record_type_name(pg_major, rmid, info)?;
    Some(format!("{rmgr}/{kind}"))
}

/// Reads one whole WAL segment and summarises it: records, where valid WAL ends and why,
/// transaction ends, restore points, checkpoints, block references per relation fork, relation
/// creations, truncations and drops, database creations and drops. WAL_INVALID when the first
/// page does not begin the segment `context` describes. `previous`, when given, is the WAL just
/// before the segment (whole pages ending where it starts: the previous segment or its tail): the
/// record continuing into this segment is then read and summarised here, where it ends.
#[napi(ts_return_type = "Promise<WalSegmentSummary>")]
pub fn summarize_wal_segment(
    bytes: Buffer,
    context: WalSegmentContext,
    previous: Option<Buffer>,
) -> Result<AsyncTask<SummarizeWal>> {
    Ok(AsyncTask::new(SummarizeWal {
        bytes,
        context: segment_context(&context)?,
        previous,
    }))
}
