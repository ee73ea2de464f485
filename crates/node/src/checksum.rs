use napi::Result;
use napi_derive::napi;
use pgforever_core::checksum;

use crate::error::invalid_argument;

/// Extends a CRC-32C over `data`; synchronous because hardware CRC runs at tens of GB/s.
#[napi(js_name = "crc32cAppend")]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    checksum::crc32c_append(crc, data)
}

/// The CRC-32C of two pieces back to back, from each one's CRC and the second's length (a JS
/// number: a run of holes in a file may pass 4 GiB).
#[napi(js_name = "crc32cCombine")]
pub fn crc32c_combine(first: u32, second: u32, second_length: i64) -> Result<u32> {
    let length = usize::try_from(second_length).map_err(|_| {
        invalid_argument(format!("a length cannot be negative, got {second_length}"))
    })?;
    Ok(checksum::crc32c_combine(first, second, length))
}
