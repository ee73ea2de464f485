//! One WAL record decoded the way `DecodeXLogRecord` does: the fixed header, then block
//! references, replication origin, top-level xid and main data headers, then the payloads.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::ops::Range;

use super::page::XLOG_BLCKSZ;
use super::{Cursor, RECORD_HEADER_SIZE};
use crate::checksum;

/// `XLR_MAX_BLOCK_ID`.
pub const MAX_BLOCK_ID: u8 = 32;
/// `XLR_BLOCK_ID_DATA_SHORT`: main data of fewer than 256 bytes follows.
pub const BLOCK_ID_DATA_SHORT: u8 = 255;
/// `XLR_BLOCK_ID_DATA_LONG`: main data with a 32-bit length follows.
pub const BLOCK_ID_DATA_LONG: u8 = 254;
/// `XLR_BLOCK_ID_ORIGIN`: a replication origin id (`RepOriginId`, 16 bits) follows.
pub const BLOCK_ID_ORIGIN: u8 = 253;
/// `XLR_BLOCK_ID_TOPLEVEL_XID`: the top-level transaction id of a subtransaction follows.
pub const BLOCK_ID_TOPLEVEL_XID: u8 = 252;

/// `BKPBLOCK_FORK_MASK`.
pub const BKPBLOCK_FORK_MASK: u8 = 0x0F;
/// `BKPBLOCK_HAS_IMAGE`: a full-page image is attached.
pub const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// `BKPBLOCK_HAS_DATA`: block data is attached.
pub const BKPBLOCK_HAS_DATA: u8 = 0x20;
/// `BKPBLOCK_WILL_INIT`: redo reinitialises the page.
pub const BKPBLOCK_WILL_INIT: u8 = 0x40;
/// `BKPBLOCK_SAME_REL`: the relation is the previous block reference's.
pub const BKPBLOCK_SAME_REL: u8 = 0x80;

/// `BKPIMAGE_HAS_HOLE` (every version).
pub const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// PostgreSQL 14: `BKPIMAGE_IS_COMPRESSED` (pglz, the only method).
pub const BKPIMAGE_IS_COMPRESSED_14: u8 = 0x02;
/// PostgreSQL 14: `BKPIMAGE_APPLY`.
pub const BKPIMAGE_APPLY_14: u8 = 0x04;
/// PostgreSQL 15+: `BKPIMAGE_APPLY`.
pub const BKPIMAGE_APPLY: u8 = 0x02;
/// PostgreSQL 15+: `BKPIMAGE_COMPRESS_PGLZ`.
pub const BKPIMAGE_COMPRESS_PGLZ: u8 = 0x04;
/// PostgreSQL 15+: `BKPIMAGE_COMPRESS_LZ4`.
pub const BKPIMAGE_COMPRESS_LZ4: u8 = 0x08;
/// PostgreSQL 15+: `BKPIMAGE_COMPRESS_ZSTD`.
pub const BKPIMAGE_COMPRESS_ZSTD: u8 = 0x10;

/// `XLR_INFO_MASK`: the low bits of `xl_info` belong to the WAL machinery.
pub const XLR_INFO_MASK: u8 = 0x0F;
/// `XLR_SPECIAL_REL_UPDATE`: the record changes relation files beyond its block references.
pub const XLR_SPECIAL_REL_UPDATE: u8 = 0x01;
/// `XLR_CHECK_CONSISTENCY`.
pub const XLR_CHECK_CONSISTENCY: u8 = 0x02;

/// `RelFileLocator` (`RelFileNode` before PostgreSQL 16; the same 12 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelFileLocator {
    /// Tablespace OID (1663 pg_default, 1664 pg_global).
    pub spc: u32,
    /// Database OID (0 for shared relations).
    pub db: u32,
    /// relfilenode / RelFileNumber: the file name.
    pub rel: u32,
}

impl RelFileLocator {
    pub(crate) fn read(c: &mut Cursor<'_>) -> Option<RelFileLocator> {
        Some(RelFileLocator {
            spc: c.u32()?,
            db: c.u32()?,
            rel: c.u32()?,
        })
    }
}

