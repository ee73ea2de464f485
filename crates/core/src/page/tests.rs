use super::*;

/// Pages copied from a PostgreSQL 15 cluster made with `initdb --data-checksums` and
/// `pgbench -i -s 1` (heap, btree, free space map, visibility map, shared catalog), with the
/// relation block number each was read from. pd_checksum in them was computed by PostgreSQL.
const REAL_PAGES: [(&str, u32, &[u8; PAGE_SIZE]); 5] = [
    ("heap", 1000, include_bytes!("testdata/heap-1000.page")),
    ("btree", 100, include_bytes!("testdata/btree-100.page")),
    ("fsm", 2, include_bytes!("testdata/fsm-2.page")),
    ("vm", 0, include_bytes!("testdata/vm-0.page")),
    ("catalog", 0, include_bytes!("testdata/catalog-0.page")),
];

#[test]
fn checksum_matches_postgresql_on_real_pages() {
    for (name, block, page) in REAL_PAGES {
        let header = PageHeader::parse(page).unwrap();
        assert_eq!(checksum(page, block), header.checksum, "{name}");
        assert_eq!(
            checksum::checksum_portable(page, block),
            header.checksum,
            "{name}"
        );
        assert_eq!(verify(page, block, true), PageVerdict::Valid, "{name}");
    }
}

#[test]
fn checksum_depends_on_block_number() {
    let (_, block, page) = REAL_PAGES[0];
    let stored = PageHeader::parse(page).unwrap().checksum;
    assert_ne!(checksum(page, block + 1), stored);
    assert_eq!(
        verify(page, block + 1, true),
        PageVerdict::ChecksumMismatch {
            expected: checksum(page, block + 1),
            found: stored
        }
    );
    // Only the checksum is wrong, so without checksums the page is fine.
    assert_eq!(verify(page, block + 1, false), PageVerdict::Valid);
}

#[test]
fn checksum_ignores_the_stored_checksum_field() {
    let (_, block, page) = REAL_PAGES[1];
    let mut copy = *page;
    copy[8] ^= 0xFF;
    copy[9] ^= 0x5A;
    assert_eq!(checksum(&copy, block), checksum(page, block));
}

#[test]
fn checksum_is_never_zero_and_dispatch_agrees_with_portable_code() {
    let mut rng = Rng::new(7);
    for block in 0..300u32 {
        let mut page = [0u8; PAGE_SIZE];
        rng.fill(&mut page);
        let sum = checksum(&page, block.wrapping_mul(2_654_435_761));
        assert_ne!(sum, 0);
        assert_eq!(
            sum,
            checksum::checksum_portable(&page, block.wrapping_mul(2_654_435_761))
        );
    }
}

#[test]
fn random_corruption_of_real_pages_is_detected() {
    // A 16-bit checksum lets about one random corruption in 65535 through; over 20000 trials
    // that is 0.3 expected misses, so more than a few would mean a broken implementation.
    let mut rng = Rng::new(42);
    let mut missed = Vec::new();
    for (name, block, page) in REAL_PAGES {
        for _ in 0..4000 {
            let mut copy = *page;
            let at = rng.below(PAGE_SIZE);
            let flip = 1 + rng.below(255) as u8;
            copy[at] ^= flip;
            if verify(&copy, block, true).is_ok() {
                missed.push((name, at, flip));
            }
        }
    }
    assert!(missed.len() <= 3, "undetected: {missed:?}");
}

#[test]
fn header_fields_decode() {
    let (_, _, page) = REAL_PAGES[0];
    let header = PageHeader::parse(page).unwrap();
    assert_eq!(header.page_size, 8192);
    assert_eq!(header.layout_version, PAGE_LAYOUT_VERSION);
    assert_eq!(header.lsn >> 32, 0);
    assert_eq!(
        header.lsn as u32,
        u32::from_le_bytes([page[4], page[5], page[6], page[7]])
    );
    assert!(header.is_sane());
    assert!(!header.is_new());

    let mut high = [0u8; PAGE_HEADER_SIZE];
    high[..8].copy_from_slice(&[0x01, 0, 0, 0, 0x28, 0, 0, 0x0A]);
    assert_eq!(PageHeader::parse(&high).unwrap().lsn, 0x1_0A00_0028);
}

