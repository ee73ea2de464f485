use super::*;
use crate::page::tests::Rng;

const HEAP: &[u8] = include_bytes!("../page/testdata/heap-1000.page");

fn compressible(len: usize) -> Vec<u8> {
    HEAP.iter().copied().cycle().take(len).collect()
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    Rng::new(seed).fill(&mut bytes);
    bytes
}

/// Recomputes the header CRC after a test edits header fields, so only the edit is "wrong".
fn reseal(frame: &mut [u8]) {
    let crc = crc32c::crc32c(&frame[..20]);
    frame[20..24].copy_from_slice(&crc.to_le_bytes());
}

fn code(result: Result<Vec<u8>>) -> ErrorCode {
    result.expect_err("expected an error").code
}

#[test]
fn round_trips_at_every_level() {
    let raw = compressible(EXTENT_BYTES);
    for level in MIN_LEVEL..=MAX_LEVEL {
        let frame = compress(&raw, level).unwrap();
        let header = read_header(&frame).unwrap();
        assert_eq!(header.level, level);
        assert!(!header.stored_raw);
        assert_eq!(header.raw_length, raw.len());
        assert_eq!(header.frame_length(), frame.len());
        assert!(frame.len() < raw.len() / 2, "level {level}");
        assert_eq!(decompress(&frame).unwrap(), raw);
    }
}

#[test]
fn the_fast_level_round_trips_and_other_levels_are_read_but_not_written() {
    let raw = compressible(EXTENT_BYTES);
    let mut frame = compress(&raw, FAST_LEVEL).unwrap();
    assert_eq!(frame[6], 0xff);
    assert_eq!(read_header(&frame).unwrap().level, FAST_LEVEL);
    assert_eq!(decompress(&frame).unwrap(), raw);
    assert_eq!(
        compressed_length(&raw, FAST_LEVEL).unwrap(),
        frame.len() - HEADER_BYTES
    );
    assert_eq!(code(compress(&raw, 0)), ErrorCode::InvalidArgument);
    assert_eq!(code(compress(&raw, -2)), ErrorCode::InvalidArgument);
    // A level this build never writes (a later one might): the frame still decodes.
    frame[6] = (-5i8) as u8;
    reseal(&mut frame);
    assert_eq!(read_header(&frame).unwrap().level, -5);
    assert_eq!(decompress(&frame).unwrap(), raw);
}

#[test]
fn incompressible_and_tiny_inputs_are_stored_raw() {
    for raw in [random(EXTENT_BYTES, 1), vec![], vec![42]] {
        let frame = compress(&raw, 3).unwrap();
        let header = read_header(&frame).unwrap();
        assert!(header.stored_raw, "{} bytes", raw.len());
        assert_eq!(header.payload_length, raw.len());
        assert_eq!(&frame[HEADER_BYTES..], &raw[..]);
        assert_eq!(header.raw_crc32c, crc32c::crc32c(&raw));
        assert_eq!(decompress(&frame).unwrap(), raw);
    }
}

#[test]
fn compress_into_writes_the_same_frame_into_a_reused_buffer() {
    // Larger than REUSED_CONTEXT_MAX_INPUT, as a WAL segment is, then smaller, then incompressible.
    let inputs = [
        compressible(3 << 20),
        compressible(EXTENT_BYTES),
        random(EXTENT_BYTES, 7),
    ];
    let mut out = vec![0xAAu8; frame_bound(3 << 20)];
    for raw in &inputs {
        for level in [1, 3, 9] {
            let length = compress_into(raw, level, &mut out).unwrap();
            assert_eq!(&out[..length], &compress(raw, level).unwrap()[..]);
            assert_eq!(decompress(&out[..length]).unwrap(), *raw);
        }
    }
}

#[test]
fn compress_into_refuses_a_buffer_without_room_for_the_worst_case() {
    let raw = compressible(EXTENT_BYTES);
    let mut out = vec![0u8; frame_bound(raw.len()) - 1];
    let err = compress_into(&raw, 1, &mut out).expect_err("expected an error");
    assert_eq!(err.code, ErrorCode::BufferLength);
    assert_eq!(
        compress_into(&raw, 0, &mut out)
            .expect_err("expected an error")
            .code,
        ErrorCode::InvalidArgument
    );
}

#[test]
fn header_layout_is_as_documented() {
    let raw = compressible(10_000);
    let frame = compress(&raw, 6).unwrap();
    assert_eq!(&frame[..4], b"PGFZ");
    assert_eq!(frame[4], 1);
    assert_eq!(frame[5], 0);
    assert_eq!(frame[6], 6);
    assert_eq!(frame[7], 0);
    assert_eq!(u32::from_le_bytes(frame[8..12].try_into().unwrap()), 10_000);
    assert_eq!(
        u32::from_le_bytes(frame[12..16].try_into().unwrap()) as usize,
        frame.len() - HEADER_BYTES
    );
    assert_eq!(
        u32::from_le_bytes(frame[16..20].try_into().unwrap()),
        crc32c::crc32c(&raw)
    );
    assert_eq!(
        u32::from_le_bytes(frame[20..24].try_into().unwrap()),
        crc32c::crc32c(&frame[..20])
    );
}

