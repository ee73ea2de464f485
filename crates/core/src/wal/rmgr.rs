//! Resource managers: their names, the names of their record types (as pg_waldump prints them),
//! and the record bodies a backup cares about: transaction ends, restore points, checkpoints,
//! segment switches, relation storage creation and truncation, database creation and drop.

use super::decode::{Record, RelFileLocator};
use super::{unix_micros, Cursor};

pub const RM_XLOG_ID: u8 = 0;
pub const RM_XACT_ID: u8 = 1;
pub const RM_SMGR_ID: u8 = 2;
pub const RM_CLOG_ID: u8 = 3;
pub const RM_DBASE_ID: u8 = 4;
pub const RM_TBLSPC_ID: u8 = 5;
pub const RM_MULTIXACT_ID: u8 = 6;
pub const RM_RELMAP_ID: u8 = 7;
pub const RM_STANDBY_ID: u8 = 8;
pub const RM_HEAP2_ID: u8 = 9;
pub const RM_HEAP_ID: u8 = 10;
pub const RM_BTREE_ID: u8 = 11;
pub const RM_HASH_ID: u8 = 12;
pub const RM_GIN_ID: u8 = 13;
pub const RM_GIST_ID: u8 = 14;
pub const RM_SEQ_ID: u8 = 15;
pub const RM_SPGIST_ID: u8 = 16;
pub const RM_BRIN_ID: u8 = 17;
pub const RM_COMMIT_TS_ID: u8 = 18;
pub const RM_REPLORIGIN_ID: u8 = 19;
pub const RM_GENERIC_ID: u8 = 20;
pub const RM_LOGICALMSG_ID: u8 = 21;
/// `RM_MAX_BUILTIN_ID` for PostgreSQL 14 to 18.
pub const RM_MAX_BUILTIN_ID: u8 = 21;

/// XLOG rmgr record types (`catalog/pg_control.h`).
pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
pub const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
pub const XLOG_SWITCH: u8 = 0x40;
pub const XLOG_RESTORE_POINT: u8 = 0x70;
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

/// Transaction rmgr record types (`access/xact.h`), under `XLOG_XACT_OPMASK`.
pub const XLOG_XACT_COMMIT: u8 = 0x00;
pub const XLOG_XACT_PREPARE: u8 = 0x10;
pub const XLOG_XACT_ABORT: u8 = 0x20;
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
pub const XLOG_XACT_OPMASK: u8 = 0x70;
/// An `xl_xact_xinfo` follows the fixed part of a commit or abort record.
pub const XLOG_XACT_HAS_INFO: u8 = 0x80;

pub const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
pub const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
pub const XACT_XINFO_HAS_RELFILELOCATORS: u32 = 1 << 2;
pub const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
pub const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
pub const XACT_XINFO_HAS_ORIGIN: u32 = 1 << 5;
pub const XACT_XINFO_HAS_AE_LOCKS: u32 = 1 << 6;
pub const XACT_XINFO_HAS_GID: u32 = 1 << 7;
/// PostgreSQL 15+.
pub const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;

/// Storage rmgr record types (`catalog/storage_xlog.h`).
pub const XLOG_SMGR_CREATE: u8 = 0x10;
pub const XLOG_SMGR_TRUNCATE: u8 = 0x20;
/// `SMGR_TRUNCATE_*` flags: which forks a truncation applies to.
pub const SMGR_TRUNCATE_HEAP: u32 = 0x0001;
pub const SMGR_TRUNCATE_VM: u32 = 0x0002;
pub const SMGR_TRUNCATE_FSM: u32 = 0x0004;

/// `SizeOfSharedInvalidationMessage`.
const SHARED_INVAL_MESSAGE_SIZE: usize = 16;
/// `MAXFNAMELEN`: the size of a restore point's name field.
const RESTORE_POINT_NAME_SIZE: usize = 64;
/// Offset of `time` in `CheckPoint` (the same in 14 to 18; 17 filled padding with `wal_level`).
const CHECKPOINT_TIME_OFFSET: usize = 64;

