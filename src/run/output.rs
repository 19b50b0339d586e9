//! The output filter: the child's stdout and stderr pass through the streaming scanner
//! (`scanning.output`) on their way to cordon's own.
//!
//! A streaming redactor holds back a tail that could still be the start of a secret. So
//! that an interactive agent's prompt or progress line is not held back with it, the tail
//! is released (scanned as the end of a stream) once the child has written nothing for
//! [`IDLE`]. A secret the child writes in two parts with a longer pause between them is
//! therefore seen as two halves; everything written in one go, or faster, is whole.

use crate::audit::{AuditHandle, FindingRecord, Record, Stamp};
use crate::config::ScanAction;
use crate::metrics::Metrics;
use crate::scan::{Finding, Redactor, ScanStream, Scanner};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the child must be quiet before a held-back tail is released.
pub const IDLE: Duration = Duration::from_millis(10);
/// The most read from the child at once.
const CHUNK: usize = 64 * 1024;

/// Which of the child's streams a filter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
    /// The child's terminal (stdout and stderr both, as on any terminal).
    Terminal,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Terminal => "terminal",
        }
    }
}

/// Where findings are reported.
#[derive(Clone)]
pub struct Reporter {
    /// The audit trail.
    pub audit: AuditHandle,
    /// Stamps each record with agent and policy.
    pub stamp: Arc<Stamp>,
    /// `cordon_scan_findings_total`.
    pub metrics: Metrics,
}

impl Reporter {
    fn report(&self, stream: Stream, action: ScanAction, findings: &[Finding]) {
        if findings.is_empty() {
            return;
        }
        for finding in findings {
            self.metrics
                .scan_findings
                .with_label_values(&["output", &finding.rule[..], action.as_str()])
                .inc();
        }
        let decision = if action == ScanAction::Block {
            "deny"
        } else {
            "allow"
        };
        let record = Record {
            findings: findings
                .iter()
                .map(|f| FindingRecord {
                    rule: f.rule.to_string(),
                    direction: "output",
                    start: f.start,
                    end: f.end,
                })
                .collect(),
            detail: Some(format!(
                "child {}: output {}",
                stream.name(),
                action.as_str()
            )),
            ..self.stamp.record("scan", decision)
        };
        self.audit.record(record);
    }
}

/// What a filter did, for the run's summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filtered {
    /// Bytes read from the child.
    pub bytes: u64,
    /// Secrets found.
    pub findings: u64,
}

/// What a filter is doing, so that cordon can tell, once the child is gone, output still
/// being delivered (to a reader of cordon's own output that is slow to take it) from a
/// pipe that only a background process holds open.
#[derive(Debug, Default)]
pub struct Activity {
    /// Set while the filter writes to cordon's own output.
    writing: AtomicBool,
}

impl Activity {
    /// Whether the filter is writing to cordon's output (blocked there, perhaps).
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::SeqCst)
    }
}

/// One direction of the filter: scans, redacts or cuts, and writes on.
enum Pass {
    Redact(Redactor),
    Log(ScanStream),
    /// `block` before the first finding redacts (so the finding itself never passes);
    /// after it, the stream is cut.
    Block {
        redactor: Redactor,
        cut: bool,
    },
}

impl Pass {
    fn new(scanner: &Arc<Scanner>, action: ScanAction) -> Pass {
        match action {
            ScanAction::Redact => Pass::Redact(scanner.redactor()),
            ScanAction::Log => Pass::Log(scanner.stream()),
            ScanAction::Block => Pass::Block {
                redactor: scanner.redactor(),
                cut: false,
            },
        }
    }

    /// Feeds a chunk (or, with `None`, ends the current stream); returns what may be
    /// written and what was found.
    fn step(&mut self, chunk: Option<&[u8]>, stream: Stream) -> (Vec<u8>, Vec<Finding>) {
        match self {
            Pass::Redact(redactor) => match chunk {
                Some(chunk) => redactor.feed(chunk),
                None => redactor.finish(),
            },
            Pass::Log(scan) => match chunk {
                Some(chunk) => (chunk.to_vec(), scan.feed(chunk)),
                None => (Vec::new(), scan.finish()),
            },
            Pass::Block { redactor, cut } => {
                if *cut {
                    // Still read (so the child is not blocked on a full pipe), never written.
                    return (Vec::new(), Vec::new());
                }
                let (mut out, findings) = match chunk {
                    Some(chunk) => redactor.feed(chunk),
                    None => redactor.finish(),
                };
                if !findings.is_empty() {
                    *cut = true;
                    // Nothing after the first secret passes, not even the rest of this write.
                    let mut label = Vec::new();
                    crate::scan::push_label(&mut label, &findings[0].rule);
                    if let Some(at) = out.windows(label.len()).position(|w| w == label) {
                        out.truncate(at + label.len());
                    }
                    let _ = write!(
                        out,
                        "\n[cordon: the child's {} is cut off here: it carried a secret ({})]\n",
                        stream.name(),
                        findings[0].rule
                    );
                }
                (out, findings)
            }
        }
    }

    fn holding(&self) -> bool {
        match self {
            Pass::Redact(redactor) | Pass::Block { redactor, .. } => redactor.buffered() > 0,
            Pass::Log(scan) => scan.buffered() > 0,
        }
    }
}

