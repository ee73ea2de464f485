//! Extents: the chunk scan of the backup hot loop and keyed BLAKE3 ids.
//!
//! Per-extent results cross as a few packed arrays rather than one object per extent: building
//! objects property by property through napi costs more than the JavaScript side takes to read
//! them out of typed arrays.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgforever_core::extent::{self, ChunkScan, ExtentId, ScanOptions, ID_BYTES};
use pgforever_core::frame::FrameHeader;

use crate::error::{invalid_argument, to_napi};
use crate::page::{optional_lsn_arg, ChecksumFailure};

/// Per-extent `flags` bits in [`ScannedChunk`].
const FLAG_CHANGED: u8 = 1;
const FLAG_ALL_ZERO: u8 = 2;
const FLAG_HAS_ID: u8 = 4;

#[napi(object)]
pub struct ChunkScanOptions {
    pub first_block: u32,
    pub changed_since: Option<BigInt>,
    pub verify_checksums: bool,
    pub backup_start: Option<BigInt>,
}

fn scan_options(options: &ChunkScanOptions) -> Result<ScanOptions> {
    Ok(ScanOptions {
        first_block: options.first_block,
        changed_since: optional_lsn_arg(options.changed_since.as_ref(), "changedSince")?,
        verify_checksums: options.verify_checksums,
        backup_start: optional_lsn_arg(options.backup_start.as_ref(), "backupStart")?,
    })
}

/// One entry per extent in `pages`, `flags` and `max_lsn`; `ids` holds 32 bytes per extent,
/// zero where the extent has no id (flag 4 clear).
#[napi(object)]
pub struct ScannedChunk {
    pub pages: Uint8Array,
    /// Bit 0 changed, bit 1 all zero, bit 2 has an id.
    pub flags: Uint8Array,
    pub max_lsn: BigUint64Array,
    pub ids: Option<Buffer>,
    pub checksum_failures: Vec<ChecksumFailure>,
}

fn pack(scan: ChunkScan, ids: Option<Vec<Option<ExtentId>>>) -> ScannedChunk {
    let count = scan.extents.len();
    let mut pages = Vec::with_capacity(count);
    let mut flags = Vec::with_capacity(count);
    let mut max_lsn = Vec::with_capacity(count);
    for (i, e) in scan.extents.iter().enumerate() {
        let has_id = ids.as_ref().is_some_and(|ids| ids[i].is_some());
        // At most 16 pages per extent.
        pages.push(e.pages as u8);
        flags.push(
            if e.changed { FLAG_CHANGED } else { 0 }
                | if e.all_zero { FLAG_ALL_ZERO } else { 0 }
                | if has_id { FLAG_HAS_ID } else { 0 },
        );
        max_lsn.push(e.max_lsn);
    }
    let ids = ids.map(|ids| {
        let mut packed = vec![0u8; count * ID_BYTES];
        for (slot, id) in packed.chunks_exact_mut(ID_BYTES).zip(ids) {
            if let Some(id) = id {
                slot.copy_from_slice(&id);
            }
        }
        Buffer::from(packed)
    });
    ScannedChunk {
        pages: Uint8Array::new(pages),
        flags: Uint8Array::new(flags),
        max_lsn: BigUint64Array::new(max_lsn),
        ids,
        checksum_failures: scan
            .checksum_failures
            .into_iter()
            .map(ChecksumFailure::from)
            .collect(),
    }
}

pub struct ScanChunk {
    chunk: Buffer,
    options: ScanOptions,
    key: Option<Buffer>,
}

impl Task for ScanChunk {
    type Output = (ChunkScan, Option<Vec<Option<ExtentId>>>);
    type JsValue = ScannedChunk;

    fn compute(&mut self) -> Result<Self::Output> {
        match &self.key {
            Some(key) => extent::scan_and_identify(&self.chunk, &self.options, key)
                .map(|identified| (identified.scan, Some(identified.ids))),
            None => extent::scan(&self.chunk, &self.options).map(|scan| (scan, None)),
        }
        .map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, (scan, ids): Self::Output) -> Result<Self::JsValue> {
        Ok(pack(scan, ids))
    }
}