/// How a full-page image is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCompression {
    None,
    Pglz,
    Lz4,
    Zstd,
}

/// A full-page image attached to a block reference (`XLogRecordBlockImageHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockImage {
    /// Bytes of image stored in the record (after hole removal and compression).
    pub length: u16,
    pub hole_offset: u16,
    pub hole_length: u16,
    /// `bimg_info` as stored (its bits differ between PostgreSQL 14 and 15+).
    pub info: u8,
    /// Redo restores the image (`BKPIMAGE_APPLY`); otherwise it is for consistency checking.
    pub apply: bool,
    pub compression: ImageCompression,
    /// Where the image bytes are among the record's payloads (see [`Record::block_image`]).
    pub range: Range<usize>,
}

/// One block reference (`XLogRecordBlockHeader` and what follows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    /// Block reference id, 0..=32.
    pub id: u8,
    /// 0 main, 1 fsm, 2 visibility map, 3 init.
    pub fork: u8,
    /// The upper bits of `fork_flags` (`BKPBLOCK_*`).
    pub flags: u8,
    pub locator: RelFileLocator,
    pub block: u32,
    pub image: Option<BlockImage>,
    /// Where the block data is among the record's payloads (empty without `BKPBLOCK_HAS_DATA`; see
    /// [`Record::block_data`]).
    pub data: Range<usize>,
}

impl BlockRef {
    pub fn will_init(&self) -> bool {
        self.flags & BKPBLOCK_WILL_INIT != 0
    }
}

/// A record whose CRC matched, decoded down to its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// LSN of the record's first byte.
    pub lsn: u64,
    /// Where the next record starts (after an `XLOG_SWITCH`, the next segment).
    pub next_lsn: u64,
    /// `xl_tot_len`: header plus everything after it.
    pub tot_len: u32,
    pub xid: u32,
    /// `xl_prev`: LSN of the previous record.
    pub prev: u64,
    /// `xl_info`: high four bits for the rmgr, low four for the WAL machinery.
    pub info: u8,
    /// `xl_rmid`: the resource manager.
    pub rmid: u8,
    pub crc: u32,
    pub origin: Option<u16>,
    pub toplevel_xid: Option<u32>,
    /// Most records reference one or two blocks: those stay inline, without an allocation.
    pub blocks: SmallVec<[BlockRef; 2]>,
    /// The whole record, header included: borrowed when it lies on one page, else reassembled.
    pub bytes: Cow<'a, [u8]>,
    /// Where the payloads (block images and data, then the main data) start in `bytes`.
    pub payloads: usize,
    /// Where the main data is in `bytes`.
    pub main_data: Range<usize>,
}

impl Record<'_> {
    /// The rmgr's own bits of `xl_info` (`XLogRecGetInfo(record) & ~XLR_INFO_MASK`).
    pub fn rmgr_info(&self) -> u8 {
        self.info & !XLR_INFO_MASK
    }

    pub fn main_data(&self) -> &[u8] {
        self.bytes.get(self.main_data.clone()).unwrap_or(&[])
    }

    pub fn block_data(&self, block: &BlockRef) -> &[u8] {
        self.payload(&block.data)
    }

    /// The bytes of a block's full-page image as stored (hole removed, maybe compressed).
    pub fn block_image(&self, image: &BlockImage) -> &[u8] {
        self.payload(&image.range)
    }

    fn payload(&self, range: &Range<usize>) -> &[u8] {
        self.bytes
            .get(self.payloads + range.start..self.payloads + range.end)
            .unwrap_or(&[])
    }

    /// Bytes of full-page images in the record (pg_waldump's "fpi" length).
    pub fn fpi_len(&self) -> u32 {
        self.blocks
            .iter()
            .filter_map(|b| b.image.as_ref())
            .map(|i| u32::from(i.length))
            .sum()
    }
}

/// The fixed part of a record header (`XLogRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub tot_len: u32,
    pub xid: u32,
    pub prev: u64,
    pub info: u8,
    pub rmid: u8,
    pub crc: u32,
}