/// The name pg_waldump prints for a resource manager (`RmgrTable`'s `rm_name`).
pub fn rmgr_name(rmid: u8) -> Option<&'static str> {
    Some(match rmid {
        RM_XLOG_ID => "XLOG",
        RM_XACT_ID => "Transaction",
        RM_SMGR_ID => "Storage",
        RM_CLOG_ID => "CLOG",
        RM_DBASE_ID => "Database",
        RM_TBLSPC_ID => "Tablespace",
        RM_MULTIXACT_ID => "MultiXact",
        RM_RELMAP_ID => "RelMap",
        RM_STANDBY_ID => "Standby",
        RM_HEAP2_ID => "Heap2",
        RM_HEAP_ID => "Heap",
        RM_BTREE_ID => "Btree",
        RM_HASH_ID => "Hash",
        RM_GIN_ID => "Gin",
        RM_GIST_ID => "Gist",
        RM_SEQ_ID => "Sequence",
        RM_SPGIST_ID => "SPGist",
        RM_BRIN_ID => "BRIN",
        RM_COMMIT_TS_ID => "CommitTs",
        RM_REPLORIGIN_ID => "ReplicationOrigin",
        RM_GENERIC_ID => "Generic",
        RM_LOGICALMSG_ID => "LogicalMessage",
        _ => return None,
    })
}

