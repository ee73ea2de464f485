use super::*;
use crate::page::tests::Rng;
use crate::page::{checksum, PageHeader, PAGE_HEADER_SIZE};

const HEAP: &[u8; PAGE_SIZE] = include_bytes!("../page/testdata/heap-1000.page");
const KEY: [u8; KEY_BYTES] = [7; KEY_BYTES];

/// The real heap page with its LSN set to `lsn` and a valid checksum for `block`.
fn page(lsn: u64, block: u32) -> [u8; PAGE_SIZE] {
    let mut page = *HEAP;
    page[..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
    page[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
    let sum = checksum(&page, block);
    page[8..10].copy_from_slice(&sum.to_le_bytes());
    page
}

/// A chunk starting at `first_block` whose pages come from `lsn_of_page` (None: all-zero page).
fn chunk(first_block: u32, count: usize, lsn_of_page: impl Fn(usize) -> Option<u64>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(count * PAGE_SIZE);
    for i in 0..count {
        match lsn_of_page(i) {
            Some(lsn) => bytes.extend_from_slice(&page(lsn, first_block + i as u32)),
            None => bytes.extend_from_slice(&[0u8; PAGE_SIZE]),
        }
    }
    bytes
}

fn options(first_block: u32, changed_since: Option<u64>) -> ScanOptions {
    ScanOptions {
        first_block,
        changed_since,
        verify_checksums: true,
        backup_start: None,
    }
}

#[test]
fn without_a_parent_every_extent_is_changed_and_identified() {
    // 40 pages: two full extents and a short one of 8 pages; the second extent is all zero.
    let data = chunk(32, 40, |i| {
        (!(16..32).contains(&i)).then_some(0x1_0000 + i as u64)
    });
    let result = scan_and_identify(&data, &options(32, None), &KEY).unwrap();
    let extents = &result.scan.extents;
    assert_eq!(extents.len(), 3);
    assert_eq!(
        extents.iter().map(|e| e.pages).collect::<Vec<_>>(),
        [16, 16, 8]
    );
    assert_eq!(extents[0].max_lsn, 0x1_000F);
    assert!(extents[0].changed && !extents[0].all_zero);
    assert!(extents[1].all_zero && extents[1].max_lsn == 0);
    assert_eq!(extents[2].max_lsn, 0x1_0000 + 39);
    assert!(result.scan.checksum_failures.is_empty());

    assert_eq!(
        result.ids[0],
        Some(*blake3::keyed_hash(&KEY, &data[..EXTENT_BYTES]).as_bytes())
    );
    assert_eq!(result.ids[1], None);
    assert_eq!(
        result.ids[2],
        Some(*blake3::keyed_hash(&KEY, &data[2 * EXTENT_BYTES..]).as_bytes())
    );
    assert_eq!(result.scan, scan(&data, &options(32, None)).unwrap());
}

#[test]
fn only_extents_modified_since_the_parent_are_changed() {
    let since = 0x5_0000_0000;
    // extent 0: all below; extent 1: one page exactly at the parent's start; extent 2: above.
    let data = chunk(0, 48, |i| {
        Some(match i {
            20 => since,
            32.. => since + 0x100,
            _ => since - 1 - i as u64,
        })
    });
    let result = scan_and_identify(&data, &options(0, Some(since)), &KEY).unwrap();
    let changed: Vec<bool> = result.scan.extents.iter().map(|e| e.changed).collect();
    assert_eq!(changed, [false, true, true]);
    assert_eq!(result.scan.extents[0].max_lsn, since - 1);
    assert_eq!(result.scan.extents[1].max_lsn, since);
    assert!(result.ids[0].is_none());
    assert!(result.ids[1].is_some() && result.ids[2].is_some());
}

#[test]
fn pages_without_a_trustworthy_lsn_make_their_extent_changed() {
    let since = 0x9_0000;
    let old = |_| Some(0x100);
    // One all-zero page among old pages.
    let mut data = chunk(0, 16, |i| (i != 5).then_some(0x100));
    let summary = scan(&data, &options(0, Some(since))).unwrap().extents[0];
    assert!(summary.changed && !summary.all_zero);

    // pd_upper == 0 but not all zero.
    data = chunk(0, 16, old);
    data[3 * PAGE_SIZE + 14..3 * PAGE_SIZE + 16].copy_from_slice(&[0, 0]);
    let result = scan(&data, &options(0, Some(since))).unwrap();
    assert!(result.extents[0].changed);
    assert!(
        result.checksum_failures.is_empty(),
        "new pages carry no checksum"
    );

    // Header that fails PostgreSQL's checks (flag bits it never sets), checksum recomputed.
    data = chunk(0, 16, old);
    let at = 7 * PAGE_SIZE;
    data[at + 10] = 0x80;
    let mut bad: [u8; PAGE_SIZE] = data[at..at + PAGE_SIZE].try_into().unwrap();
    let sum = checksum(&bad, 7);
    bad[8..10].copy_from_slice(&sum.to_le_bytes());
    data[at..at + PAGE_SIZE].copy_from_slice(&bad);
    assert!(scan(&data, &options(0, Some(since))).unwrap().extents[0].changed);

    // The same extent untouched is unchanged.
    data = chunk(0, 16, old);
    assert!(!scan(&data, &options(0, Some(since))).unwrap().extents[0].changed);
}

#[test]
fn checksum_failures_name_the_relation_block() {
    // Second segment of a relation: relation block numbers start at 131072.
    let first = 131_072 + 64;
    let backup_start = 0x7_0000;
    let mut data = chunk(first, 32, |i| match i {
        3 => None,
        9 => Some(backup_start + 5),
        _ => Some(0x6_0000 + i as u64),
    });
    let corrupt = |data: &mut Vec<u8>, page: usize| data[page * PAGE_SIZE + 4000] ^= 0x01;
    corrupt(&mut data, 17);
    corrupt(&mut data, 9); // at or past the backup start: may be torn, not reported
    let mut opts = options(first, Some(0x1000));
    opts.backup_start = Some(backup_start);
    let result = scan_and_identify(&data, &opts, &KEY).unwrap();
    assert_eq!(result.scan.checksum_failures.len(), 1);
    let failure = result.scan.checksum_failures[0];
    assert_eq!(failure.block, first + 17);
    assert_eq!(failure.lsn, 0x6_0000 + 17);
    let stored = PageHeader::parse(&data[17 * PAGE_SIZE..]).unwrap().checksum;
    assert_eq!(failure.found, stored);
    let corrupted: &[u8; PAGE_SIZE] = data[17 * PAGE_SIZE..18 * PAGE_SIZE].try_into().unwrap();
    assert_eq!(failure.expected, checksum(corrupted, first + 17));

    opts.backup_start = None;
    let all = scan(&data, &opts).unwrap().checksum_failures;
    assert_eq!(
        all.iter().map(|f| f.block).collect::<Vec<_>>(),
        [first + 9, first + 17]
    );
    opts.verify_checksums = false;
    assert!(scan(&data, &opts).unwrap().checksum_failures.is_empty());
}

#[test]
fn random_corruption_in_a_chunk_is_reported_at_its_block() {
    let mut rng = Rng::new(5);
    let clean = chunk(160, 64, |i| Some(0x2_0000 + i as u64));
    let mut missed = 0;
    for _ in 0..500 {
        let mut data = clean.clone();
        let page = rng.below(64);
        let at = page * PAGE_SIZE + PAGE_HEADER_SIZE + rng.below(PAGE_SIZE - PAGE_HEADER_SIZE);
        data[at] ^= 1 + rng.below(255) as u8;
        let failures = scan(&data, &options(160, Some(0)))
            .unwrap()
            .checksum_failures;
        match failures.as_slice() {
            [] => missed += 1,
            [failure] => assert_eq!(failure.block, 160 + page as u32),
            more => panic!("one corrupt page, {} failures", more.len()),
        }
    }
    assert!(missed <= 1, "{missed} undetected");
}

#[test]
fn ids_are_keyed_blake3_of_each_128k_piece() {
    let data: Vec<u8> = (0..EXTENT_BYTES * 2 + 1000)
        .map(|i| (i % 251) as u8)
        .collect();
    let all = ids(&data, &KEY).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2],
        *blake3::keyed_hash(&KEY, &data[2 * EXTENT_BYTES..]).as_bytes()
    );
    assert_eq!(all[0], id(&data[..EXTENT_BYTES], &KEY).unwrap());
    assert_ne!(all[0], id(&data[..EXTENT_BYTES], &[8; KEY_BYTES]).unwrap());
    assert_ne!(
        all[0],
        *blake3::hash(&data[..EXTENT_BYTES]).as_bytes(),
        "the key matters"
    );
    assert!(ids(&[], &KEY).unwrap().is_empty());
}

