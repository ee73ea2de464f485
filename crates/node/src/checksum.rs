use napi_derive::napi;
use pgforever_core::checksum;

/// Extends a CRC-32C over `data`; synchronous because hardware CRC runs at tens of GB/s.
#[napi(js_name = "crc32cAppend")]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    checksum::crc32c_append(crc, data)
}
