//! Buffers for direct I/O, whose address must be a multiple of the device's block size: JavaScript
//! cannot see an address, so it asks where in a buffer the first aligned one is.

use napi::Result;
use napi_derive::napi;

use crate::error::invalid_argument;

/// Bytes from the start of `data` to the first address that is a multiple of `alignment` (a power
/// of two).
#[napi]
pub fn alignment_offset(data: &[u8], alignment: u32) -> Result<u32> {
    if !alignment.is_power_of_two() {
        return Err(invalid_argument(format!(
            "an alignment is a power of two, got {alignment}"
        )));
    }
    let misalignment = data.as_ptr() as usize % alignment as usize;
    Ok(((alignment as usize - misalignment) % alignment as usize) as u32)
}
