//! `cordon scan [--config F] [--format text|json|sarif] [--redact] [PATH…|-]`: finds secrets
//! in files, directory trees and stdin, and reports rule id and location, never the value.
//!
//! Every input is streamed through a `ScanStream` in 64 KiB chunks, so memory stays bounded
//! whatever the size of a file; line and column come from absolute offsets, with only the
//! newlines of the last few chunks kept.

use crate::config::{self, Config};
use crate::scan::{CustomRule, Finding, Scanner};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes read and fed to the scanner at a time.
pub const CHUNK: usize = 64 * 1024;
/// A file with a NUL byte in its first 8 KiB is binary and skipped.
const BINARY_PROBE: usize = 8 * 1024;
/// How stdin is named in reports.
const STDIN: &str = "-";
/// Bytes of newline history kept beyond the scanner's window and two chunks.
const LINE_MARGIN: u64 = 1 << 20;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `PATH:LINE:COL: RULE`, one finding a line.
    Text,
    /// An array of {path, line, column, end_line, end_column, rule}.
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}

/// The arguments of `cordon scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Take custom rules and known values from this config.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Report format on stdout [default: text].
    #[arg(long, value_enum, conflicts_with = "redact")]
    pub format: Option<Format>,
    /// Write the input (stdin or one file) to stdout with each secret replaced by
    /// `[REDACTED:<rule>]`; findings go to stderr.
    #[arg(long)]
    pub redact: bool,
    /// Files, directories (recursively; binary files and symlinks inside are skipped), or
    /// `-` for stdin, the default.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// One finding placed in its input: 1-based lines, 1-based byte columns, end exclusive.
#[derive(Debug, Clone)]
struct Located {
    path: String,
    rule: Arc<str>,
    start: u64,
    line: u64,
    column: u64,
    end_line: u64,
    end_column: u64,
}

/// Where the bytes come from.
enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    fn name(&self) -> String {
        match self {
            Input::Stdin => STDIN.to_owned(),
            Input::File(path) => path.display().to_string(),
        }
    }

    fn open(&self) -> io::Result<Box<dyn Read>> {
        Ok(match self {
            Input::Stdin => Box::new(io::stdin().lock()),
            Input::File(path) => Box::new(File::open(path)?),
        })
    }
}

/// Runs `cordon scan`; returns the exit code (0 clean, 1 findings, 2 usage, config or I/O
/// error).
pub fn run(args: &ScanArgs) -> i32 {
    let scanner = match build_scanner(args.config.as_deref()) {
        Ok(scanner) => scanner,
        Err(message) => {
            eprintln!("cordon scan: {message}");
            return 2;
        }
    };
    if args.redact {
        let several = args.paths.len() > 1 || args.paths.iter().any(|p| p.is_dir());
        if several {
            eprintln!("cordon scan: --redact takes stdin or a single file, not several files or a directory");
            return 2;
        }
    }
    let (inputs, mut errors) = collect_inputs(&args.paths);
    if args.redact {
        return redact(&scanner, inputs, errors);
    }

    let mut findings = Vec::new();
    let (mut scanned, mut binary) = (0usize, 0usize);
    for input in &inputs {
        let result = input
            .open()
            .and_then(|reader| scan_reader(&scanner, reader, &input.name()));
        match result {
            Ok(Some(found)) => {
                scanned += 1;
                findings.extend(found);
            }
            Ok(None) => binary += 1,
            Err(e) => errors.push(format!("{}: cannot read: {e}", input.name())),
        }
    }
    findings.sort_by(|a, b| a.path.cmp(&b.path).then(a.start.cmp(&b.start)));

    let report = match args.format.unwrap_or(Format::Text) {
        Format::Text => text_report(&findings),
        Format::Json => json_report(&findings),
        Format::Sarif => sarif_report(&findings),
    };
    if let Err(e) = write_stdout(report.as_bytes()) {
        if e.kind() != ErrorKind::BrokenPipe {
            errors.push(format!("stdout: {e}"));
        }
    }
    for error in &errors {
        eprintln!("cordon scan: {error}");
    }
    eprintln!("cordon scan: {}", summary(&findings, scanned, binary));
    exit_code(&errors, &findings)
}

