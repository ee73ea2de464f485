//! Self-describing zstd frames: how one extent or one WAL segment is stored.
//!
//! Layout (all integers little-endian), a 24-byte header then the payload:
//!
//! | bytes  | field                                                                 |
//! |--------|-----------------------------------------------------------------------|
//! | 0..4   | magic `PGFZ`                                                          |
//! | 4      | format version (1)                                                    |
//! | 5      | flags: bit 0 = payload is the raw bytes (zstd did not shrink them)    |
//! | 6      | zstd level, signed: written -1 or 1..=19, any value read              |
//! | 7      | reserved, 0                                                           |
//! | 8..12  | raw length                                                            |
//! | 12..16 | payload length                                                        |
//! | 16..20 | CRC-32C of the raw bytes                                              |
//! | 20..24 | CRC-32C of bytes 0..20                                                |
//!
//! The header has its own CRC so that a damaged length or flag is reported as damage before any
//! allocation or decompression depends on it, and [`read_header`] can be trusted on its own.
//! Decoding checks everything and returns FRAME_CORRUPT / FRAME_TRUNCATED / FRAME_VERSION, never
//! bad data. Later versions must keep bytes 0..5 (magic and version) where they are.

use std::cell::RefCell;

use crate::checksum;
use crate::error::{CoreError, ErrorCode, Result};
use crate::extent::EXTENT_BYTES;

pub const MAGIC: [u8; 4] = *b"PGFZ";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 24;
pub const MIN_LEVEL: i32 = 1;
pub const MAX_LEVEL: i32 = 19;
/// zstd's first negative level: level 1's match finder without entropy coding of literals. Chosen
/// per WAL segment (see `wal::compression_level`), never for extents.
pub const FAST_LEVEL: i32 = -1;
/// The largest raw length a frame may claim: the largest WAL segment PostgreSQL allows (1 GiB).
pub const MAX_RAW_BYTES: usize = 1 << 30;

const FLAG_RAW: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_RAW;

/// A decoded, verified frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u8,
    /// The payload is the raw bytes, stored as is because zstd did not make them smaller.
    pub stored_raw: bool,
    pub level: i32,
    pub raw_length: usize,
    pub payload_length: usize,
    pub raw_crc32c: u32,
}

impl FrameHeader {
    /// Header plus payload: where the next frame starts when frames are laid end to end.
    pub fn frame_length(&self) -> usize {
        HEADER_BYTES + self.payload_length
    }
}

fn corrupt(message: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::FrameCorrupt, message)
}

fn u32_at(b: &[u8; HEADER_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads and verifies the header at the start of `bytes` (which may hold more than one frame),
/// without touching the payload.
pub fn read_header(bytes: &[u8]) -> Result<FrameHeader> {
    let magic_seen = &bytes[..bytes.len().min(MAGIC.len())];
    if magic_seen != &MAGIC[..magic_seen.len()] {
        return Err(corrupt("not a pgforever frame (bad magic)"));
    }
    let head: &[u8; HEADER_BYTES] = bytes
        .get(..HEADER_BYTES)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| {
            CoreError::new(
                ErrorCode::FrameTruncated,
                format!(
                    "a frame header is {HEADER_BYTES} bytes, only {} present",
                    bytes.len()
                ),
            )
        })?;
    let version = head[4];
    if version == 0 {
        return Err(corrupt("frame header damaged (version 0)"));
    }
    if version != FORMAT_VERSION {
        return Err(CoreError::new(
            ErrorCode::FrameVersion,
            format!(
                "frame format version {version}, this build reads version {FORMAT_VERSION}: written by a newer pgforever (upgrade) or damaged"
            ),
        ));
    }
    if checksum::crc32c(&head[..20]) != u32_at(head, 20) {
        return Err(corrupt("frame header checksum mismatch"));
    }
    let flags = head[5];
    if flags & !KNOWN_FLAGS != 0 || head[7] != 0 {
        return Err(CoreError::new(
            ErrorCode::FrameVersion,
            format!(
                "frame uses features this build does not know (flags {flags:#04x}); upgrade pgforever"
            ),
        ));
    }
    let header = FrameHeader {
        version,
        stored_raw: flags & FLAG_RAW != 0,
        // Any level: zstd decodes what every level wrote, and the header CRC already vouches for the
        // byte. A later pgforever may write levels this one never does.
        level: i32::from(head[6] as i8),
        raw_length: u32_at(head, 8) as usize,
        payload_length: u32_at(head, 12) as usize,
        raw_crc32c: u32_at(head, 16),
    };
    if header.raw_length > MAX_RAW_BYTES {
        return Err(corrupt(format!(
            "frame claims {} raw bytes, more than any extent or WAL segment",
            header.raw_length
        )));
    }
    if header.stored_raw && header.payload_length != header.raw_length {
        return Err(corrupt(
            "raw-stored frame whose payload and raw lengths differ",
        ));
    }
    Ok(header)
}

fn check_level(level: i32) -> Result<()> {
    if level == FAST_LEVEL || (MIN_LEVEL..=MAX_LEVEL).contains(&level) {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("zstd level {level} is not {FAST_LEVEL} or {MIN_LEVEL}..={MAX_LEVEL}"),
        ))
    }
}