#[test]
fn levels_other_than_minus_1_and_1_to_19_are_invalid_arguments() {
    for level in [i32::MIN, -5, 0, 20, 22, i32::MAX] {
        assert_eq!(code(compress(b"x", level)), ErrorCode::InvalidArgument);
        assert_eq!(
            compress_many(&[&b"x"[..]], level).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    for raw in [compressible(30_000), random(3_000, 2)] {
        let frame = compress(&raw, 3).unwrap();
        for len in 0..frame.len() {
            assert_eq!(
                code(decompress(&frame[..len])),
                ErrorCode::FrameTruncated,
                "cut at {len}"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_corruption() {
    let mut frame = compress(&compressible(5_000), 3).unwrap();
    frame.push(0);
    assert_eq!(code(decompress(&frame)), ErrorCode::FrameCorrupt);
}

#[test]
fn every_byte_flip_is_detected_or_harmless() {
    // A flip may land on zstd bits that do not change the output (padding, redundant table
    // bits); then the raw bytes come back intact. Otherwise it must be an error, never bad data.
    let mut harmless = 0;
    for raw in [compressible(20_000), random(2_000, 3)] {
        let frame = compress(&raw, 3).unwrap();
        for at in 0..frame.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = frame.clone();
                bad[at] ^= flip;
                match decompress(&bad) {
                    Ok(out) => {
                        assert!(
                            out == raw,
                            "byte {at} ^ {flip:#x} decoded to different bytes"
                        );
                        assert!(at >= HEADER_BYTES, "header byte {at} ^ {flip:#x} accepted");
                        harmless += 1;
                    }
                    Err(err) => {
                        let expected: &[ErrorCode] = match at {
                            4 => &[ErrorCode::FrameVersion, ErrorCode::FrameCorrupt],
                            _ => &[ErrorCode::FrameCorrupt],
                        };
                        assert!(expected.contains(&err.code), "byte {at} ^ {flip:#x}: {err}");
                    }
                }
            }
        }
    }
    assert!(harmless < 10, "{harmless} flips went unnoticed");
}

#[test]
fn header_fields_are_validated_even_with_a_valid_header_crc() {
    let raw = compressible(20_000);
    let frame = compress(&raw, 3).unwrap();
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut copy = frame.clone();
        edit(&mut copy);
        reseal(&mut copy);
        decompress(&copy)
    };
    assert_eq!(code(edited(&|f| f[4] = 2)), ErrorCode::FrameVersion);
    assert_eq!(code(edited(&|f| f[4] = 0)), ErrorCode::FrameCorrupt);
    assert_eq!(code(edited(&|f| f[5] = 0x02)), ErrorCode::FrameVersion);
    assert_eq!(code(edited(&|f| f[7] = 1)), ErrorCode::FrameVersion);
    // The level is only a record of how the payload was made: any value decodes.
    assert_eq!(edited(&|f| f[6] = 20).unwrap(), raw);
    // Claims more raw bytes than the payload holds / fewer.
    for raw_length in [20_001u32, 19_999, 0] {
        let result = edited(&|f| f[8..12].copy_from_slice(&raw_length.to_le_bytes()));
        assert_eq!(code(result), ErrorCode::FrameCorrupt, "{raw_length}");
    }
    let huge = (MAX_RAW_BYTES as u32 + 1).to_le_bytes();
    assert_eq!(
        code(edited(&|f| f[8..12].copy_from_slice(&huge))),
        ErrorCode::FrameCorrupt
    );
    // Claims to be stored raw, which it is not.
    assert_eq!(code(edited(&|f| f[5] = 0x01)), ErrorCode::FrameCorrupt);
    // Wrong CRC of the raw bytes.
    assert_eq!(code(edited(&|f| f[16] ^= 1)), ErrorCode::FrameCorrupt);
    // A payload that is not zstd at all.
    let garbage = edited(&|f| {
        let end = f.len();
        f[HEADER_BYTES..end].fill(0xAB);
    });
    assert_eq!(code(garbage), ErrorCode::FrameCorrupt);
}

#[test]
fn read_header_needs_only_the_header() {
    let frame = compress(&compressible(EXTENT_BYTES), 1).unwrap();
    let header = read_header(&frame[..HEADER_BYTES]).unwrap();
    assert_eq!(header.raw_length, EXTENT_BYTES);
    assert_eq!(header.frame_length(), frame.len());
    assert_eq!(
        read_header(&frame[..HEADER_BYTES - 1]).unwrap_err().code,
        ErrorCode::FrameTruncated
    );
    assert_eq!(
        read_header(b"PGXZ").unwrap_err().code,
        ErrorCode::FrameCorrupt
    );
    assert_eq!(
        read_header(b"PG").unwrap_err().code,
        ErrorCode::FrameTruncated
    );
    assert_eq!(
        read_header(b"").unwrap_err().code,
        ErrorCode::FrameTruncated
    );
}

#[test]
fn frames_laid_end_to_end_can_be_walked_by_their_headers() {
    let raws = [compressible(EXTENT_BYTES), random(500, 4), vec![]];
    let refs: Vec<&[u8]> = raws.iter().map(|r| &r[..]).collect();
    let batch = compress_many(&refs, 3).unwrap();
    let frames: Vec<&[u8]> = batch.pieces().collect();
    assert_eq!(frames.len(), 3);
    let pack: Vec<u8> = frames.concat();
    let mut at = 0;
    let mut out = Vec::new();
    while at < pack.len() {
        let length = read_header(&pack[at..]).unwrap().frame_length();
        out.push(decompress(&pack[at..at + length]).unwrap());
        at += length;
    }
    assert_eq!(out, raws);
    let decoded = decompress_many(&frames).unwrap();
    assert_eq!(decoded.lengths, [EXTENT_BYTES, 500, 0]);
    assert_eq!(decoded.pieces().collect::<Vec<_>>(), raws);
}

#[test]
fn batch_errors_name_the_frame() {
    let good = compress(b"good bytes", 3).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = decompress_many(&[&good, &good, &bad]).unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameCorrupt);
    assert!(err.message.starts_with("frame 2: "), "{}", err.message);
    let err = decompress_many(&[&good, &good[..30], &bad]).unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameTruncated);
    assert!(err.message.starts_with("frame 1: "), "{}", err.message);
    let err = decompress_many(&[&good, &bad, &good]).unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameCorrupt);
    assert!(err.message.starts_with("frame 1: "), "{}", err.message);
}

