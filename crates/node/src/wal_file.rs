//! A whole WAL segment file pushed in one call: mapped rather than read, summarised (unless the
//! summary is left for later), its trailing zeros cut, compressed into a frame and its tail copied
//! out for the next segment's summary. And a segment file summarised later the same way.
//!
//! Mapping instead of `pread` saves copying 16 MiB from the page cache into the process and the
//! fresh memory that copy needs (a page fault per 4 KiB on a VM whose host reclaims free pages):
//! the archive daemon went from 38-46 to 33-37 ms of CPU a pgbench-WAL segment.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgforever_core::wal::{self, SegmentContext};
use pgforever_core::{frame, CoreError, ErrorCode};

use crate::error::{invalid_argument, to_napi};
use crate::wal::{convert, segment_context, WalSegmentContext, WalSegmentSummary};

/// Bytes of the file's start returned for the long page header checks (the header is 40).
const HEAD_BYTES: usize = 64;

/// What identifies a file's content without reading it, as Node's `BigIntStats` names it.
#[napi(object)]
pub struct WalFileStat {
    pub size: BigInt,
    pub dev: BigInt,
    pub ino: BigInt,
    pub mtime_ns: BigInt,
    pub ctime_ns: BigInt,
}

#[napi(object)]
pub struct EncodedWalSegment {
    /// The file's identity, the same before and after it was read.
    pub stat: WalFileStat,
    /// The file's first bytes (its long page header).
    pub head: Buffer,
    /// Where the trailing zeros start: the frame holds the bytes before.
    pub zero_from: u32,
    /// Length of the frame written at the start of `room`; 0 when the file is not a whole segment.
    pub frame_length: u32,
    pub summary: Option<WalSegmentSummary>,
    /// Why there is no summary when one was asked for (`CODE: message`).
    pub summary_error: Option<String>,
}

#[derive(PartialEq, Eq)]
pub struct Identity {
    size: u64,
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(file: &File) -> std::io::Result<Identity> {
        let m = file.metadata()?;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Ok(Identity {
            size: m.size(),
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }
}

pub struct Encoded {
    identity: Identity,
    head: Vec<u8>,
    zero_from: usize,
    frame_length: usize,
    /// None when the caller did not ask for one.
    summary: Option<std::result::Result<wal::SegmentSummary, CoreError>>,
}

pub struct EncodeWalSegmentFile {
    fd: i32,
    path: String,
    context: SegmentContext,
    level: i32,
    summarize: bool,
    previous: Option<Buffer>,
    room: Buffer,
    tail: Option<Buffer>,
}

fn io_failure(path: &str, err: std::io::Error) -> Error {
    to_napi(CoreError::new(
        ErrorCode::WalInvalid,
        format!("cannot read {path}: {err}; nothing was archived (PostgreSQL retries)"),
    ))
}

impl Task for EncodeWalSegmentFile {
    type Output = Encoded;
    type JsValue = EncodedWalSegment;

    fn compute(&mut self) -> Result<Self::Output> {
        // The descriptor belongs to the JavaScript caller, which keeps it open until this resolves.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(self.fd) });
        let before = Identity::of(&file).map_err(|e| io_failure(&self.path, e))?;
        let whole_segment = before.size == u64::from(self.context.segment_size);
        let mut encoded = Encoded {
            identity: before,
            head: Vec::new(),
            zero_from: 0,
            frame_length: 0,
            summary: None,
        };
        if encoded.identity.size == 0 {
            return Ok(encoded);
        }
        let read_length = if whole_segment {
            self.context.segment_size as usize
        } else {
            HEAD_BYTES.min(encoded.identity.size as usize)
        };
        let bytes = file_bytes(&file, &self.path, read_length)?;
        encoded.head = bytes[..bytes.len().min(HEAD_BYTES)].to_vec();
        if whole_segment {
            if self.summarize {
                encoded.summary = Some(summarize(&bytes, &self.context, self.previous.as_deref()));
            }
            encoded.zero_from = wal::zero_tail_start(&bytes);
            let stored = &bytes[..encoded.zero_from];
            let level = wal::compression_level(stored, self.level).map_err(to_napi)?;
            encoded.frame_length =
                frame::compress_into(stored, level, &mut self.room).map_err(to_napi)?;
            if let Some(tail) = self.tail.as_mut() {
                let length = tail.len().min(bytes.len());
                tail[..length].copy_from_slice(&bytes[bytes.len() - length..]);
            }
        } else if self.summarize {
            encoded.summary = Some(Err(CoreError::new(
                ErrorCode::WalInvalid,
                "not a whole segment".to_owned(),
            )));
        }
        drop(bytes);
        unchanged_since(&file, &self.path, &encoded.identity)?;
        Ok(encoded)
    }

    fn resolve(&mut self, _env: Env, encoded: Self::Output) -> Result<Self::JsValue> {
        let (summary, summary_error) = summary_fields(encoded.summary);
        Ok(EncodedWalSegment {
            stat: stat_of(&encoded.identity),
            head: Buffer::from(encoded.head),
            // A segment is at most 1 GiB, and so is its frame (frame::MAX_RAW_BYTES).
            zero_from: encoded.zero_from as u32,
            frame_length: encoded.frame_length as u32,
            summary,
            summary_error,
        })
    }
}

/// A file's bytes: mapped, or read where the filesystem cannot map files.
enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Read(buffer) => buffer,
        }
    }
}