thread_local! {
    // zstd contexts are costly to set up relative to one 128 KiB extent; each libuv worker keeps
    // its own and reuses it across calls.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Inputs up to this size (extents), and inputs of any size at levels up to
/// [`REUSED_CONTEXT_MAX_LEVEL`] (WAL segments), reuse the worker thread's zstd context: a fresh
/// one is fresh memory, which a VM whose host reclaims free pages pays for in page faults. Larger
/// inputs at higher levels get a fresh context, so that an idle worker does not keep the large
/// tables a high level allocates for a big input.
const REUSED_CONTEXT_MAX_INPUT: usize = 1 << 20;
const REUSED_CONTEXT_MAX_LEVEL: i32 = 3;

fn new_compressor(level: i32) -> Result<zstd::bulk::Compressor<'static>> {
    zstd::bulk::Compressor::new(level).map_err(|e| zstd_error("context", e))
}

fn zstd_error(what: &str, err: std::io::Error) -> CoreError {
    CoreError::new(ErrorCode::Compression, format!("zstd {what}: {err}"))
}

/// How many bytes zstd makes of `raw` at `level`, with this thread's context: for choosing a level
/// on a sample before compressing the whole.
pub fn compressed_length(raw: &[u8], level: i32) -> Result<usize> {
    check_level(level)?;
    check_raw_length(raw)?;
    let mut out = Vec::new();
    reserve(&mut out, zstd::zstd_safe::compress_bound(raw.len()))?;
    zstd_compress(raw, level, &mut out)
}

/// Compresses `raw` (at most [`MAX_RAW_BYTES`]) into one frame at zstd `level` (-1 or 1..=19).
pub fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    check_level(level)?;
    let mut frame = Vec::new();
    compress_append(raw, level, &mut frame)?;
    Ok(frame)
}

/// The longest frame `raw_length` bytes can make: the room [`compress_into`] needs.
pub fn frame_bound(raw_length: usize) -> usize {
    HEADER_BYTES + zstd::zstd_safe::compress_bound(raw_length)
}

/// Compresses `raw` into one frame at the start of `out`, which must hold [`frame_bound`] bytes,
/// and returns the frame's length. For callers that reuse one output buffer from call to call.
pub fn compress_into(raw: &[u8], level: i32, out: &mut [u8]) -> Result<usize> {
    check_level(level)?;
    check_raw_length(raw)?;
    let bound = frame_bound(raw.len());
    if out.len() < bound {
        return Err(CoreError::new(
            ErrorCode::BufferLength,
            format!(
                "a frame of {} raw bytes needs {bound} bytes of room, {} given",
                raw.len(),
                out.len()
            ),
        ));
    }
    let (head, body) = out.split_at_mut(HEADER_BYTES);
    let compressed = zstd_compress(raw, level, body)?;
    let stored_raw = compressed >= raw.len();
    let payload_length = if stored_raw {
        body[..raw.len()].copy_from_slice(raw);
        raw.len()
    } else {
        compressed
    };
    write_header(head, raw, level, stored_raw, payload_length);
    Ok(HEADER_BYTES + payload_length)
}

