//! zstd frames, one at a time or in batches. Batches return one buffer of results laid end to
//! end with their lengths, which JavaScript cuts into views without copying.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgforever_core::frame;

use crate::error::to_napi;

#[napi(object)]
pub struct FrameHeader {
    pub version: u32,
    pub stored_raw: bool,
    pub level: i32,
    pub raw_length: u32,
    pub payload_length: u32,
    pub frame_length: u32,
    #[napi(js_name = "rawCrc32c")]
    pub raw_crc32c: u32,
}

/// The verified header of the frame at the start of `bytes`, without touching the payload.
#[napi]
pub fn read_frame_header(bytes: &[u8]) -> Result<FrameHeader> {
    let header = frame::read_header(bytes).map_err(to_napi)?;
    // Lengths are at most frame::MAX_RAW_BYTES (1 GiB) plus the header: they fit in u32.
    Ok(FrameHeader {
        version: header.version.into(),
        stored_raw: header.stored_raw,
        level: header.level,
        raw_length: header.raw_length as u32,
        payload_length: header.payload_length as u32,
        frame_length: header.frame_length() as u32,
        raw_crc32c: header.raw_crc32c,
    })
}

pub enum FrameWork {
    Compress { raw: Buffer, level: i32 },
    Decompress { frame: Buffer },
}

impl Task for FrameWork {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Self::Output> {
        match self {
            FrameWork::Compress { raw, level } => frame::compress(raw, *level),
            FrameWork::Decompress { frame } => frame::decompress(frame),
        }
        .map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(Buffer::from(output))
    }
}

/// One frame holding `raw` compressed at zstd `level` (1..=19).
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn compress_frame(raw: Buffer, level: i32) -> AsyncTask<FrameWork> {
    AsyncTask::new(FrameWork::Compress { raw, level })
}

/// The longest frame `raw_length` bytes can make: the room `encodeWalSegmentFile` needs.
#[napi]
pub fn frame_bound(raw_length: u32) -> u32 {
    // A frame holds at most frame::MAX_RAW_BYTES (1 GiB): its bound fits in u32.
    frame::frame_bound(raw_length as usize).min(u32::MAX as usize) as u32
}

/// The raw bytes of exactly one frame, verified.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn decompress_frame(frame: Buffer) -> AsyncTask<FrameWork> {
    AsyncTask::new(FrameWork::Decompress { frame })
}

#[napi(object)]
pub struct FrameBatch {
    /// The results end to end.
    pub data: Buffer,
    /// The length of each result in `data`, in order.
    pub lengths: Uint32Array,
}

pub enum BatchWork {
    Compress {
        raws: Vec<Buffer>,
        level: i32,
    },
    CompressExtents {
        chunk: Buffer,
        extents: Vec<u32>,
        level: i32,
    },
    Decompress {
        frames: Vec<Buffer>,
    },
}

impl Task for BatchWork {
    type Output = frame::Batch;
    type JsValue = FrameBatch;

    fn compute(&mut self) -> Result<Self::Output> {
        match self {
            BatchWork::Compress { raws, level } => {
                let raws: Vec<&[u8]> = raws.iter().map(|r| &r[..]).collect();
                frame::compress_many(&raws, *level)
            }
            BatchWork::CompressExtents {
                chunk,
                extents,
                level,
            } => frame::compress_extents(chunk, extents, *level),
            BatchWork::Decompress { frames } => {
                let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
                frame::decompress_many(&frames)
            }
        }
        .map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, batch: Self::Output) -> Result<Self::JsValue> {
        // Each piece is at most 1 GiB plus a header (frame::MAX_RAW_BYTES), so it fits in u32.
        let lengths: Vec<u32> = batch.lengths.iter().map(|&len| len as u32).collect();
        Ok(FrameBatch {
            data: Buffer::from(batch.bytes),
            lengths: Uint32Array::new(lengths),
        })
    }
}

/// One frame per buffer of `raws`, at zstd `level`.
#[napi(ts_return_type = "Promise<FrameBatch>")]
pub fn compress_frames(raws: Vec<Buffer>, level: i32) -> AsyncTask<BatchWork> {
    AsyncTask::new(BatchWork::Compress { raws, level })
}

/// One frame per listed extent (128 KiB pieces of `chunk`, by position).
#[napi(ts_return_type = "Promise<FrameBatch>")]
pub fn compress_extents(chunk: Buffer, extents: Vec<u32>, level: i32) -> AsyncTask<BatchWork> {
    AsyncTask::new(BatchWork::CompressExtents {
        chunk,
        extents,
        level,
    })
}

/// The raw bytes of each frame, verified; the first bad frame rejects the batch.
#[napi(ts_return_type = "Promise<FrameBatch>")]
pub fn decompress_frames(frames: Vec<Buffer>) -> AsyncTask<BatchWork> {
    AsyncTask::new(BatchWork::Decompress { frames })
}