#[test]
fn bad_arguments_are_errors() {
    let data = chunk(0, 16, |_| Some(1));
    for key in [&[0u8; 31][..], &[0u8; 33][..], &[][..]] {
        let err = scan_and_identify(&data, &options(0, None), key).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert_eq!(
            ids(&data, key).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
    let err = scan(&data, &options(8, None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = scan(&data, &options(0xFFFF_FFF0, None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    for len in [1, PAGE_SIZE - 1, EXTENT_BYTES + 1] {
        let err = scan(&vec![0; len], &options(0, None)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BufferLength);
    }
    let empty = scan_and_identify(&[], &options(0, None), &KEY).unwrap();
    assert!(empty.scan.extents.is_empty() && empty.ids.is_empty());
}

#[test]
fn garbage_chunks_do_not_panic() {
    let mut rng = Rng::new(11);
    let mut data = vec![0u8; EXTENT_BYTES * 2];
    for round in 0..20 {
        rng.fill(&mut data);
        if round % 2 == 0 {
            // Plausible headers with garbage fields.
            for page in data.chunks_mut(PAGE_SIZE) {
                page[14..16].copy_from_slice(&(rng.below(9000) as u16).to_le_bytes());
            }
        }
        let result = scan_and_identify(&data, &options(0, Some(rng.next())), &KEY).unwrap();
        assert_eq!(result.scan.extents.len(), 2);
        assert!(result.scan.extents.iter().all(|e| e.changed));
    }
}

#[test]
fn decompressing_checks_each_extent_against_its_id() {
    let key = [7u8; KEY_BYTES];
    let extents: Vec<Vec<u8>> = vec![
        vec![1u8; EXTENT_BYTES],
        (0..5000u32).map(|i| i as u8).collect(),
    ];
    let frames: Vec<Vec<u8>> = extents
        .iter()
        .map(|e| crate::frame::compress(e, 1).expect("compress"))
        .collect();
    let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let ids: Vec<u8> = extents
        .iter()
        .flat_map(|e| id(e, &key).expect("id"))
        .collect();
    let mut out = vec![0u8; EXTENT_BYTES + 5000];
    let headers = decompress_identified_into(&frames, &ids, &key, &mut out).expect("verified");
    let lengths: Vec<usize> = headers.iter().map(|h| h.raw_length).collect();
    assert_eq!(lengths, vec![EXTENT_BYTES, 5000]);
    let crcs: Vec<u32> = headers.iter().map(|h| h.raw_crc32c).collect();
    assert_eq!(
        crcs,
        extents
            .iter()
            .map(|e| crc32c::crc32c(e))
            .collect::<Vec<_>>()
    );
    assert_eq!(out, extents.concat());

    // The same frames under each other's ids: intact bytes, wrong extents.
    let swapped: Vec<u8> = [&ids[ID_BYTES..], &ids[..ID_BYTES]].concat();
    let err = decompress_identified_into(&frames, &swapped, &key, &mut out).expect_err("mismatch");
    assert_eq!(err.code, ErrorCode::FrameCorrupt);
    assert!(err.message.starts_with("frame 0 "), "{}", err.message);

    let err = decompress_identified_into(&frames, &ids[..ID_BYTES], &key, &mut out)
        .expect_err("short ids");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
}