/// The record type name pg_waldump prints (the rmgr's `rm_identify`) for built-in rmgrs, given
/// the whole `xl_info`; `None` where PostgreSQL would print `UNKNOWN`.
pub fn record_type_name(pg_major: u32, rmid: u8, info: u8) -> Option<&'static str> {
    let op = info & 0xF0;
    Some(match rmid {
        RM_XLOG_ID => match op {
            0x00 => "CHECKPOINT_SHUTDOWN",
            0x10 => "CHECKPOINT_ONLINE",
            0x20 => "NOOP",
            0x30 => "NEXTOID",
            0x40 => "SWITCH",
            0x50 => "BACKUP_END",
            0x60 => "PARAMETER_CHANGE",
            0x70 => "RESTORE_POINT",
            0x80 => "FPW_CHANGE",
            0x90 => "END_OF_RECOVERY",
            0xA0 => "FPI_FOR_HINT",
            0xB0 => "FPI",
            0xD0 => "OVERWRITE_CONTRECORD",
            0xE0 if pg_major >= 17 => "CHECKPOINT_REDO",
            _ => return None,
        },
        RM_XACT_ID => match info & XLOG_XACT_OPMASK {
            0x00 => "COMMIT",
            0x10 => "PREPARE",
            0x20 => "ABORT",
            0x30 => "COMMIT_PREPARED",
            0x40 => "ABORT_PREPARED",
            0x50 => "ASSIGNMENT",
            0x60 => "INVALIDATIONS",
            _ => return None,
        },
        RM_SMGR_ID => match op {
            0x10 => "CREATE",
            0x20 => "TRUNCATE",
            _ => return None,
        },
        RM_CLOG_ID | RM_COMMIT_TS_ID => match op {
            0x00 => "ZEROPAGE",
            0x10 => "TRUNCATE",
            _ => return None,
        },
        RM_DBASE_ID if pg_major == 14 => match op {
            0x00 => "CREATE",
            0x10 => "DROP",
            _ => return None,
        },
        RM_DBASE_ID => match op {
            0x00 => "CREATE_FILE_COPY",
            0x10 => "CREATE_WAL_LOG",
            0x20 => "DROP",
            _ => return None,
        },
        RM_TBLSPC_ID => match op {
            0x00 => "CREATE",
            0x10 => "DROP",
            _ => return None,
        },
        RM_MULTIXACT_ID => match op {
            0x00 => "ZERO_OFF_PAGE",
            0x10 => "ZERO_MEM_PAGE",
            0x20 => "CREATE_ID",
            0x30 => "TRUNCATE_ID",
            _ => return None,
        },
        RM_RELMAP_ID => match op {
            0x00 => "UPDATE",
            _ => return None,
        },
        RM_STANDBY_ID => match op {
            0x00 => "LOCK",
            0x10 => "RUNNING_XACTS",
            0x20 => "INVALIDATIONS",
            _ => return None,
        },
        RM_HEAP2_ID => match op {
            0x00 => "REWRITE",
            0x10 if pg_major >= 17 => "PRUNE_ON_ACCESS",
            0x20 if pg_major >= 17 => "PRUNE_VACUUM_SCAN",
            0x30 if pg_major >= 17 => "PRUNE_VACUUM_CLEANUP",
            0x10 => "PRUNE",
            0x20 => "VACUUM",
            0x30 => "FREEZE_PAGE",
            0x40 => "VISIBLE",
            0x50 => "MULTI_INSERT",
            0xD0 => "MULTI_INSERT+INIT",
            0x60 => "LOCK_UPDATED",
            0x70 => "NEW_CID",
            _ => return None,
        },
        RM_HEAP_ID => match op {
            0x00 => "INSERT",
            0x80 => "INSERT+INIT",
            0x10 => "DELETE",
            0x20 => "UPDATE",
            0xA0 => "UPDATE+INIT",
            0x30 => "TRUNCATE",
            0x40 => "HOT_UPDATE",
            0xC0 => "HOT_UPDATE+INIT",
            0x50 => "CONFIRM",
            0x60 => "LOCK",
            0x70 => "INPLACE",
            _ => return None,
        },
        RM_BTREE_ID => match op {
            0x00 => "INSERT_LEAF",
            0x10 => "INSERT_UPPER",
            0x20 => "INSERT_META",
            0x30 => "SPLIT_L",
            0x40 => "SPLIT_R",
            0x50 => "INSERT_POST",
            0x60 => "DEDUP",
            0x70 => "DELETE",
            0x80 => "UNLINK_PAGE",
            0x90 => "UNLINK_PAGE_META",
            0xA0 => "NEWROOT",
            0xB0 => "MARK_PAGE_HALFDEAD",
            0xC0 => "VACUUM",
            0xD0 => "REUSE_PAGE",
            0xE0 => "META_CLEANUP",
            _ => return None,
        },
        RM_HASH_ID => match op {
            0x00 => "INIT_META_PAGE",
            0x10 => "INIT_BITMAP_PAGE",
            0x20 => "INSERT",
            0x30 => "ADD_OVFL_PAGE",
            0x40 => "SPLIT_ALLOCATE_PAGE",
            0x50 => "SPLIT_PAGE",
            0x60 => "SPLIT_COMPLETE",
            0x70 => "MOVE_PAGE_CONTENTS",
            0x80 => "SQUEEZE_PAGE",
            0x90 => "DELETE",
            0xA0 => "SPLIT_CLEANUP",
            0xB0 => "UPDATE_META_PAGE",
            0xC0 => "VACUUM_ONE_PAGE",
            _ => return None,
        },
        RM_GIN_ID => match op {
            0x10 => "CREATE_PTREE",
            0x20 => "INSERT",
            0x30 => "SPLIT",
            0x40 => "VACUUM_PAGE",
            0x50 => "DELETE_PAGE",
            0x60 => "UPDATE_META_PAGE",
            0x70 => "INSERT_LISTPAGE",
            0x80 => "DELETE_LISTPAGE",
            0x90 => "VACUUM_DATA_LEAF_PAGE",
            _ => return None,
        },
        RM_GIST_ID => match op {
            0x00 => "PAGE_UPDATE",
            0x10 => "DELETE",
            0x20 => "PAGE_REUSE",
            0x30 => "PAGE_SPLIT",
            0x60 => "PAGE_DELETE",
            0x70 => "ASSIGN_LSN",
            _ => return None,
        },
        RM_SEQ_ID => match op {
            0x00 => "LOG",
            _ => return None,
        },
        RM_SPGIST_ID => match op {
            0x10 => "ADD_LEAF",
            0x20 => "MOVE_LEAFS",
            0x30 => "ADD_NODE",
            0x40 => "SPLIT_TUPLE",
            0x50 => "PICKSPLIT",
            0x60 => "VACUUM_LEAF",
            0x70 => "VACUUM_ROOT",
            0x80 => "VACUUM_REDIRECT",
            _ => return None,
        },
        RM_BRIN_ID => match op {
            0x00 => "CREATE_INDEX",
            0x10 => "INSERT",
            0x90 => "INSERT+INIT",
            0x20 => "UPDATE",
            0xA0 => "UPDATE+INIT",
            0x30 => "SAMEPAGE_UPDATE",
            0x40 => "REVMAP_EXTEND",
            0x50 => "DESUMMARIZE",
            _ => return None,
        },
        RM_REPLORIGIN_ID => match op {
            0x00 => "SET",
            0x10 => "DROP",
            _ => return None,
        },
        RM_GENERIC_ID => "Generic",
        RM_LOGICALMSG_ID => match op {
            0x00 => "MESSAGE",
            _ => return None,
        },
        _ => return None,
    })
}

