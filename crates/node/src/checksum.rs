use napi_derive::napi;
use pgforever_core::checksum;

/// Extends a CRC-32C over `data`; synchronous because hardware CRC runs at tens of GB/s.
#[napi(js_name = "crc32cAppend")]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    checksum::crc32c_append(crc, data)
}

/// The CRC-32C of two pieces back to back, from each one's CRC and the second's length.
#[napi(js_name = "crc32cCombine")]
pub fn crc32c_combine(first: u32, second: u32, second_length: u32) -> u32 {
    checksum::crc32c_combine(first, second, second_length as usize)
}