/// The file's bytes, mapped; the first `read_length` of them when it cannot be mapped.
fn file_bytes(file: &File, path: &str, read_length: usize) -> Result<FileBytes> {
    // SAFETY: PostgreSQL writes a segment whole before it marks it ready and neither truncates
    // nor rewrites it until it is archived (afterwards it renames or removes it, which leaves a
    // mapping intact); a change during the read is caught by comparing the file's identity before
    // and after. A truncation meanwhile would end this process with SIGBUS before anything is
    // marked archived: PostgreSQL asks again.
    match unsafe { memmap2::MmapOptions::new().populate().map(file) } {
        Ok(map) => Ok(FileBytes::Mapped(map)),
        Err(_) => {
            let mut buffer = vec![0u8; read_length];
            file.read_exact_at(&mut buffer, 0)
                .map_err(|e| io_failure(path, e))?;
            Ok(FileBytes::Read(buffer))
        }
    }
}

/// WAL_INVALID when the file's identity is no longer `before`.
fn unchanged_since(file: &File, path: &str, before: &Identity) -> Result<()> {
    let after = Identity::of(file).map_err(|e| io_failure(path, e))?;
    if after != *before {
        return Err(to_napi(CoreError::new(
            ErrorCode::WalInvalid,
            format!(
                "{path} changed while it was being read; nothing was archived (PostgreSQL retries)"
            ),
        )));
    }
    Ok(())
}

fn summarize(
    bytes: &[u8],
    context: &SegmentContext,
    previous: Option<&[u8]>,
) -> std::result::Result<wal::SegmentSummary, CoreError> {
    match previous {
        Some(previous) => wal::summarize_segment_with_previous(bytes, context, previous),
        None => wal::summarize_segment(bytes, context),
    }
}

fn summary_fields(
    summary: Option<std::result::Result<wal::SegmentSummary, CoreError>>,
) -> (Option<WalSegmentSummary>, Option<String>) {
    match summary {
        Some(Ok(summary)) => (Some(convert(summary)), None),
        Some(Err(err)) => (None, Some(err.to_string())),
        None => (None, None),
    }
}

fn stat_of(id: &Identity) -> WalFileStat {
    WalFileStat {
        size: BigInt::from(id.size),
        dev: BigInt::from(id.dev),
        ino: BigInt::from(id.ino),
        mtime_ns: BigInt::from(id.mtime_ns),
        ctime_ns: BigInt::from(id.ctime_ns),
    }
}