/// How a transaction ended (or was prepared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XactKind {
    Commit,
    Prepare,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

impl XactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            XactKind::Commit => "commit",
            XactKind::Prepare => "prepare",
            XactKind::Abort => "abort",
            XactKind::CommitPrepared => "commit-prepared",
            XactKind::AbortPrepared => "abort-prepared",
        }
    }
}

/// A transaction's end (or its PREPARE TRANSACTION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XactEvent {
    pub lsn: u64,
    pub kind: XactKind,
    /// The transaction: `xl_xid`, or for prepared transactions the xid they were prepared under.
    pub xid: u32,
    /// `xact_time` (for PREPARE, `prepared_at`), microseconds since the Unix epoch.
    pub time_us: i64,
    /// Relation storage the commit (or abort) removes: tables dropped (or created and rolled back).
    pub dropped: Vec<RelFileLocator>,
}

/// `pg_create_restore_point`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePointEvent {
    pub lsn: u64,
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
}

/// A checkpoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEvent {
    pub lsn: u64,
    /// Where replay starting from this checkpoint begins.
    pub redo: u64,
    pub timeline: u32,
    pub prev_timeline: u32,
    /// Online (`XLOG_CHECKPOINT_ONLINE`) or at shutdown / end of recovery.
    pub online: bool,
    /// The checkpoint's `time`, microseconds since the Unix epoch (second precision).
    pub time_us: i64,
}

/// `XLOG_SMGR_CREATE`: a relation fork's storage was created (empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmgrCreate {
    pub lsn: u64,
    pub locator: RelFileLocator,
    pub fork: u32,
}

/// `XLOG_SMGR_TRUNCATE`: the relation was cut to `blocks` blocks (the forks named by `flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmgrTruncate {
    pub lsn: u64,
    pub locator: RelFileLocator,
    pub blocks: u32,
    /// `SMGR_TRUNCATE_HEAP` (main fork), `_VM`, `_FSM`.
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCreateStrategy {
    /// The template's directory was copied at the file level: no block references follow.
    FileCopy,
    /// Every block of the new database is WAL-logged after this record (PostgreSQL 15+).
    WalLog,
}

/// CREATE DATABASE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseCreate {
    pub lsn: u64,
    pub db: u32,
    pub tablespace: u32,
    pub strategy: DatabaseCreateStrategy,
    /// Template database and its tablespace (file-copy strategy only).
    pub source: Option<(u32, u32)>,
}

/// DROP DATABASE: its directory in each tablespace is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseDrop {
    pub lsn: u64,
    pub db: u32,
    pub tablespaces: Vec<u32>,
}

/// `XLOG_OVERWRITE_CONTRECORD`: the record at `overwritten_lsn` was left incomplete by a crash
/// and is not part of WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverwrittenContrecord {
    pub lsn: u64,
    pub overwritten_lsn: u64,
    pub time_us: i64,
}

