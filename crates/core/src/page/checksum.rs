//! `pg_checksum_page` (PostgreSQL's src/include/storage/checksum_impl.h), bit for bit.
//!
//! The page is viewed as 64 rows of 32 little-endian u32 words. Each of the 32 columns is folded
//! into its own FNV-1a-like lane (`(sum ^ word) * PRIME ^ ((sum ^ word) >> 17)`) starting from a
//! fixed per-lane offset, then every lane gets two more rounds with a zero word, the lanes are
//! XORed together, the block number is XORed in and the result reduced to 1..=65535. The
//! pd_checksum field (bytes 8..10) counts as zero. The 32 independent lanes are what makes it
//! vectorise: the row loop below is written so that the compiler keeps the lanes in SIMD registers.

use super::PAGE_SIZE;

const LANES: usize = 32;
const ROW_BYTES: usize = LANES * 4;
const ROWS: usize = PAGE_SIZE / ROW_BYTES;
const FNV_PRIME: u32 = 16_777_619;

/// The per-lane starting values fixed by PostgreSQL's algorithm.
const LANE_OFFSETS: [u32; LANES] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

#[inline(always)]
fn mix(sum: u32, word: u32) -> u32 {
    let t = sum ^ word;
    t.wrapping_mul(FNV_PRIME) ^ (t >> 17)
}

#[inline(always)]
fn mix_row(sums: &mut [u32; LANES], row: &[u8; ROW_BYTES]) {
    for (lane, sum) in sums.iter_mut().enumerate() {
        let at = lane * 4;
        let word = u32::from_le_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]]);
        *sum = mix(*sum, word);
    }
}

#[inline(always)]
fn block_hash(page: &[u8; PAGE_SIZE]) -> u32 {
    let mut sums = LANE_OFFSETS;
    let mut first = [0u8; ROW_BYTES];
    first.copy_from_slice(&page[..ROW_BYTES]);
    first[8] = 0;
    first[9] = 0;
    mix_row(&mut sums, &first);
    for r in 1..ROWS {
        let mut row = [0u8; ROW_BYTES];
        row.copy_from_slice(&page[r * ROW_BYTES..(r + 1) * ROW_BYTES]);
        mix_row(&mut sums, &row);
    }
    for _ in 0..2 {
        for sum in sums.iter_mut() {
            *sum = mix(*sum, 0);
        }
    }
    sums.iter().fold(0, |acc, sum| acc ^ sum)
}

/// The baseline build: SSE2 on x86-64 has no 32-bit lane multiply, NEON on aarch64 does.
fn block_hash_portable(page: &[u8; PAGE_SIZE]) -> u32 {
    block_hash(page)
}

/// The same code compiled with AVX2, whose 8-lane `vpmulld` keeps the 32 lanes in 4 registers.
/// Chosen at run time so that prebuilt binaries stay runnable on any x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_hash_avx2(page: &[u8; PAGE_SIZE]) -> u32 {
    block_hash(page)
}

fn block_hash_dispatch(page: &[u8; PAGE_SIZE]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been checked to support AVX2.
            return unsafe { block_hash_avx2(page) };
        }
    }
    block_hash_portable(page)
}

/// `pg_checksum_page(page, block)`: the checksum PostgreSQL stores in pd_checksum for this page
/// at relation block number `block`. Meaningful only for initialised pages (pd_upper != 0).
pub fn checksum(page: &[u8; PAGE_SIZE], block: u32) -> u16 {
    let folded = block_hash_dispatch(page) ^ block;
    // 65535, not 65536: PostgreSQL reduces modulo 2^16-1 and adds one, so 0 never occurs.
    ((folded % 65_535) + 1) as u16
}

#[cfg(test)]
pub(super) fn checksum_portable(page: &[u8; PAGE_SIZE], block: u32) -> u16 {
    ((block_hash_portable(page) ^ block) % 65_535 + 1) as u16
}