/// Reads the WAL segment file open at `fd` (its path for messages) by mapping it, and, when it is
/// a whole segment of `context`: summarises it when `encoding.summarize` (`previous` as for
/// `summarize_wal_segment`; a failure is returned as `summaryError`, not thrown), compresses it
/// without its trailing zeros into one frame at `encoding.level` at the start of `room`
/// (at least `frameBound(segmentSize)` long), and copies its last `tail.length` bytes into
/// `tail`. WAL_INVALID when the file changed while it was read. The caller checks the header
/// (`head`) before storing anything.
#[napi(ts_return_type = "Promise<EncodedWalSegment>")]
pub fn encode_wal_segment_file(
    fd: i32,
    path: String,
    context: WalSegmentContext,
    encoding: WalSegmentEncoding,
    previous: Option<Buffer>,
    room: Buffer,
    tail: Option<Buffer>,
) -> Result<AsyncTask<EncodeWalSegmentFile>> {
    let context = segment_context(&context)?;
    let needed = frame::frame_bound(context.segment_size as usize);
    if room.len() < needed {
        return Err(invalid_argument(format!(
            "a segment's frame needs {needed} bytes of room, {} given",
            room.len()
        )));
    }
    Ok(AsyncTask::new(EncodeWalSegmentFile {
        fd,
        path,
        context,
        level: encoding.level,
        summarize: encoding.summarize,
        previous,
        room,
        tail,
    }))
}

#[napi(object)]
pub struct WalSegmentEncoding {
    /// zstd level (or -1, see `wal::compression_level`).
    pub level: i32,
    /// Summarise the segment now (else it is left for later).
    pub summarize: bool,
}

#[napi(object)]
pub struct SummarizedWalSegmentFile {
    /// The file's identity, the same before and after it was read.
    pub stat: WalFileStat,
    pub summary: Option<WalSegmentSummary>,
    /// Why there is no summary (`CODE: message`).
    pub summary_error: Option<String>,
}

pub struct SummarizeWalSegmentFile {
    fd: i32,
    path: String,
    context: SegmentContext,
    previous: Option<Buffer>,
}

impl Task for SummarizeWalSegmentFile {
    type Output = (
        Identity,
        std::result::Result<wal::SegmentSummary, CoreError>,
    );
    type JsValue = SummarizedWalSegmentFile;

    fn compute(&mut self) -> Result<Self::Output> {
        // The descriptor belongs to the JavaScript caller, which keeps it open until this resolves.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(self.fd) });
        let before = Identity::of(&file).map_err(|e| io_failure(&self.path, e))?;
        let length = self.context.segment_size as usize;
        if before.size != length as u64 {
            return Err(to_napi(CoreError::new(
                ErrorCode::WalInvalid,
                format!(
                    "{} is {} bytes, not a whole segment",
                    self.path, before.size
                ),
            )));
        }
        let bytes = file_bytes(&file, &self.path, length)?;
        let summary = summarize(&bytes, &self.context, self.previous.as_deref());
        drop(bytes);
        unchanged_since(&file, &self.path, &before)?;
        Ok((before, summary))
    }

    fn resolve(&mut self, _env: Env, (identity, summary): Self::Output) -> Result<Self::JsValue> {
        let (summary, summary_error) = summary_fields(Some(summary));
        Ok(SummarizedWalSegmentFile {
            stat: stat_of(&identity),
            summary,
            summary_error,
        })
    }
}

/// Summarises the whole-segment file open at `fd` (its path for messages) by mapping it:
/// `encode_wal_segment_file`'s summary, for a segment pushed without one. `previous` as for
/// `summarize_wal_segment`; a summary failure is returned as `summaryError`. WAL_INVALID when the
/// file is not a whole segment of `context` or changed while it was read.
#[napi(ts_return_type = "Promise<SummarizedWalSegmentFile>")]
pub fn summarize_wal_segment_file(
    fd: i32,
    path: String,
    context: WalSegmentContext,
    previous: Option<Buffer>,
) -> Result<AsyncTask<SummarizeWalSegmentFile>> {
    Ok(AsyncTask::new(SummarizeWalSegmentFile {
        fd,
        path,
        context: segment_context(&context)?,
        previous,
    }))
}