/// What a record means for a backup, for the record types that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Xact(XactEvent),
    RestorePoint(RestorePointEvent),
    Checkpoint(CheckpointEvent),
    Switch,
    SmgrCreate(SmgrCreate),
    SmgrTruncate(SmgrTruncate),
    DatabaseCreate(DatabaseCreate),
    DatabaseDrop(DatabaseDrop),
    OverwriteContrecord(OverwrittenContrecord),
}

/// The backup-relevant meaning of `record`: `Ok(None)` for record types that carry none,
/// `Err` when a record of a decoded type has a body this parser does not understand.
pub fn decode_event(
    pg_major: u32,
    record: &Record<'_>,
) -> std::result::Result<Option<Event>, String> {
    let data = record.main_data();
    let short = || {
        format!(
            "{}/{} record at {} has a {}-byte body this parser does not understand",
            rmgr_name(record.rmid).unwrap_or("?"),
            record_type_name(pg_major, record.rmid, record.info).unwrap_or("?"),
            super::format_lsn(record.lsn),
            data.len()
        )
    };
    let mut c = Cursor::new(data);
    let lsn = record.lsn;
    let op = record.rmgr_info();
    let event = match record.rmid {
        RM_XLOG_ID => match op {
            XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE => {
                let redo = c.u64().ok_or_else(short)?;
                let timeline = c.u32().ok_or_else(short)?;
                let prev_timeline = c.u32().ok_or_else(short)?;
                let time = Cursor::new(data.get(CHECKPOINT_TIME_OFFSET..).unwrap_or(&[]))
                    .i64()
                    .ok_or_else(short)?;
                Event::Checkpoint(CheckpointEvent {
                    lsn,
                    redo,
                    timeline,
                    prev_timeline,
                    online: op == XLOG_CHECKPOINT_ONLINE,
                    time_us: time.saturating_mul(1_000_000),
                })
            }
            XLOG_SWITCH => Event::Switch,
            XLOG_RESTORE_POINT => {
                let time = c.i64().ok_or_else(short)?;
                let field = c.take(RESTORE_POINT_NAME_SIZE).ok_or_else(short)?;
                let name = field.split(|&b| b == 0).next().unwrap_or(&[]);
                Event::RestorePoint(RestorePointEvent {
                    lsn,
                    name: String::from_utf8_lossy(name).into_owned(),
                    time_us: unix_micros(time),
                })
            }
            XLOG_OVERWRITE_CONTRECORD => Event::OverwriteContrecord(OverwrittenContrecord {
                lsn,
                overwritten_lsn: c.u64().ok_or_else(short)?,
                time_us: unix_micros(c.i64().ok_or_else(short)?),
            }),
            _ => return Ok(None),
        },
        RM_XACT_ID => return xact_event(pg_major, record).map_err(|()| short()),
        RM_SMGR_ID => match op {
            XLOG_SMGR_CREATE => Event::SmgrCreate(SmgrCreate {
                lsn,
                locator: RelFileLocator::read(&mut c).ok_or_else(short)?,
                fork: c.u32().ok_or_else(short)?,
            }),
            XLOG_SMGR_TRUNCATE => {
                let blocks = c.u32().ok_or_else(short)?;
                let locator = RelFileLocator::read(&mut c).ok_or_else(short)?;
                let flags = c.u32().ok_or_else(short)?;
                Event::SmgrTruncate(SmgrTruncate {
                    lsn,
                    locator,
                    blocks,
                    flags,
                })
            }
            _ => return Ok(None),
        },
        RM_DBASE_ID => {
            let (create_copy, create_wal_log, drop) = if pg_major == 14 {
                (0x00, None, 0x10)
            } else {
                (0x00, Some(0x10), 0x20)
            };
            if op == create_copy {
                let db = c.u32().ok_or_else(short)?;
                let tablespace = c.u32().ok_or_else(short)?;
                let source = (c.u32().ok_or_else(short)?, c.u32().ok_or_else(short)?);
                Event::DatabaseCreate(DatabaseCreate {
                    lsn,
                    db,
                    tablespace,
                    strategy: DatabaseCreateStrategy::FileCopy,
                    source: Some(source),
                })
            } else if Some(op) == create_wal_log {
                Event::DatabaseCreate(DatabaseCreate {
                    lsn,
                    db: c.u32().ok_or_else(short)?,
                    tablespace: c.u32().ok_or_else(short)?,
                    strategy: DatabaseCreateStrategy::WalLog,
                    source: None,
                })
            } else if op == drop {
                let db = c.u32().ok_or_else(short)?;
                let count = c.i32().ok_or_else(short)?;
                let count = usize::try_from(count).map_err(|_| short())?;
                if count > c.remaining() / 4 {
                    return Err(short());
                }
                let tablespaces = (0..count)
                    .map(|_| c.u32().ok_or_else(short))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Event::DatabaseDrop(DatabaseDrop {
                    lsn,
                    db,
                    tablespaces,
                })
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// Reads a 32-bit count followed by `count` items of `item_size` bytes; returns the items' bytes.
fn counted<'a>(c: &mut Cursor<'a>, item_size: usize) -> Option<&'a [u8]> {
    let count = usize::try_from(c.i32()?).ok()?;
    c.take(count.checked_mul(item_size)?)
}

/// `ParseCommitRecord`, `ParseAbortRecord` and `ParsePrepareRecord`, as far as a backup needs.
fn xact_event(pg_major: u32, record: &Record<'_>) -> std::result::Result<Option<Event>, ()> {
    let info = record.info;
    let kind = match info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => XactKind::Commit,
        XLOG_XACT_PREPARE => XactKind::Prepare,
        XLOG_XACT_ABORT => XactKind::Abort,
        XLOG_XACT_COMMIT_PREPARED => XactKind::CommitPrepared,
        XLOG_XACT_ABORT_PREPARED => XactKind::AbortPrepared,
        _ => return Ok(None),
    };
    let data = record.main_data();
    let mut c = Cursor::new(data);
    if kind == XactKind::Prepare {
        // xl_xact_prepare: magic, total_len, xid, database, prepared_at, ...
        c.skip(8).ok_or(())?;
        let xid = c.u32().ok_or(())?;
        c.skip(4).ok_or(())?;
        let prepared_at = c.i64().ok_or(())?;
        return Ok(Some(Event::Xact(XactEvent {
            lsn: record.lsn,
            kind,
            xid,
            time_us: unix_micros(prepared_at),
            dropped: Vec::new(),
        })));
    }
    // Commit and abort bodies share one layout; abort records simply never set some flags.
    let xact_time = c.i64().ok_or(())?;
    let xinfo = if info & XLOG_XACT_HAS_INFO != 0 {
        c.u32().ok_or(())?
    } else {
        0
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        c.skip(8).ok_or(())?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        counted(&mut c, 4).ok_or(())?;
    }
    let mut dropped = Vec::new();
    if xinfo & XACT_XINFO_HAS_RELFILELOCATORS != 0 {
        let mut locators = Cursor::new(counted(&mut c, 12).ok_or(())?);
        while let Some(locator) = RelFileLocator::read(&mut locators) {
            dropped.push(locator);
        }
    }
    if pg_major >= 15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        // xl_xact_stats_item: kind, dboid, objid (PostgreSQL 18: objid is 64 bits, as two halves).
        let item_size = if pg_major >= 18 { 16 } else { 12 };
        counted(&mut c, item_size).ok_or(())?;
    }
    if xinfo & XACT_XINFO_HAS_INVALS != 0 {
        counted(&mut c, SHARED_INVAL_MESSAGE_SIZE).ok_or(())?;
    }
    let mut xid = record.xid;
    if xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        xid = c.u32().ok_or(())?;
    }
    Ok(Some(Event::Xact(XactEvent {
        lsn: record.lsn,
        kind,
        xid,
        time_us: unix_micros(xact_time),
        dropped,
    })))
}