fn check_raw_length(raw: &[u8]) -> Result<()> {
    if raw.len() > MAX_RAW_BYTES {
        return Err(CoreError::new(
            ErrorCode::BufferLength,
            format!(
                "{} bytes is more than one frame holds ({MAX_RAW_BYTES})",
                raw.len()
            ),
        ));
    }
    Ok(())
}

/// zstd's compression of `raw` into `out`, with the thread's context when it may be reused.
fn zstd_compress<C: zstd::zstd_safe::WriteBuf + ?Sized>(
    raw: &[u8],
    level: i32,
    out: &mut C,
) -> Result<usize> {
    let compress = |compressor: &mut zstd::bulk::Compressor<'static>, out: &mut C| {
        compressor
            .compress_to_buffer(raw, out)
            .map_err(|e| zstd_error("compression", e))
    };
    if raw.len() > REUSED_CONTEXT_MAX_INPUT && level > REUSED_CONTEXT_MAX_LEVEL {
        return new_compressor(level).and_then(|mut compressor| compress(&mut compressor, out));
    }
    COMPRESSOR.with(|cell| -> Result<usize> {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some((current, compressor)) => {
                if *current != level {
                    compressor
                        .set_compression_level(level)
                        .map_err(|e| zstd_error("level", e))?;
                    *current = level;
                }
                compressor
            }
            empty => &mut empty.insert((level, new_compressor(level)?)).1,
        };
        compress(compressor, out)
    })
}

/// Appends the frame for `raw` to `out` (the level is already checked).
fn compress_append(raw: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    check_raw_length(raw)?;
    let start = out.len();
    reserve(out, frame_bound(raw.len()))?;
    out.resize(start + HEADER_BYTES, 0);
    // Writes into the reserved room after the header, without zero-filling it first.
    let compressed = match zstd_compress(raw, level, &mut after(out, start + HEADER_BYTES)) {
        Ok(compressed) => compressed,
        Err(err) => {
            out.truncate(start);
            return Err(err);
        }
    };
    let stored_raw = compressed >= raw.len();
    if stored_raw {
        out.truncate(start + HEADER_BYTES);
        out.extend_from_slice(raw);
    }
    let payload_length = out.len() - start - HEADER_BYTES;
    write_header(
        &mut out[start..start + HEADER_BYTES],
        raw,
        level,
        stored_raw,
        payload_length,
    );
    Ok(())
}

