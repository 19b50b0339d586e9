//! `cordon audit verify` through the real binary, against chains written by `AuditWriter`.

use cordon::audit::{AuditWriter, Fsync, Record};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const RECORDS: usize = 7;
/// The record whose every byte the tamper test changes (1-based, so seq = line).
const MIDDLE: usize = 4;

fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "cordon-audit-verify-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a chain of `RECORDS` realistic records and returns its lines (with `\n`).
fn build_chain(dir: &Path) -> (PathBuf, Vec<Vec<u8>>) {
    let path = dir.join("audit.jsonl");
    let written = prometheus::IntCounter::new("audit_records_written", "test").unwrap();
    let (handle, writer) = AuditWriter::open(&path, Fsync::Batch, written).unwrap();
    for i in 0..RECORDS {
        handle.record(Record {
            kind: "http",
            decision: if i % 2 == 0 { "allow" } else { "deny" },
            reason: (i % 2 == 1).then_some("not_allowed"),
            decision_id: Some(format!("d-{i:04}")),
            agent: Some("deploy-bot".to_owned()),
            task: Some("DEP-42".to_owned()),
            approved_by: vec!["alice".to_owned()],
            method: Some("POST".to_owned()),
            host: Some("api.github.com".to_owned()),
            port: Some(443),
            path: Some("/repos/acme/web/pulls".to_owned()),
            status: Some(if i % 2 == 0 { 201 } else { 403 }),
            bytes_out: Some(120 + i as u64),
            duration_ms: Some(0.5),
            intent: Some("open PR for DEP-42".to_owned()),
            ..Record::default()
        });
    }
    writer.shutdown();
    let text = std::fs::read(&path).unwrap();
    let lines: Vec<Vec<u8>> = text
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), RECORDS);
    (path, lines)
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verify(path: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_copy(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

fn assert_broken(outcome: &Outcome, seq: usize, line: usize, what: &str) {
    assert_eq!(outcome.code, 1, "{what}: {}", outcome.stderr);
    let expected = format!("broken at seq {seq} (line {line}):");
    assert!(
        outcome.stderr.contains(&expected),
        "{what}: expected {expected:?} in {:?}",
        outcome.stderr
    );
    assert!(outcome.stdout.is_empty(), "{what}: {}", outcome.stdout);
}

#[test]
fn intact_chain_verifies() {
    let dir = temp_dir("intact");
    let (path, _) = build_chain(&dir);
    let outcome = verify(&path);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        outcome.stdout,
        format!(
            "audit verify: {}: ok, {RECORDS} records, chain intact\n",
            path.display()
        )
    );
}

#[test]
fn empty_file_verifies_with_zero_records() {
    let dir = temp_dir("empty");
    let path = write_copy(&dir, "empty.jsonl", &[]);
    let outcome = verify(&path);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("ok, 0 records"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn unreadable_file_exits_2_naming_it() {
    let dir = temp_dir("missing");
    let path = dir.join("absent.jsonl");
    let outcome = verify(&path);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome.stderr.contains(&path.display().to_string()),
        "{}",
        outcome.stderr
    );
}

#[test]
fn every_single_byte_change_in_a_record_is_caught() {
    let dir = temp_dir("bytes");
    let (_, lines) = build_chain(&dir);
    let target = &lines[MIDDLE - 1];
    let path = dir.join("tampered.jsonl");
    let mut checked = 0;
    for pos in 0..target.len() {
        // Two different replacements per byte: a neighbouring character and a case flip
        // (which also turns punctuation into control characters).
        for mask in [0x01u8, 0x20] {
            let mut tampered = lines.clone();
            tampered[MIDDLE - 1][pos] ^= mask;
            std::fs::write(&path, tampered.concat()).unwrap();
            let outcome = verify(&path);
            let what = format!("byte {pos} ({:?}) ^ {mask:#04x}", char::from(target[pos]));
            assert_eq!(outcome.code, 1, "{what}: {}", outcome.stderr);
            assert!(
                outcome.stderr.contains(&format!("(line {MIDDLE}):")),
                "{what}: {}",
                outcome.stderr
            );
            // The report names the seq the record claims, which only differs from its
            // position when the change landed in the seq number itself.
            let named = outcome
                .stderr
                .split("broken at seq ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .expect("names a seq");
            if named != MIDDLE.to_string() {
                let claim = format!("\"seq\":{named}");
                assert!(
                    String::from_utf8_lossy(&tampered[MIDDLE - 1]).contains(&claim),
                    "{what}: named seq {named} is neither the position nor the claim"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 400, "only {checked} variants checked");
}

#[test]
fn removed_middle_record_is_caught() {
    let dir = temp_dir("removed");
    let (_, mut lines) = build_chain(&dir);
    lines.remove(MIDDLE - 1);
    let outcome = verify(&write_copy(&dir, "removed.jsonl", &lines));
    // Line MIDDLE now holds record MIDDLE+1, which claims its own seq.
    assert_broken(&outcome, MIDDLE + 1, MIDDLE, "removed record");
    assert!(outcome.stderr.contains(&format!("expected seq {MIDDLE}")));
}

#[test]
fn swapped_records_are_caught() {
    let dir = temp_dir("swapped");
    let (_, mut lines) = build_chain(&dir);
    lines.swap(MIDDLE - 1, MIDDLE);
    let outcome = verify(&write_copy(&dir, "swapped.jsonl", &lines));
    assert_broken(&outcome, MIDDLE + 1, MIDDLE, "swapped records");
}

#[test]
fn renumbered_records_are_caught_by_the_hash() {
    let dir = temp_dir("renumbered");
    let (_, mut lines) = build_chain(&dir);
    // Remove a record and renumber the rest: seqs line up again, the chain does not.
    lines.remove(MIDDLE - 1);
    for (i, line) in lines.iter_mut().enumerate().skip(MIDDLE - 1) {
        let text = String::from_utf8(line.clone()).unwrap();
        *line = text
            .replace(&format!("\"seq\":{}", i + 2), &format!("\"seq\":{}", i + 1))
            .into_bytes();
    }
    let outcome = verify(&write_copy(&dir, "renumbered.jsonl", &lines));
    assert_broken(&outcome, MIDDLE, MIDDLE, "renumbered");
    assert!(outcome.stderr.contains("prev"), "{}", outcome.stderr);
}

#[test]
fn truncated_last_line_is_caught() {
    let dir = temp_dir("truncated");
    let (_, mut lines) = build_chain(&dir);
    let last = lines.last_mut().unwrap();
    last.truncate(last.len() / 2);
    let outcome = verify(&write_copy(&dir, "truncated.jsonl", &lines));
    assert_broken(&outcome, RECORDS, RECORDS, "truncated");

    // Losing only the final newline is a torn write too.
    let (_, mut lines) = build_chain(&temp_dir("newline"));
    lines.last_mut().unwrap().pop();
    let outcome = verify(&write_copy(&dir, "no-newline.jsonl", &lines));
    assert_broken(&outcome, RECORDS, RECORDS, "no trailing newline");
}

#[test]
fn empty_line_is_caught() {
    let dir = temp_dir("blank");
    let (_, mut lines) = build_chain(&dir);
    lines.insert(MIDDLE - 1, b"\n".to_vec());
    let outcome = verify(&write_copy(&dir, "blank.jsonl", &lines));
    assert_broken(&outcome, MIDDLE, MIDDLE, "empty line");
}

#[test]
fn duplicate_key_is_caught() {
    let dir = temp_dir("duplicate");
    let (_, mut lines) = build_chain(&dir);
    // Parsers differ on which duplicate wins; one that keeps the first would read "allow".
    let text = String::from_utf8(lines[MIDDLE - 1].clone()).unwrap();
    lines[MIDDLE - 1] = text
        .replacen('{', "{\"decision\":\"allow\",", 1)
        .into_bytes();
    let outcome = verify(&write_copy(&dir, "duplicate.jsonl", &lines));
    assert_broken(&outcome, MIDDLE, MIDDLE, "duplicate key");
}

/// The hash covers the parsed record, not its text: reordering keys (or adding whitespace)
/// inside a line changes nothing the record says, so the chain stays valid by design.
#[test]
fn reordered_keys_still_verify() {
    let dir = temp_dir("reordered");
    let (_, mut lines) = build_chain(&dir);
    let text = String::from_utf8(lines[MIDDLE - 1].clone()).unwrap();
    let inner = text
        .trim_end()
        .strip_prefix('{')
        .unwrap()
        .strip_suffix('}')
        .unwrap();
    // Values hold no commas, so splitting on them yields whole members.
    let mut members: Vec<&str> = inner.split(',').collect();
    members.reverse();
    let reordered = format!("{{ {} }}\n", members.join(" , "));
    assert_ne!(reordered.as_bytes(), lines[MIDDLE - 1].as_slice());
    lines[MIDDLE - 1] = reordered.into_bytes();
    let outcome = verify(&write_copy(&dir, "reordered.jsonl", &lines));
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("chain intact"),
        "{}",
        outcome.stdout
    );
}