/// Custom rules, and known values as (rule id, value).
pub type ScannerInputs = (Vec<CustomRule>, Vec<(String, String)>);

/// The custom rules and known values that `--config` contributes to the scanner: the
/// `scanning.rules`, the `scanning.known_values`, and the values of credentials with an
/// `env` source (the ones that can be read without running or asking anything).
pub fn scanner_inputs(cfg: &Config) -> Result<ScannerInputs, String> {
    let mut known = crate::cli::known_values(cfg)?;
    for spec in &cfg.credentials {
        if let crate::credentials::SourceSpec::Env(name) = &spec.source {
            if let Ok(value) = std::env::var(name) {
                if !value.is_empty() {
                    known.push((format!("credential:{}", spec.id), value));
                }
            }
        }
    }
    Ok((cfg.scanning.rules.clone(), known))
}

fn build_scanner(config: Option<&Path>) -> Result<Arc<Scanner>, String> {
    let (custom, known) = match config {
        Some(path) => {
            let cfg = config::load(path).map_err(|e| e.to_string())?;
            scanner_inputs(&cfg)?
        }
        None => (Vec::new(), Vec::new()),
    };
    let scanner = Scanner::new(&custom, &known).map_err(|e| match config {
        Some(path) => format!("{}: {e}", path.display()),
        None => e.to_string(),
    })?;
    Ok(Arc::new(scanner))
}

/// Expands the PATH arguments: stdin when there are none, directories walked in sorted
/// order. Problems are collected so that the other paths are still scanned.
fn collect_inputs(paths: &[PathBuf]) -> (Vec<Input>, Vec<String>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    if paths.is_empty() {
        inputs.push(Input::Stdin);
    }
    for path in paths {
        if path.as_os_str() == STDIN {
            inputs.push(Input::Stdin);
            continue;
        }
        // A path named on the command line is followed even when it is a symlink.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input::File(path.clone())),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                errors.push(format!("{}: no such file or directory", path.display()));
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    (inputs, errors)
}

/// Regular files under `dir`, in name order; symlinks, sockets and devices are skipped.
fn walk(dir: &Path, inputs: &mut Vec<Input>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(format!("{}: cannot read directory: {e}", dir.display()));
            return;
        }
    };
    let mut entries: Vec<_> = entries
        .filter_map(|entry| {
            entry
                .map_err(|e| errors.push(format!("{}: cannot read directory: {e}", dir.display())))
                .ok()
        })
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(&path, inputs, errors),
            Ok(kind) if kind.is_file() => inputs.push(Input::File(path)),
            Ok(_) => {}
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
}

/// Streams one input through the scanner; `None` when it is binary.
fn scan_reader(
    scanner: &Arc<Scanner>,
    mut reader: Box<dyn Read>,
    name: &str,
) -> io::Result<Option<Vec<Located>>> {
    let mut stream = scanner.stream();
    let mut lines = LineIndex::new(scanner.window());
    let mut found = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut first = true;
    loop {
        let n = read_full(&mut reader, &mut chunk)?;
        if first && chunk[..n.min(BINARY_PROBE)].contains(&0) {
            return Ok(None);
        }
        first = false;
        if n == 0 {
            break;
        }
        lines.push(&chunk[..n]);
        found.extend(
            stream
                .feed(&chunk[..n])
                .iter()
                .map(|f| lines.locate(name, f)),
        );
    }
    found.extend(stream.finish().iter().map(|f| lines.locate(name, f)));
    Ok(Some(found))
}