#[test]
fn claims_beyond_memory_are_errors_not_aborts() {
    // Frames with valid headers that each claim the largest raw length, as damage could.
    let mut frame = compress(&compressible(20_000), 3).unwrap();
    frame[8..12].copy_from_slice(&(MAX_RAW_BYTES as u32).to_le_bytes());
    reseal(&mut frame);
    assert_eq!(code(decompress(&frame)), ErrorCode::FrameCorrupt);
    let many: Vec<&[u8]> = std::iter::repeat_n(&frame[..], 1 << 16).collect();
    let err = decompress_many(&many).unwrap_err();
    assert_eq!(err.code, ErrorCode::BufferLength);
}

#[test]
fn compress_extents_picks_extents_of_a_chunk() {
    let chunk = compressible(EXTENT_BYTES * 2 + 8192);
    let batch = compress_extents(&chunk, &[2, 0], 3).unwrap();
    let frames: Vec<&[u8]> = batch.pieces().collect();
    assert_eq!(decompress(frames[0]).unwrap(), &chunk[2 * EXTENT_BYTES..]);
    assert_eq!(decompress(frames[1]).unwrap(), &chunk[..EXTENT_BYTES]);
    for index in [3, u32::MAX] {
        let err = compress_extents(&chunk, &[index], 3).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }
    assert_eq!(compress_extents(&[], &[], 3).unwrap(), Batch::default());
    assert_eq!(
        compress_extents(&[], &[0], 3).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}

#[test]
fn large_inputs_like_wal_segments_round_trip() {
    let mut raw = compressible(16 << 20);
    raw[(8 << 20)..(8 << 20) + 4096].copy_from_slice(&random(4096, 9));
    let frame = compress(&raw, 3).unwrap();
    assert!(frame.len() < raw.len() / 4);
    assert_eq!(decompress(&frame).unwrap(), raw);
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(17);
    for round in 0..2000 {
        let len = rng.below(200);
        let mut bytes = random(len, rng.next());
        if round % 2 == 0 && len >= HEADER_BYTES {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4] = FORMAT_VERSION;
            if round % 4 == 0 {
                reseal(&mut bytes);
            }
        }
        assert!(decompress(&bytes).is_err());
    }
}

#[test]
fn decompress_into_a_buffer_matches_decompress_and_refuses_what_does_not_fit() {
    let raws = [
        compressible(70_000),
        random(5_000, 7),
        Vec::new(),
        compressible(131_072),
    ];
    let frames: Vec<Vec<u8>> = raws.iter().map(|r| compress(r, 3).unwrap()).collect();
    let views: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let total: usize = raws.iter().map(Vec::len).sum();
    let mut out = vec![0xAAu8; total + 100];
    let headers = decompress_many_into_checked(&views, &mut out, |_, _| Ok(())).unwrap();
    let lengths: Vec<usize> = headers.iter().map(|h| h.raw_length).collect();
    assert_eq!(lengths, raws.iter().map(Vec::len).collect::<Vec<_>>());
    let crcs: Vec<u32> = headers.iter().map(|h| h.raw_crc32c).collect();
    assert_eq!(
        crcs,
        raws.iter().map(|r| crc32c::crc32c(r)).collect::<Vec<_>>()
    );
    assert_eq!(&out[..total], &raws.concat()[..]);

    let mut small = vec![0u8; total - 1];
    let err = decompress_many_into_checked(&views, &mut small, |_, _| Ok(())).unwrap_err();
    assert_eq!(err.code, ErrorCode::BufferLength);

    let mut damaged = frames[0].clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    let err = decompress_many_into_checked(&[&damaged[..]], &mut out, |_, _| Ok(())).unwrap_err();
    assert_eq!(err.code, ErrorCode::FrameCorrupt);
}
