//! Writes the scanner's evaluation corpus to a directory, for `benches/scan-peers.sh`:
//! `eval/` (planted secrets and hard negatives), `manifest.json` (where each one sits) and
//! `perf/` (secret-free text for timing).
//!
//! `cargo run --release --example scan_corpus -- DIR [--seed N] [--perf-mib N]`

#[path = "../benches/scan_corpus/mod.rs"]
mod scan_corpus;

use std::path::PathBuf;

const MIB: usize = 1 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut seed = 20_261_126_u64;
    let mut perf_mib = 16usize;
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--seed" => seed = number("--seed"),
            "--perf-mib" => perf_mib = number("--perf-mib") as usize,
            _ if arg.starts_with('-') => usage(&format!("unknown option {arg}")),
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.unwrap_or_else(|| usage("missing DIR"));

    let files = scan_corpus::eval_corpus(seed);
    for file in &files {
        let path = dir.join("eval").join(&file.path);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dir");
        std::fs::write(&path, &file.bytes).expect("write corpus file");
    }
    std::fs::write(
        dir.join("manifest.json"),
        scan_corpus::manifest_json(&files),
    )
    .expect("write manifest");

    let perf = scan_corpus::clean_corpus(seed ^ 0xc1ea9, perf_mib * MIB);
    let perf_dir = dir.join("perf");
    std::fs::create_dir_all(&perf_dir).expect("create dir");
    for (i, piece) in perf.chunks(MIB).enumerate() {
        std::fs::write(perf_dir.join(format!("part-{i:03}.txt")), piece).expect("write perf file");
    }
    let planted: usize = files.iter().map(|f| f.planted.len()).sum();
    eprintln!(
        "wrote {} evaluation files ({planted} planted items) and {} MiB of secret-free text to {}",
        files.len(),
        perf.len() / MIB,
        dir.display()
    );
}

fn usage(problem: &str) -> ! {
    eprintln!("scan_corpus: {problem}\nusage: scan_corpus DIR [--seed N] [--perf-mib N]");
    std::process::exit(2);
}