/// `--redact`: the redacted stream on stdout, findings and the summary on stderr.
fn redact(scanner: &Arc<Scanner>, inputs: Vec<Input>, mut errors: Vec<String>) -> i32 {
    let mut findings = Vec::new();
    if let Some(input) = inputs.first() {
        let name = input.name();
        match input.open() {
            Ok(reader) => {
                if let Err(e) = redact_stream(scanner, reader, &name, &mut findings) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(format!("{name}: cannot read: {e}")),
        }
    }
    findings.sort_by_key(|f| f.start);
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(text_report(&findings).as_bytes());
    for error in &errors {
        let _ = writeln!(stderr, "cordon scan: {error}");
    }
    let scanned = usize::from(errors.is_empty());
    let _ = writeln!(stderr, "cordon scan: {}", summary(&findings, scanned, 0));
    exit_code(&errors, &findings)
}

fn redact_stream(
    scanner: &Arc<Scanner>,
    mut reader: Box<dyn Read>,
    name: &str,
    findings: &mut Vec<Located>,
) -> Result<(), String> {
    let mut redactor = scanner.redactor();
    let mut lines = LineIndex::new(scanner.window());
    let mut stdout = io::stdout().lock();
    let mut chunk = vec![0u8; CHUNK];
    let write_error = |e: io::Error| format!("stdout: {e}");
    loop {
        let n =
            read_full(&mut reader, &mut chunk).map_err(|e| format!("{name}: cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        lines.push(&chunk[..n]);
        let (safe, found) = redactor.feed(&chunk[..n]);
        stdout.write_all(&safe).map_err(write_error)?;
        findings.extend(found.iter().map(|f| lines.locate(name, f)));
    }
    let (tail, found) = redactor.finish();
    stdout.write_all(&tail).map_err(write_error)?;
    stdout.flush().map_err(write_error)?;
    findings.extend(found.iter().map(|f| lines.locate(name, f)));
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Line numbers for absolute offsets in a stream, remembering only the newlines of the
/// last stretch a finding can still start in: the scanner's window plus two chunks, plus
/// a margin (a few hundred KiB of offsets at most).
struct LineIndex {
    consumed: u64,
    keep: u64,
    newlines: VecDeque<u64>,
    forgotten: u64,
    last_forgotten: Option<u64>,
}

impl LineIndex {
    fn new(window: usize) -> LineIndex {
        LineIndex {
            consumed: 0,
            keep: (window as u64).saturating_add(2 * CHUNK as u64 + LINE_MARGIN),
            newlines: VecDeque::new(),
            forgotten: 0,
            last_forgotten: None,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let base = self.consumed;
        self.newlines.extend(
            chunk
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| base + i as u64),
        );
        self.consumed += chunk.len() as u64;
        let horizon = self.consumed.saturating_sub(self.keep);
        while let Some(&offset) = self.newlines.front() {
            if offset >= horizon {
                break;
            }
            self.newlines.pop_front();
            self.forgotten += 1;
            self.last_forgotten = Some(offset);
        }
    }

    /// 1-based line and byte column of `offset`.
    fn position(&self, offset: u64) -> (u64, u64) {
        let before = self.newlines.partition_point(|&n| n < offset);
        let line_start = match before {
            0 => self.last_forgotten.map_or(0, |n| n + 1),
            _ => self.newlines[before - 1] + 1,
        };
        (
            self.forgotten + before as u64 + 1,
            offset.saturating_sub(line_start) + 1,
        )
    }

    fn locate(&self, path: &str, finding: &Finding) -> Located {
        let (line, column) = self.position(finding.start);
        let (end_line, end_column) = self.position(finding.end);
        Located {
            path: path.to_owned(),
            rule: finding.rule.clone(),
            start: finding.start,
            line,
            column,
            end_line,
            end_column,
        }
    }
}

fn exit_code(errors: &[String], findings: &[Located]) -> i32 {
    if !errors.is_empty() {
        2
    } else if !findings.is_empty() {
        1
    } else {
        0
    }
}

fn summary(findings: &[Located], scanned: usize, binary: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut files: Vec<&str> = findings.iter().map(|f| f.path.as_str()).collect();
    files.dedup();
    let mut line = if findings.is_empty() {
        format!("no findings in {}", plural(scanned, "input"))
    } else {
        format!(
            "{} in {} of {} scanned",
            plural(findings.len(), "finding"),
            files.len(),
            plural(scanned, "input")
        )
    };
    if binary > 0 {
        line.push_str(&format!(", {} skipped", plural(binary, "binary file")));
    }
    line
}

fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

// ---------------------------------------------------------------------------------------
// Reports. Each carries rule id and location only: never the value or a snippet.

fn text_report(findings: &[Located]) -> String {
    findings
        .iter()
        .map(|f| format!("{}:{}:{}: {}\n", f.path, f.line, f.column, f.rule))
        .collect()
}

fn json_report(findings: &[Located]) -> String {
    let items: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "path": f.path, "line": f.line, "column": f.column,
                "end_line": f.end_line, "end_column": f.end_column, "rule": &*f.rule,
            })
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&items).expect("JSON values serialise");
    out.push('\n');
    out
}

/// A SARIF 2.1.0 log: one run, one rule per rule id found, one result per finding.
/// Columns count bytes (as `byteOffset` does); end line and column are exclusive.
fn sarif_report(findings: &[Located]) -> String {
    let mut rules: Vec<&str> = findings.iter().map(|f| &*f.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    let rule_objects: Vec<Value> = rules
        .iter()
        .map(|id| json!({"id": id, "shortDescription": {"text": rule_description(id)}}))
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = rules.binary_search(&&*f.rule).expect("rule listed");
            json!({
                "ruleId": &*f.rule,
                "ruleIndex": index,
                "level": "error",
                "message": {"text": format!(
                    "Secret matched by rule {}; the value is withheld.", f.rule)},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(&f.path)},
                    "region": {
                        "startLine": f.line, "startColumn": f.column,
                        "endLine": f.end_line, "endColumn": f.end_column,
                    },
                }}],
            })
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cordon",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rule_objects,
            }},
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&log).expect("JSON values serialise");
    out.push('\n');
    out
}