impl RecordHeader {
    pub fn parse(bytes: &[u8]) -> Option<RecordHeader> {
        let mut c = Cursor::new(bytes);
        let tot_len = c.u32()?;
        let xid = c.u32()?;
        let prev = c.u64()?;
        let info = c.u8()?;
        let rmid = c.u8()?;
        c.skip(2)?;
        let crc = c.u32()?;
        Some(RecordHeader {
            tot_len,
            xid,
            prev,
            info,
            rmid,
            crc,
        })
    }
}

/// `ValidXLogRecord`: CRC-32C of everything after the header, then of the header up to `xl_crc`.
pub(crate) fn crc_matches(record: &[u8], stored: u32) -> bool {
    match (record.get(RECORD_HEADER_SIZE..), record.get(..20)) {
        (Some(body), Some(head)) => checksum::crc32c_append(checksum::crc32c(body), head) == stored,
        _ => false,
    }
}

/// `RmgrIdIsValid`: built-in ids 0..=21; PostgreSQL 15+ also custom ids 128..=255.
pub(crate) fn rmgr_id_is_valid(pg_major: u32, rmid: u8) -> bool {
    rmid <= super::rmgr::RM_MAX_BUILTIN_ID || (pg_major >= 15 && rmid >= 128)
}

fn image_compression(pg_major: u32, info: u8) -> ImageCompression {
    if pg_major == 14 {
        if info & BKPIMAGE_IS_COMPRESSED_14 != 0 {
            ImageCompression::Pglz
        } else {
            ImageCompression::None
        }
    } else if info & BKPIMAGE_COMPRESS_PGLZ != 0 {
        ImageCompression::Pglz
    } else if info & BKPIMAGE_COMPRESS_LZ4 != 0 {
        ImageCompression::Lz4
    } else if info & BKPIMAGE_COMPRESS_ZSTD != 0 {
        ImageCompression::Zstd
    } else {
        ImageCompression::None
    }
}

fn image_apply(pg_major: u32, info: u8) -> bool {
    let bit = if pg_major == 14 {
        BKPIMAGE_APPLY_14
    } else {
        BKPIMAGE_APPLY
    };
    info & bit != 0
}