/// Copies `from` to `to` through the scanner until `from` ends or `to` fails; runs on its
/// own thread (blocking reads, so the idle wait is a `poll` on the pipe). `scanner` gives
/// the current scanner (rebuilt when a credential's value changes); a new one is taken up
/// whenever nothing is held back. `activity` shows what the pump is doing.
pub fn pump(
    mut from: impl Read + std::os::fd::AsFd,
    mut to: impl Write,
    stream: Stream,
    scanner: &dyn Fn() -> Arc<Scanner>,
    action: ScanAction,
    reporter: &Reporter,
    activity: &Activity,
) -> Filtered {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut using = scanner();
    let mut pass = Pass::new(&using, action);
    let mut filtered = Filtered::default();
    let mut buf = vec![0u8; CHUNK];
    let idle = Timespec {
        tv_sec: 0,
        tv_nsec: IDLE.as_nanos() as _,
    };
    let mut emit = |out: &[u8], findings: &[Finding], filtered: &mut Filtered| -> bool {
        filtered.findings += findings.len() as u64;
        reporter.report(stream, action, findings);
        if out.is_empty() {
            return true;
        }
        activity.writing.store(true, Ordering::SeqCst);
        let written = to.write_all(out).is_ok() && to.flush().is_ok();
        activity.writing.store(false, Ordering::SeqCst);
        written
    };
    loop {
        if pass.holding() {
            // A signal interrupting the wait (SIGWINCH, say) starts it again, so a held
            // tail is still released after a quiet spell.
            let quiet = loop {
                let mut fds = [PollFd::new(&from, PollFlags::IN)];
                match poll(&mut fds, Some(&idle)) {
                    Ok(ready) => break ready == 0,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break false,
                }
            };
            if quiet {
                // Quiet: release the tail, and start a fresh stream.
                let (out, findings) = pass.step(None, stream);
                let cut = matches!(pass, Pass::Block { cut: true, .. });
                if !emit(&out, &findings, &mut filtered) {
                    return filtered;
                }
                if !cut {
                    using = scanner();
                    pass = Pass::new(&using, action);
                }
                continue;
            }
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        filtered.bytes += n as u64;
        if !pass.holding() && !matches!(pass, Pass::Block { cut: true, .. }) {
            // Nothing held back: a scanner rebuilt since (a rotated credential) takes over.
            let current = scanner();
            if !Arc::ptr_eq(&current, &using) {
                using = current;
                pass = Pass::new(&using, action);
            }
        }
        let (out, findings) = pass.step(Some(&buf[..n]), stream);
        if !emit(&out, &findings, &mut filtered) {
            // Our own output is gone (a closed pipe): closing the child's pipe gives it the
            // same error it would have had without cordon.
            return filtered;
        }
    }
    let (out, findings) = pass.step(None, stream);
    emit(&out, &findings, &mut filtered);
    filtered
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer the test can read after the pump is done.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    const SECRET: &str = "cordon-test-known-value-7d1f3a9b2c";

    fn filter(
        action: ScanAction,
    ) -> (std::io::PipeWriter, Sink, std::thread::JoinHandle<Filtered>) {
        let scanner =
            Arc::new(Scanner::new(&[], &[("known:T".to_owned(), SECRET.to_owned())]).unwrap());
        let dir = std::env::temp_dir().join(format!(
            "cordon-output-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let metrics = Metrics::new();
        let (audit, writer) = crate::audit::AuditWriter::open(
            &dir.join("audit.jsonl"),
            crate::audit::Fsync::None,
            metrics.audit_records.clone(),
        )
        .unwrap();
        std::mem::forget(writer);
        let reporter = Reporter {
            audit,
            stamp: Arc::new(Stamp::new("t", None, "sha256:0")),
            metrics,
        };
        let (reader, writer) = std::io::pipe().unwrap();
        let sink = Sink::default();
        let out = sink.clone();
        let handle = std::thread::spawn(move || {
            pump(
                reader,
                out,
                Stream::Stdout,
                &|| scanner.clone(),
                action,
                &reporter,
                &Activity::default(),
            )
        });
        (writer, sink, handle)
    }

    #[test]
    fn a_secret_split_across_quick_writes_is_redacted() {
        let (mut child, sink, handle) = filter(ScanAction::Redact);
        let (a, b) = SECRET.split_at(12);
        child.write_all(format!("before {a}").as_bytes()).unwrap();
        child.write_all(format!("{b} after\n").as_bytes()).unwrap();
        drop(child);
        let filtered = handle.join().unwrap();
        let text = sink.text();
        assert_eq!(text, "before [REDACTED:known:T] after\n");
        assert_eq!(filtered.findings, 1);
    }

    #[test]
    fn a_quiet_child_has_its_partial_line_released() {
        let (mut child, sink, handle) = filter(ScanAction::Redact);
        child.write_all(b"prompt> ").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sink.text() != "prompt> " {
            assert!(std::time::Instant::now() < deadline, "prompt held back");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(child);
        handle.join().unwrap();
    }

    #[test]
    fn log_passes_and_block_cuts() {
        let (mut child, sink, handle) = filter(ScanAction::Log);
        child
            .write_all(format!("x {SECRET} y\n").as_bytes())
            .unwrap();
        drop(child);
        assert_eq!(handle.join().unwrap().findings, 1);
        assert_eq!(sink.text(), format!("x {SECRET} y\n"));

        let (mut child, sink, handle) = filter(ScanAction::Block);
        child.write_all(b"fine\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        child
            .write_all(format!("x {SECRET} y\n").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        child.write_all(b"more\n").unwrap();
        drop(child);
        handle.join().unwrap();
        let text = sink.text();
        assert!(text.starts_with("fine\n"), "{text}");
        assert!(!text.contains(SECRET));
        assert!(text.contains("cut off"));
        assert!(!text.contains("more"));
        assert!(!text.contains("same-write"), "{text}");
        assert!(text.contains("x [REDACTED:known:T]"), "{text}");
    }
}
