use std::fmt;

/// Stable codes: they cross the napi boundary as a `CODE: message` prefix and the TypeScript
/// facade maps them onto the project's error type, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A buffer whose length does not fit what the call needs (not a multiple of the page size, ...).
    BufferLength,
    /// An argument outside its domain (a key of the wrong length, a level zstd does not accept, ...).
    InvalidArgument,
    /// A page header that cannot belong to a PostgreSQL page of this layout.
    PageHeader,
    /// A frame whose magic, header or checksum is wrong: the stored bytes are damaged.
    FrameCorrupt,
    /// A frame cut short.
    FrameTruncated,
    /// A frame written by a newer format version than this build reads.
    FrameVersion,
    /// zstd itself failed.
    Compression,
    /// WAL that is not valid for what the call expects (magic, identifiers, headers).
    WalInvalid,
    /// A WAL record whose CRC-32C does not match.
    WalCrc,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BufferLength => "BUFFER_LENGTH",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::PageHeader => "PAGE_HEADER",
            ErrorCode::FrameCorrupt => "FRAME_CORRUPT",
            ErrorCode::FrameTruncated => "FRAME_TRUNCATED",
            ErrorCode::FrameVersion => "FRAME_VERSION",
            ErrorCode::Compression => "COMPRESSION",
            ErrorCode::WalInvalid => "WAL_INVALID",
            ErrorCode::WalCrc => "WAL_CRC",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CoreError {
    pub code: ErrorCode,
    pub message: String,
}

impl CoreError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CoreError {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