/// The header of a frame of `raw` (`head` is HEADER_BYTES long; the level is already checked).
fn write_header(head: &mut [u8], raw: &[u8], level: i32, stored_raw: bool, payload_length: usize) {
    head[..4].copy_from_slice(&MAGIC);
    head[4] = FORMAT_VERSION;
    head[5] = if stored_raw { FLAG_RAW } else { 0 };
    head[6] = level as i8 as u8;
    head[7] = 0;
    // Both lengths are at most MAX_RAW_BYTES (raw checked above; payload <= raw).
    head[8..12].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    head[12..16].copy_from_slice(&(payload_length as u32).to_le_bytes());
    head[16..20].copy_from_slice(&checksum::crc32c(raw).to_le_bytes());
    let header_crc = checksum::crc32c(&head[..20]);
    head[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

/// Decodes exactly one frame (`frame` holds it and nothing else) and returns the raw bytes,
/// verified against the recorded length and CRC-32C.
pub fn decompress(frame: &[u8]) -> Result<Vec<u8>> {
    let header = read_whole(frame)?;
    let mut raw = Vec::new();
    decompress_append(frame, &header, &mut raw)?;
    Ok(raw)
}

/// The header of `frame`, checked to describe exactly the bytes of `frame`.
fn read_whole(frame: &[u8]) -> Result<FrameHeader> {
    let header = read_header(frame)?;
    let payload = frame.len() - HEADER_BYTES;
    if payload < header.payload_length {
        return Err(CoreError::new(
            ErrorCode::FrameTruncated,
            format!(
                "frame payload is {} bytes, only {payload} present",
                header.payload_length
            ),
        ));
    }
    if payload > header.payload_length {
        return Err(corrupt(format!(
            "{} bytes follow the frame's payload",
            payload - header.payload_length
        )));
    }
    Ok(header)
}

/// Appends the raw bytes of `frame` (whose header is `header`) to `out`, leaving `out` as it was
/// on error.
fn decompress_append(frame: &[u8], header: &FrameHeader, out: &mut Vec<u8>) -> Result<()> {
    let payload = &frame[HEADER_BYTES..];
    let start = out.len();
    reserve(out, header.raw_length)?;
    if header.stored_raw {
        out.extend_from_slice(payload);
    } else {
        // Bytes that are not one zstd frame of at most raw_length bytes fail here.
        let written = zstd_decompress(payload, &mut after(out, start));
        let problem = match written {
            Ok(written) if written == header.raw_length => None,
            Ok(written) => Some(corrupt(format!(
                "frame payload decompresses to {written} bytes, header says {}",
                header.raw_length
            ))),
            Err(err) => Some(err),
        };
        if let Some(err) = problem {
            out.truncate(start);
            return Err(err);
        }
    }
    if checksum::crc32c(&out[start..]) != header.raw_crc32c {
        out.truncate(start);
        return Err(corrupt("frame contents fail their CRC-32C"));
    }
    Ok(())
}

/// One zstd payload into `out`, with this thread's reused decompression context.
fn zstd_decompress<C: zstd::zstd_safe::WriteBuf + ?Sized>(
    payload: &[u8],
    out: &mut C,
) -> Result<usize> {
    DECOMPRESSOR.with(|cell| -> Result<usize> {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            empty => {
                empty.insert(zstd::bulk::Decompressor::new().map_err(|e| zstd_error("context", e))?)
            }
        };
        decompressor
            .decompress_to_buffer(payload, out)
            .map_err(|e| corrupt(format!("frame payload does not decompress: {e}")))
    })
}

/// A zstd output buffer over the spare capacity of `out` from `at` (its current length) on;
/// zstd sets the length to what it wrote.
fn after(out: &mut Vec<u8>, at: usize) -> std::io::Cursor<&mut Vec<u8>> {
    let mut cursor = std::io::Cursor::new(out);
    cursor.set_position(at as u64);
    cursor
}

/// Room for `additional` more bytes, as an error rather than an abort when frames claim more
/// than memory holds.
fn reserve(out: &mut Vec<u8>, additional: usize) -> Result<()> {
    out.try_reserve_exact(additional).map_err(|_| {
        CoreError::new(
            ErrorCode::BufferLength,
            format!("frames claim {additional} raw bytes, more than can be allocated"),
        )
    })
}

/// Results of a batch call laid end to end in one allocation, with each one's length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub lengths: Vec<usize>,
}

impl Batch {
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.lengths.iter().scan(0, |at, &len| {
            let piece = self.bytes.get(*at..*at + len);
            *at += len;
            piece
        })
    }

    fn push_with(&mut self, append: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        let before = self.bytes.len();
        append(&mut self.bytes)?;
        self.lengths.push(self.bytes.len() - before);
        Ok(())
    }
}

/// [`compress`] for many buffers at once (one crossing from JavaScript for a batch).
pub fn compress_many(raws: &[&[u8]], level: i32) -> Result<Batch> {
    check_level(level)?;
    let mut batch = Batch::default();
    for raw in raws {
        batch.push_with(|out| compress_append(raw, level, out))?;
    }
    Ok(batch)
}