/// Decodes a whole record (header included, CRC already checked) into its fragments, with the
/// cross-checks of `DecodeXLogRecord`. The error says what is wrong.
pub(crate) fn decode<'a>(
    pg_major: u32,
    lsn: u64,
    next_lsn: u64,
    bytes: Cow<'a, [u8]>,
) -> std::result::Result<Record<'a>, String> {
    let header =
        RecordHeader::parse(&bytes).ok_or_else(|| "record shorter than its header".to_owned())?;
    let tot_len = header.tot_len as usize;
    if tot_len != bytes.len() || tot_len < RECORD_HEADER_SIZE {
        return Err(format!(
            "record length {tot_len} does not match its {} bytes",
            bytes.len()
        ));
    }
    let short = || "record with invalid length".to_owned();
    let mut c = Cursor::new(&bytes[..]);
    c.skip(RECORD_HEADER_SIZE).ok_or_else(short)?;

    // Payloads follow the headers in block order (image, then data), then the main data: a block's
    // ranges count from where the payloads start, which is known only once every header is read.
    // (Filling in absolute ranges afterwards cost a store-forwarding stall per record when the
    // record was returned.)
    let mut payload_at = 0usize;
    let mut blocks: SmallVec<[BlockRef; 2]> = SmallVec::new();
    let mut origin = None;
    let mut toplevel_xid = None;
    let mut main_len = 0usize;
    let mut datatotal = 0usize;
    let mut last_locator: Option<RelFileLocator> = None;
    let mut max_block_id: i32 = -1;

    while c.remaining() > datatotal {
        let id = c.u8().ok_or_else(short)?;
        match id {
            BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(c.u8().ok_or_else(short)?);
                datatotal += main_len;
                break;
            }
            BLOCK_ID_DATA_LONG => {
                main_len = c.u32().ok_or_else(short)? as usize;
                datatotal = datatotal.saturating_add(main_len);
                break;
            }
            BLOCK_ID_ORIGIN => origin = Some(c.u16().ok_or_else(short)?),
            BLOCK_ID_TOPLEVEL_XID => toplevel_xid = Some(c.u32().ok_or_else(short)?),
            id if id <= MAX_BLOCK_ID => {
                if i32::from(id) <= max_block_id {
                    return Err(format!("out-of-order block_id {id}"));
                }
                max_block_id = i32::from(id);
                let fork_flags = c.u8().ok_or_else(short)?;
                let data_len = usize::from(c.u16().ok_or_else(short)?);
                let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
                if has_data && data_len == 0 {
                    return Err("BKPBLOCK_HAS_DATA set, but no data included".to_owned());
                }
                if !has_data && data_len != 0 {
                    return Err(format!(
                        "BKPBLOCK_HAS_DATA not set, but data length is {data_len}"
                    ));
                }
                datatotal += data_len;
                let mut image = None;
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let length = c.u16().ok_or_else(short)?;
                    let hole_offset = c.u16().ok_or_else(short)?;
                    let info = c.u8().ok_or_else(short)?;
                    let compression = image_compression(pg_major, info);
                    let has_hole = info & BKPIMAGE_HAS_HOLE != 0;
                    let compressed = compression != ImageCompression::None;
                    let hole_length = if compressed {
                        if has_hole {
                            c.u16().ok_or_else(short)?
                        } else {
                            0
                        }
                    } else {
                        // An uncompressed image is the page minus its hole.
                        (XLOG_BLCKSZ as u16).wrapping_sub(length)
                    };
                    let page = XLOG_BLCKSZ as u16;
                    if has_hole && (hole_offset == 0 || hole_length == 0 || length == page) {
                        return Err(format!(
                            "BKPIMAGE_HAS_HOLE set, but hole offset {hole_offset} length {hole_length} block image length {length}"
                        ));
                    }
                    if !has_hole && (hole_offset != 0 || hole_length != 0) {
                        return Err(format!(
                            "BKPIMAGE_HAS_HOLE not set, but hole offset {hole_offset} length {hole_length}"
                        ));
                    }
                    if compressed && length == page {
                        return Err(format!(
                            "BKPIMAGE_COMPRESSED set, but block image length {length}"
                        ));
                    }
                    if !has_hole && !compressed && length != page {
                        return Err(format!(
                            "neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is {length}"
                        ));
                    }
                    if usize::from(length) > XLOG_BLCKSZ {
                        return Err(format!("block image length {length} exceeds a page"));
                    }
                    let image_len = usize::from(length);
                    datatotal += image_len;
                    let range = payload_at..payload_at + image_len;
                    payload_at += image_len;
                    image = Some(BlockImage {
                        length,
                        hole_offset,
                        hole_length,
                        info,
                        apply: image_apply(pg_major, info),
                        compression,
                        range,
                    });
                }
                let locator = if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    let locator = RelFileLocator::read(&mut c).ok_or_else(short)?;
                    last_locator = Some(locator);
                    locator
                } else {
                    last_locator
                        .ok_or_else(|| "BKPBLOCK_SAME_REL set but no previous rel".to_owned())?
                };
                let block = c.u32().ok_or_else(short)?;
                let data = payload_at..payload_at + data_len;
                payload_at += data_len;
                blocks.push(BlockRef {
                    id,
                    fork: fork_flags & BKPBLOCK_FORK_MASK,
                    flags: fork_flags & !BKPBLOCK_FORK_MASK,
                    locator,
                    block,
                    image,
                    data,
                });
            }
            id => return Err(format!("invalid block_id {id}")),
        }
    }
    if c.remaining() != datatotal {
        return Err(short());
    }

    let payloads = c.position();
    let main_data = bytes.len() - main_len..bytes.len();

    Ok(Record {
        lsn,
        next_lsn,
        tot_len: header.tot_len,
        xid: header.xid,
        prev: header.prev,
        info: header.info,
        rmid: header.rmid,
        crc: header.crc,
        origin,
        toplevel_xid,
        blocks,
        bytes,
        payloads,
        main_data,
    })
}
