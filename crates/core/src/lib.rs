//! The byte-level core of pgforever: PostgreSQL pages and their checksums, extents (change
//! detection and ids), zstd frames and WAL parsing. No I/O on repositories, no configuration.

pub mod checksum;
pub mod error;
pub mod extent;
pub mod frame;
pub mod page;
pub mod wal;

pub use error::{CoreError, ErrorCode, Result};