/// Frames for the extents of `chunk` (cut into 128 KiB extents as in the scan) whose positions
/// are listed in `extents`, in that order.
pub fn compress_extents(chunk: &[u8], extents: &[u32], level: i32) -> Result<Batch> {
    check_level(level)?;
    let count = chunk.len().div_ceil(EXTENT_BYTES);
    let mut batch = Batch::default();
    for &index in extents {
        let start = index as usize * EXTENT_BYTES;
        let extent = chunk
            .get(start..chunk.len().min(start + EXTENT_BYTES))
            .filter(|_| (index as usize) < count)
            .ok_or_else(|| {
                CoreError::new(
                    ErrorCode::InvalidArgument,
                    format!("extent {index} is past the chunk's {count} extents"),
                )
            })?;
        batch.push_with(|out| compress_append(extent, level, out))?;
    }
    Ok(batch)
}

/// Prefixes an error with the position of the frame in its batch.
fn at_frame(i: usize) -> impl Fn(CoreError) -> CoreError {
    move |err| CoreError::new(err.code, format!("frame {i}: {}", err.message))
}

/// Every frame's header, each checked to describe exactly its frame, before anything is decompressed.
fn whole_headers(frames: &[&[u8]]) -> Result<Vec<FrameHeader>> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| read_whole(frame).map_err(at_frame(i)))
        .collect()
}

/// [`decompress`] for many frames into one allocation; the first bad frame fails the batch,
/// named by its position. Every header is checked before anything is decompressed.
pub fn decompress_many(frames: &[&[u8]]) -> Result<Batch> {
    let headers = whole_headers(frames)?;
    let total = headers.iter().map(|h| h.raw_length).sum();
    let mut batch = Batch {
        bytes: Vec::new(),
        lengths: Vec::with_capacity(frames.len()),
    };
    reserve(&mut batch.bytes, total)?;
    for (i, (frame, header)) in frames.iter().zip(&headers).enumerate() {
        batch
            .push_with(|out| decompress_append(frame, header, out))
            .map_err(at_frame(i))?;
    }
    Ok(batch)
}

/// [`decompress_many`] into `out`, a buffer the caller reuses, instead of a new allocation: the
/// raw bytes end to end from its start, each handed to `check` (with its position) right after it
/// is decompressed, while it is still in cache. Returns each one's header: its raw length, and the
/// CRC-32C its bytes were checked against. The first error stops the batch (BufferLength when they
/// do not fit), and `out` may then hold part of them.
pub fn decompress_many_into_checked(
    frames: &[&[u8]],
    out: &mut [u8],
    mut check: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<Vec<FrameHeader>> {
    let headers = whole_headers(frames)?;
    let total: usize = headers.iter().map(|h| h.raw_length).sum();
    if total > out.len() {
        return Err(CoreError::new(
            ErrorCode::BufferLength,
            format!("frames hold {total} raw bytes, the buffer {}", out.len()),
        ));
    }
    let mut at = 0;
    for (i, (frame, header)) in frames.iter().zip(&headers).enumerate() {
        let Some(target) = out.get_mut(at..at + header.raw_length) else {
            return Err(CoreError::new(
                ErrorCode::BufferLength,
                "frames do not fit the buffer",
            ));
        };
        decompress_to_slice(frame, header, target).map_err(at_frame(i))?;
        check(i, target)?;
        at += header.raw_length;
    }
    Ok(headers)
}

/// The raw bytes of `frame` (whose header is `header`) into `out`, exactly `raw_length` long.
fn decompress_to_slice(frame: &[u8], header: &FrameHeader, out: &mut [u8]) -> Result<()> {
    let payload = frame.get(HEADER_BYTES..).unwrap_or_default();
    if header.stored_raw {
        if payload.len() != out.len() {
            return Err(corrupt(format!(
                "stored frame holds {} bytes, header says {}",
                payload.len(),
                out.len()
            )));
        }
        out.copy_from_slice(payload);
    } else {
        let written = zstd_decompress(payload, out)?;
        if written != header.raw_length {
            return Err(corrupt(format!(
                "frame payload decompresses to {written} bytes, header says {}",
                header.raw_length
            )));
        }
    }
    if checksum::crc32c(out) != header.raw_crc32c {
        return Err(corrupt("frame contents fail their CRC-32C"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