fn rule_description(id: &str) -> String {
    match id.strip_prefix("credential:") {
        Some(name) => format!("A value cordon holds for credential {name}, in any encoding"),
        None => format!("A secret in the format of rule {id}"),
    }
}

/// A path as a URI reference: relative paths stay relative, absolute ones become
/// `file://` URIs; bytes outside the unreserved set are percent-encoded.
fn artifact_uri(path: &str) -> String {
    if path == STDIN {
        return "stdin".to_owned();
    }
    let path = path.replace('\\', "/");
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_byte_columns_across_chunks() {
        let mut index = LineIndex::new(16);
        index.push(b"ab\ncd");
        index.push(b"e\n\nxyz");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(2), (1, 3));
        assert_eq!(index.position(3), (2, 1));
        assert_eq!(index.position(5), (2, 3));
        assert_eq!(index.position(7), (3, 1));
        assert_eq!(index.position(9), (4, 2));
    }

    #[test]
    fn old_newlines_are_forgotten_but_still_counted() {
        let mut index = LineIndex::new(0);
        let line = [b'a'; 99];
        let mut chunk = Vec::new();
        for _ in 0..(4 * CHUNK / 100) {
            chunk.extend_from_slice(&line);
            chunk.push(b'\n');
        }
        for _ in 0..8 {
            index.push(&chunk);
        }
        assert!(index.newlines.len() as u64 <= index.keep / 100 + 1);
        let offset = chunk.len() as u64 * 8 - 50; // inside the last line
        let lines = (chunk.len() / 100) as u64 * 8;
        assert_eq!(index.position(offset), (lines, 51));
    }

    #[test]
    fn uris_are_relative_or_file_and_percent_encoded() {
        assert_eq!(artifact_uri("src/a b.rs"), "src/a%20b.rs");
        assert_eq!(artifact_uri("/tmp/x#1"), "file:///tmp/x%231");
        assert_eq!(artifact_uri("-"), "stdin");
    }
}
