use napi::Result;
use napi_derive::napi;
use pgforever_core::checksum;

use crate::error::invalid_argument;

/// Extends a CRC-32C over `data`; synchronous because hardware CRC runs at tens of GB/s.
#[napi(js_name = "crc32cAppend")]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    checksum::crc32c_append(crc, data)
}

/// The CRC-32C of pieces back to back, from each one's CRC-32C (`crcs`) and length (`lengths`,
/// the same count): a file's manifest checksum from its extents' CRCs, in one call per file.
#[napi(js_name = "crc32cConcat")]
pub fn crc32c_concat(crcs: &[u32], lengths: &[u32]) -> Result<u32> {
    if crcs.len() != lengths.len() {
        return Err(invalid_argument(format!(
            "{} CRCs need as many lengths, got {}",
            crcs.len(),
            lengths.len()
        )));
    }
    Ok(checksum::crc32c_concat(
        crcs.iter()
            .zip(lengths)
            .map(|(&crc, &length)| (crc, u64::from(length))),
    ))
}
