//! Per-core throughput of the native hot paths on the relation files of a real cluster.
//!
//! `cargo bench -p pgforever-core --bench core -- <PGDATA>` (bench/core/run.sh makes a pgbench
//! cluster and calls this). Single-threaded on purpose: the figures are per core. Prints one
//! markdown table row per measurement.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgforever_core::extent::{self, ScanOptions, EXTENT_BYTES, EXTENT_PAGES};
use pgforever_core::wal::{self, SegmentContext};
use pgforever_core::{frame, page};

/// Blocks per relation segment file (RELSEG_SIZE with 8 KiB pages).
const SEGMENT_BLOCKS: u64 = 131_072;
const KEY: [u8; 32] = [0x42; 32];
const MIN_TIME: Duration = Duration::from_secs(2);

struct RelationFile {
    first_block: u32,
    bytes: Vec<u8>,
}

fn is_relation_file(name: &str) -> bool {
    let (base, segment) = name.split_once('.').unwrap_or((name, "0"));
    let node = base
        .strip_suffix("_fsm")
        .or_else(|| base.strip_suffix("_vm"))
        .or_else(|| base.strip_suffix("_init"))
        .unwrap_or(base);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(node) && digits(segment)
}

fn relation_paths(pgdata: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![pgdata.join("global")];
    if let Ok(entries) = fs::read_dir(pgdata.join("base")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    let mut paths = Vec::new();
    for dir in dirs {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if is_relation_file(&name.to_string_lossy()) {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    paths
}

fn first_block(path: &Path) -> u32 {
    let segment = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('.'))
        .and_then(|(_, s)| s.parse::<u64>().ok())
        .unwrap_or(0);
    (segment * SEGMENT_BLOCKS) as u32
}

fn drop_caches() -> bool {
    // Flush dirty pages first so that dropping the cache drops them all.
    let _ = std::process::Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn read_all(paths: &[PathBuf]) -> (u64, Duration) {
    let start = Instant::now();
    let mut total = 0u64;
    let mut buffer = vec![0u8; 8 << 20];
    for path in paths {
        let mut file = fs::File::open(path).expect("open relation file");
        loop {
            let n = file.read(&mut buffer).expect("read relation file");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    (total, start.elapsed())
}

/// Runs `pass` (one pass over all data, returning bytes processed) until MIN_TIME has passed;
/// returns GB/s (10^9 bytes per second).
fn throughput(mut pass: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < MIN_TIME {
        bytes += pass();
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// The completed WAL segments in `<PGDATA>/pg_wal` whose first page is valid (recycled and
/// preallocated ones are not), in order, with their contexts.
fn wal_segments(pgdata: &Path) -> Vec<(SegmentContext, Vec<u8>)> {
    let major = fs::read_to_string(pgdata.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let mut names: Vec<String> = fs::read_dir(pgdata.join("pg_wal"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    let mut segments = Vec::new();
    for name in names {
        let Ok(bytes) = fs::read(pgdata.join("pg_wal").join(&name)) else {
            continue;
        };
        let hex =
            |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).unwrap_or(0);
        let size = bytes.len() as u64;
        if !size.is_power_of_two() {
            continue;
        }
        let context = SegmentContext {
            segment_size: size as u32,
            pg_major: major,
            timeline: hex(0..8) as u32,
            segment_no: hex(8..16) * (0x1_0000_0000 / size) + hex(16..24),
            system_identifier: None,
        };
        if wal::summarize_segment(&bytes, &context).is_ok() {
            segments.push((context, bytes));
        }
    }
    segments
}

fn row(what: &str, gbps: f64, note: &str) {
    println!("| {what} | {gbps:.2} GB/s | {note} |");
}

fn main() {
    let pgdata = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .expect("usage: cargo bench -p pgforever-core --bench core -- <PGDATA>");
    let paths = relation_paths(&pgdata);
    assert!(
        !paths.is_empty(),
        "no relation files under {}",
        pgdata.display()
    );

    let cold = drop_caches();
    let (total, elapsed) = read_all(&paths);
    let read_gbps = total as f64 / elapsed.as_secs_f64() / 1e9;
    let (_, warm_elapsed) = read_all(&paths);
    let warm_gbps = total as f64 / warm_elapsed.as_secs_f64() / 1e9;

    let files: Vec<RelationFile> = paths
        .iter()
        .map(|path| RelationFile {
            first_block: first_block(path),
            bytes: fs::read(path).expect("read relation file"),
        })
        .collect();
    let pages: u64 = total / page::PAGE_SIZE as u64;
    println!(
        "{} relation files, {:.1} MiB, {pages} pages\n",
        files.len(),
        total as f64 / (1 << 20) as f64
    );
    println!("| measurement (1 core) | throughput | notes |\n|---|---|---|");
    row(
        "sequential read, page cache dropped",
        if cold { read_gbps } else { f64::NAN },
        if cold {
            "8 MiB read() calls, one file after another"
        } else {
            "could not drop caches (not root?)"
        },
    );
    row(
        "sequential read, page cache warm",
        warm_gbps,
        "8 MiB read() calls",
    );

    let mut failures = 0;
    let gbps = throughput(|| {
        for file in &files {
            let found =
                page::verify_checksums(&file.bytes, file.first_block, None).expect("whole pages");
            failures += found.len();
            black_box(found);
        }
        total
    });
    assert_eq!(
        failures, 0,
        "checksum failures in a cleanly stopped cluster"
    );
    row(
        "checksum verification (verify_checksums)",
        gbps,
        "pg_checksum_page on every initialised page",
    );

    let single = &files
        .iter()
        .max_by_key(|f| f.bytes.len())
        .expect("at least one file")
        .bytes[..page::PAGE_SIZE];
    let single: &[u8; page::PAGE_SIZE] = single.try_into().expect("one page");
    let gbps = throughput(|| {
        for block in 0..100_000u32 {
            black_box(page::checksum(black_box(single), block));
        }
        100_000 * page::PAGE_SIZE as u64
    });
    row(
        "page checksum alone, page in L1",
        gbps,
        "pure pg_checksum_page",
    );

    let scan_options = |file: &RelationFile, verify: bool| ScanOptions {
        first_block: file.first_block,
        changed_since: Some(u64::MAX),
        verify_checksums: verify,
        backup_start: None,
    };
    let gbps = throughput(|| {
        for file in &files {
            black_box(extent::scan(&file.bytes, &scan_options(file, false)).expect("scan"));
        }
        total
    });
    row(
        "extent scan, LSNs only",
        gbps,
        "nothing changed: the incremental fast path",
    );
    let gbps = throughput(|| {
        for file in &files {
            black_box(extent::scan(&file.bytes, &scan_options(file, true)).expect("scan"));
        }
        total
    });
    row("extent scan + checksums", gbps, "");
    let gbps = throughput(|| {
        for file in &files {
            let options = ScanOptions {
                changed_since: None,
                ..scan_options(file, true)
            };
            black_box(extent::scan_and_identify(&file.bytes, &options, &KEY).expect("scan"));
        }
        total
    });
    row(
        "scan + checksums + BLAKE3 ids (fused)",
        gbps,
        "no parent: every extent hashed",
    );
    let gbps = throughput(|| {
        for file in &files {
            black_box(extent::ids(&file.bytes, &KEY).expect("ids"));
        }
        total
    });
    row("keyed BLAKE3 alone, 128 KiB extents", gbps, "");

    // zstd on the extents a backup would store (all-zero extents are not stored).
    let extents: Vec<&[u8]> = files
        .iter()
        .flat_map(|f| f.bytes.chunks(EXTENT_BYTES))
        .filter(|e| !page::is_all_zero(e))
        .collect();
    let extent_bytes: u64 = extents.iter().map(|e| e.len() as u64).sum();
    for level in [1, 3, 6] {
        let mut stored = 0u64;
        let gbps = throughput(|| {
            stored = 0;
            for e in &extents {
                stored += frame::compress(e, level).expect("compress").len() as u64;
            }
            extent_bytes
        });
        let frames: Vec<Vec<u8>> = extents
            .iter()
            .map(|e| frame::compress(e, level).expect("compress"))
            .collect();
        let decompress_gbps = throughput(|| {
            for f in &frames {
                black_box(frame::decompress(f).expect("decompress"));
            }
            extent_bytes
        });
        row(
            &format!("zstd level {level} frames, compress"),
            gbps,
            &format!(
                "ratio {:.2} ({} extents of up to {EXTENT_PAGES} pages)",
                extent_bytes as f64 / stored as f64,
                extents.len()
            ),
        );
        row(
            &format!("zstd level {level} frames, decompress + verify"),
            decompress_gbps,
            "",
        );
    }

    // WAL summaries of the segments in pg_wal, each given the one before (as archive-push does).
    let segments = wal_segments(&pgdata);
    if segments.is_empty() {
        row(
            "WAL segment summary",
            f64::NAN,
            "no readable segments in pg_wal",
        );
    } else {
        let wal_bytes: u64 = segments.iter().map(|(_, b)| b.len() as u64).sum();
        let mut records = 0u64;
        let gbps = throughput(|| {
            records = 0;
            for (i, (context, bytes)) in segments.iter().enumerate() {
                let previous = i
                    .checked_sub(1)
                    .map(|p| &segments[p])
                    .filter(|(c, _)| c.segment_no + 1 == context.segment_no)
                    .map(|(_, b)| &b[..])
                    .unwrap_or(&[]);
                let summary = wal::summarize_segment_with_previous(bytes, context, previous)
                    .expect("segment read before");
                records += summary.records;
                black_box(summary);
            }
            wal_bytes
        });
        row(
            "WAL segment summary (CRC, blocks, events)",
            gbps,
            &format!(
                "{} segments of {} MiB, {:.0} records per segment",
                segments.len(),
                segments[0].0.segment_size >> 20,
                records as f64 / segments.len() as f64
            ),
        );
    }
}