#[test]
fn short_buffers_are_rejected_not_read() {
    for len in [0, 1, 23] {
        let err = PageHeader::parse(&vec![0; len]).unwrap_err();
        assert_eq!(err.code, ErrorCode::BufferLength);
    }
    for len in [1, 8191, 8193, 3 * PAGE_SIZE - 1] {
        let err = verify_checksums(&vec![0; len], 0, None).unwrap_err();
        assert_eq!(err.code, ErrorCode::BufferLength);
    }
    assert!(verify_checksums(&[], 0, None).unwrap().is_empty());
}

#[test]
fn verdicts_follow_page_is_verified() {
    let zero = [0u8; PAGE_SIZE];
    assert_eq!(verify(&zero, 3, true), PageVerdict::AllZero);

    let mut new_not_zero = zero;
    new_not_zero[100] = 1;
    assert_eq!(verify(&new_not_zero, 3, true), PageVerdict::NewNotZero);

    let (_, block, page) = REAL_PAGES[2];
    let mut bad = *page;
    // pd_special = 8191: not MAXALIGNed. Recompute the checksum so only the header is wrong.
    bad[16..18].copy_from_slice(&8191u16.to_le_bytes());
    let sum = checksum(&bad, block);
    bad[8..10].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(verify(&bad, block, true), PageVerdict::BadHeader);

    let mut flags = *page;
    flags[10] = 0x08;
    assert_eq!(verify(&flags, block, false), PageVerdict::BadHeader);
}

#[test]
fn garbage_headers_do_not_panic() {
    let mut rng = Rng::new(99);
    for _ in 0..500 {
        let mut page = [0u8; PAGE_SIZE];
        rng.fill(&mut page[..PAGE_HEADER_SIZE]);
        let header = PageHeader::parse(&page).unwrap();
        let verdict = verify(&page, rng.next() as u32, true);
        assert!(!verdict.is_ok() || header.is_sane());
    }
}

#[test]
fn verify_checksums_reports_block_numbers_and_skips_new_and_recent_pages() {
    let (_, block, heap) = REAL_PAGES[0];
    let lsn = PageHeader::parse(heap).unwrap().lsn;
    let mut buffer = Vec::new();
    // blocks block..block+4: good, corrupt, all-zero, new-not-zero (skipped: no checksum)
    buffer.extend_from_slice(&relocated(heap, block));
    let mut corrupt = relocated(heap, block + 1);
    corrupt[5000] ^= 0x10;
    buffer.extend_from_slice(&corrupt);
    buffer.extend_from_slice(&[0u8; PAGE_SIZE]);
    let mut new_page = [0u8; PAGE_SIZE];
    new_page[200] = 9;
    buffer.extend_from_slice(&new_page);

    let failures = verify_checksums(&buffer, block, None).unwrap();
    assert_eq!(failures.len(), 1);
    let failure = failures[0];
    assert_eq!(failure.block, block + 1);
    assert_eq!(failure.lsn, lsn);
    assert_eq!(
        failure.found,
        checksum(&relocated(heap, block + 1), block + 1)
    );
    assert_eq!(failure.expected, checksum(&corrupt, block + 1));

    // At or past the backup start the page may be torn by a concurrent write: not checked.
    assert!(verify_checksums(&buffer, block, Some(lsn))
        .unwrap()
        .is_empty());
    assert_eq!(
        verify_checksums(&buffer, block, Some(lsn + 1))
            .unwrap()
            .len(),
        1
    );

    let err = verify_checksums(&buffer, u32::MAX - 2, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
}

#[test]
fn all_zero_detection() {
    assert!(is_all_zero(&[]));
    assert!(is_all_zero(&[0u8; PAGE_SIZE]));
    for at in [0, 255, 256, 8000, PAGE_SIZE - 1] {
        let mut page = [0u8; PAGE_SIZE];
        page[at] = 1;
        assert!(!is_all_zero(&page), "{at}");
    }
    assert!(!is_all_zero(&[0, 0, 0, 1]));
}

/// A copy of `page` with its checksum recomputed as if it lived at `block`.
pub(crate) fn relocated(page: &[u8; PAGE_SIZE], block: u32) -> [u8; PAGE_SIZE] {
    let mut copy = *page;
    let sum = checksum(&copy, block);
    copy[8..10].copy_from_slice(&sum.to_le_bytes());
    copy
}

/// xorshift64*: deterministic pseudo-random input for property-style tests, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    pub(crate) fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
