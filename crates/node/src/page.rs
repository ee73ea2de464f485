//! Pages: header, checksum, PageIsVerified, and checksum verification of whole buffers.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pgforever_core::page::{self, PageVerdict};

use crate::error::{invalid_argument, to_napi};

/// A JavaScript bigint as an LSN: non-negative and below 2^64, else INVALID_ARGUMENT.
pub(crate) fn lsn_arg(value: &BigInt, what: &str) -> Result<u64> {
    match value.get_u64() {
        (false, lsn, true) => Ok(lsn),
        _ => Err(invalid_argument(format!(
            "{what} must be a bigint in 0..2^64"
        ))),
    }
}

pub(crate) fn optional_lsn_arg(value: Option<&BigInt>, what: &str) -> Result<Option<u64>> {
    value.map(|v| lsn_arg(v, what)).transpose()
}

fn whole_page(bytes: &[u8]) -> Result<&[u8; page::PAGE_SIZE]> {
    bytes.try_into().map_err(|_| {
        to_napi(pgforever_core::CoreError::new(
            pgforever_core::ErrorCode::BufferLength,
            format!("a page is {} bytes, got {}", page::PAGE_SIZE, bytes.len()),
        ))
    })
}

#[napi(object)]
pub struct PageHeader {
    pub lsn: BigInt,
    pub checksum: u32,
    pub flags: u32,
    pub lower: u32,
    pub upper: u32,
    pub special: u32,
    pub page_size: u32,
    pub layout_version: u32,
    pub prune_xid: u32,
}

/// The header of the page at the start of `page` (24 bytes are enough).
#[napi]
pub fn parse_page_header(page: &[u8]) -> Result<PageHeader> {
    let header = page::PageHeader::parse(page).map_err(to_napi)?;
    Ok(PageHeader {
        lsn: BigInt::from(header.lsn),
        checksum: header.checksum.into(),
        flags: header.flags.into(),
        lower: header.lower.into(),
        upper: header.upper.into(),
        special: header.special.into(),
        page_size: header.page_size.into(),
        layout_version: header.layout_version.into(),
        prune_xid: header.prune_xid,
    })
}

/// pg_checksum_page for one 8192-byte page at relation block `block`.
#[napi]
pub fn page_checksum(page: &[u8], block: u32) -> Result<u32> {
    Ok(page::checksum(whole_page(page)?, block).into())
}

#[napi(object)]
pub struct PageCheck {
    /// valid | all-zero | new-not-zero | bad-header | checksum-mismatch
    pub verdict: String,
    pub expected: Option<u32>,
    pub found: Option<u32>,
}

/// PageIsVerified for one page.
#[napi]
pub fn verify_page(page: &[u8], block: u32, checksums: bool) -> Result<PageCheck> {
    let verdict = page::verify(whole_page(page)?, block, checksums);
    let (name, expected, found) = match verdict {
        PageVerdict::Valid => ("valid", None, None),
        PageVerdict::AllZero => ("all-zero", None, None),
        PageVerdict::NewNotZero => ("new-not-zero", None, None),
        PageVerdict::BadHeader => ("bad-header", None, None),
        PageVerdict::ChecksumMismatch { expected, found } => (
            "checksum-mismatch",
            Some(expected.into()),
            Some(found.into()),
        ),
    };
    Ok(PageCheck {
        verdict: name.to_owned(),
        expected,
        found,
    })
}

#[napi(object)]
pub struct ChecksumFailure {
    pub block: u32,
    pub expected: u32,
    pub found: u32,
    pub lsn: BigInt,
}

impl From<page::ChecksumFailure> for ChecksumFailure {
    fn from(f: page::ChecksumFailure) -> Self {
        ChecksumFailure {
            block: f.block,
            expected: f.expected.into(),
            found: f.found.into(),
            lsn: BigInt::from(f.lsn),
        }
    }
}

pub struct VerifyChecksums {
    buffer: Buffer,
    first_block: u32,
    skip_from_lsn: Option<u64>,
}

impl Task for VerifyChecksums {
    type Output = Vec<page::ChecksumFailure>;
    type JsValue = Vec<ChecksumFailure>;

    fn compute(&mut self) -> Result<Self::Output> {
        page::verify_checksums(&self.buffer, self.first_block, self.skip_from_lsn).map_err(to_napi)
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(output.into_iter().map(ChecksumFailure::from).collect())
    }
}

/// Checksum failures among the pages of `buffer` (first page = relation block `first_block`),
/// skipping new pages and pages whose LSN is at or past `skip_from_lsn`.
#[napi(ts_return_type = "Promise<Array<ChecksumFailure>>")]
pub fn verify_checksums(
    buffer: Buffer,
    first_block: u32,
    skip_from_lsn: Option<BigInt>,
) -> Result<AsyncTask<VerifyChecksums>> {
    Ok(AsyncTask::new(VerifyChecksums {
        buffer,
        first_block,
        skip_from_lsn: optional_lsn_arg(skip_from_lsn.as_ref(), "skipFromLsn")?,
    }))
}
