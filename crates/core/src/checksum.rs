//! CRC-32C of whole files, built up chunk by chunk, as PostgreSQL's backup manifests record them.

/// Extends `crc` (0 for the start of a file) over `data`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// The CRC-32C of two pieces back to back from each one's CRC and the second's length: pieces
/// of one file restored out of order still give the file's checksum.
pub fn crc32c_combine(first: u32, second: u32, second_length: usize) -> u32 {
    crc32c::crc32c_combine(first, second, second_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_in_pieces_equals_one_pass() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = crc32c_append(0, &data);
        let pieces = data.chunks(777).fold(0, crc32c_append);
        assert_eq!(whole, pieces);
        // The check value of CRC-32C (Castagnoli).
        assert_eq!(crc32c_append(0, b"123456789"), 0xE306_9283);
        let (head, tail) = data.split_at(40_000);
        assert_eq!(
            crc32c_combine(crc32c_append(0, head), crc32c_append(0, tail), tail.len()),
            whole
        );
    }
}