/// Scans a chunk of a relation segment file extent by extent (LSNs, zero pages, checksums).
#[napi(ts_return_type = "Promise<ScannedChunk>")]
pub fn scan_extents(chunk: Buffer, options: ChunkScanOptions) -> Result<AsyncTask<ScanChunk>> {
    Ok(AsyncTask::new(ScanChunk {
        chunk,
        options: scan_options(&options)?,
        key: None,
    }))
}

/// `scan_extents` plus the keyed BLAKE3 id of every changed, not all-zero extent, in one pass.
#[napi(ts_return_type = "Promise<ScannedChunk>")]
pub fn scan_and_identify_extents(
    chunk: Buffer,
    options: ChunkScanOptions,
    key: Buffer,
) -> Result<AsyncTask<ScanChunk>> {
    Ok(AsyncTask::new(ScanChunk {
        chunk,
        options: scan_options(&options)?,
        key: Some(key),
    }))
}

pub struct ExtentIds {
    data: Buffer,
    key: Buffer,
}

impl Task for ExtentIds {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Self::Output> {
        let ids = extent::ids(&self.data, &self.key).map_err(to_napi)?;
        Ok(ids.concat())
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(Buffer::from(output))
    }
}

/// Ids of every 128 KiB piece of `data`, 32 bytes each, concatenated.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn extent_ids(data: Buffer, key: Buffer) -> AsyncTask<ExtentIds> {
    AsyncTask::new(ExtentIds { data, key })
}

/// The id of one extent (small inputs; use `extent_ids` for bulk work).
#[napi]
pub fn extent_id(extent: &[u8], key: &[u8]) -> Result<Buffer> {
    let id = extent::id(extent, key).map_err(to_napi)?;
    Ok(Buffer::from(id.to_vec()))
}

pub struct DecompressIdentified {
    packed: Buffer,
    frame_bounds: Vec<(usize, usize)>,
    ids: Buffer,
    key: Buffer,
    out: Buffer,
}

/// What [`decompress_identified_extents_into`] wrote: per extent, its length and the CRC-32C its
/// bytes were checked against (restore builds each file's manifest checksum from these).
#[napi(object)]
pub struct IdentifiedExtents {
    pub lengths: Uint32Array,
    #[napi(js_name = "crc32c")]
    pub crc32c: Uint32Array,
}

impl Task for DecompressIdentified {
    type Output = Vec<FrameHeader>;
    type JsValue = IdentifiedExtents;

    fn compute(&mut self) -> Result<Self::Output> {
        let frames: Vec<&[u8]> = self
            .frame_bounds
            .iter()
            .map(|&(start, end)| &self.packed[start..end])
            .collect();
        extent::decompress_identified_into(&frames, &self.ids, &self.key, &mut self.out)
            .map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, headers: Self::Output) -> Result<Self::JsValue> {
        Ok(IdentifiedExtents {
            // Each extent fits in `out`, a JavaScript buffer: below 4 GiB.
            lengths: Uint32Array::new(headers.iter().map(|h| h.raw_length as u32).collect()),
            crc32c: Uint32Array::new(headers.iter().map(|h| h.raw_crc32c).collect()),
        })
    }
}

/// Decompresses the frames of `packed` that `frame_bounds` names (offset and length pairs, one
/// per frame) end to end into `out`, and checks each against its id (`ids`: 32 bytes per frame,
/// end to end). One buffer and one array cross instead of a buffer per frame.
#[napi(ts_return_type = "Promise<IdentifiedExtents>")]
pub fn decompress_identified_extents_into(
    packed: Buffer,
    frame_bounds: Uint32Array,
    ids: Buffer,
    key: Buffer,
    out: Buffer,
) -> Result<AsyncTask<DecompressIdentified>> {
    if !frame_bounds.len().is_multiple_of(2) {
        return Err(invalid_argument(format!(
            "frame bounds come in offset and length pairs, got {} numbers",
            frame_bounds.len()
        )));
    }
    let frame_bounds = frame_bounds
        .chunks_exact(2)
        .map(|pair| {
            let start = pair[0] as usize;
            let end = start + pair[1] as usize;
            if end > packed.len() {
                return Err(invalid_argument(format!(
                    "a frame at {start}..{end} lies past the {} bytes given",
                    packed.len()
                )));
            }
            Ok((start, end))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AsyncTask::new(DecompressIdentified {
        packed,
        frame_bounds,
        ids,
        key,
        out,
    }))
}
