//! The secret scanner: quality on the generated evaluation corpus (recall, hard negatives
//! flagged), then single-thread throughput over 100+ MiB of secret-free source code, logs
//! and JSON, streamed in 64 KiB chunks as the proxy and `cordon scan` feed it: exact
//! matching alone (20 held credentials in all their encodings), the full rule set, and both.
//!
//! `cargo bench --bench scan` (quality report on stderr, MB/s from criterion);
//! `cargo bench --bench scan -- --quality` prints only the quality report.

#[path = "scan_corpus/mod.rs"]
mod scan_corpus;

use cordon::scan::Scanner;
use criterion::{Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEED: u64 = 20_261_126;
const MIB: usize = 1 << 20;
/// Secret-free bytes per throughput run; a small slice when run as a test.
const CLEAN_BYTES: usize = 104 * MIB;
const CHUNK: usize = 64 * 1024;
/// Held credentials for the exact-value layer.
const HELD: usize = 20;

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let quality_only = std::env::args().any(|a| a == "--quality");

    let rules = Arc::new(Scanner::new(&[], &[]).expect("built-in rules compile"));
    let held = scan_corpus::held_credentials(SEED, HELD);
    let rules_and_held = Arc::new(Scanner::new(&[], &held).expect("held values compile"));
    let exact = Arc::new(Scanner::exact_only(&held).expect("held values compile"));

    eprintln!("== quality: evaluation corpus (seed {SEED}) ==");
    eprint!("{}", quality(&rules).report());
    if quality_only {
        return;
    }

    let size = if bench_mode { CLEAN_BYTES } else { MIB };
    let started = Instant::now();
    let clean = scan_corpus::clean_corpus(SEED ^ 0xc1ea9, size);
    eprintln!(
        "== throughput: {:.1} MiB of secret-free source, logs and JSON (generated in {:.1?}) ==",
        clean.len() as f64 / MIB as f64,
        started.elapsed()
    );
    let stray = stream(&rules_and_held, &clean);
    eprintln!(
        "findings in the secret-free text: {stray} ({:.2} per 100 MiB)",
        stray as f64 * 100.0 * MIB as f64 / clean.len() as f64
    );

    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = criterion.benchmark_group("scan");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::BytesDecimal(clean.len() as u64));
    group.bench_function("exact-only-20-held/stream-64k", |b| {
        b.iter(|| black_box(stream(&exact, &clean)))
    });
    group.bench_function("full-rules/stream-64k", |b| {
        b.iter(|| black_box(stream(&rules, &clean)))
    });
    group.bench_function("full-rules+20-held/stream-64k", |b| {
        b.iter(|| black_box(stream(&rules_and_held, &clean)))
    });
    group.finish();
    criterion.final_summary();
}

/// Streams `data` through a fresh `ScanStream` in 64 KiB chunks; returns the finding count.
fn stream(scanner: &Arc<Scanner>, data: &[u8]) -> usize {
    let mut stream = scanner.stream();
    let mut findings = 0;
    for chunk in data.chunks(CHUNK) {
        findings += stream.feed(chunk).len();
    }
    findings + stream.finish().len()
}

/// Scans each evaluation file whole and scores the findings by line.
fn quality(scanner: &Scanner) -> scan_corpus::Score {
    let files = scan_corpus::eval_corpus(SEED);
    let mut findings = Vec::new();
    for file in &files {
        let line_of = |offset: u64| {
            1 + file.bytes[..offset as usize]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        };
        for f in scanner.scan(&file.bytes) {
            let last = f.end.saturating_sub(1).max(f.start);
            findings.push((
                file.path.clone(),
                line_of(f.start),
                line_of(last),
                f.rule.to_string(),
            ));
        }
    }
    scan_corpus::score(&files, &findings)
}
