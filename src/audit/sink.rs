//! The single writer of the audit file.
//!
//! One OS thread owns the file so that assigning `seq`/`prev` and appending are trivially
//! serialised; the request path only pushes onto an unbounded channel and never waits for
//! the disk. A failed write flips `healthy()` to false for good: the proxy then denies
//! everything rather than act without a record (fail closed).

use super::chain::{self, GENESIS_PREV};
use super::Record;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// When the writer calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record: nothing acknowledged is ever lost, at the cost of throughput.
    Every,
    /// Once per batch of records that arrived together.
    Batch,
    /// Never; the OS decides (records are still flushed to the kernel per batch).
    None,
}

/// Errors opening or continuing an audit file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened or its chain cannot be continued.
    #[error("{path}: {message}")]
    Open {
        /// The audit file.
        path: String,
        /// What is wrong and what to do about it.
        message: String,
    },
}

/// Upper bound on records written between two flushes, so that a steady flood still
/// reaches the disk (and its fsync) at a regular pace.
const MAX_BATCH: usize = 1024;

/// How long the writer waits after a batch before it parks again.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// How much of the file's end is read first when looking for the last record.
const TAIL_CHUNK: u64 = 64 * 1024;

enum Message {
    Record(Box<Record>),
    Stop,
}

struct Shared {
    tx: UnboundedSender<Message>,
    healthy: Arc<AtomicBool>,
}

/// Cheap, cloneable, non-blocking handle used on the request path.
#[derive(Clone)]
pub struct AuditHandle {
    shared: Arc<Shared>,
}

impl AuditHandle {
    /// Queues a record; never blocks.
    pub fn record(&self, record: Record) {
        if self
            .shared
            .tx
            .send(Message::Record(Box::new(record)))
            .is_err()
        {
            // The writer is gone, so this decision will have no record: stop allowing.
            self.shared.healthy.store(false, Ordering::SeqCst);
        }
    }

    /// False once a write has failed: callers must then deny (`audit_unavailable`).
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::SeqCst)
    }
}

/// Owns the writer thread; `shutdown` flushes and joins it.
///
/// Dropped without `shutdown`, the thread keeps writing until every handle is gone, so
/// queued records are still written but nobody waits for them.
pub struct AuditWriter {
    tx: UnboundedSender<Message>,
    thread: JoinHandle<()>,
}

impl AuditWriter {
    /// Opens (or continues) the chain in `path` and starts the writer thread.
    pub fn open(
        path: &Path,
        fsync: Fsync,
        written: prometheus::IntCounter,
    ) -> Result<(AuditHandle, AuditWriter), AuditError> {
        let fail = |message: String| AuditError::Open {
            path: path.display().to_string(),
            message,
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Creating directories here would hide a mistyped `audit.path`.
        if !parent.is_dir() {
            return Err(fail(format!(
                "directory {} does not exist",
                parent.display()
            )));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        let (next_seq, prev) = match read_tail(&mut file).map_err(|e| fail(format!("{e}")))? {
            Tail::Empty => (1, GENESIS_PREV.to_owned()),
            Tail::Last { seq, hash } => (seq + 1, hash),
            Tail::Broken(why) => {
                return Err(fail(format!(
                    "the trail ends with a broken record ({why}); refusing to continue the \
                     chain. Run `cordon audit verify {}` and move the file aside once inspected",
                    path.display()
                )))
            }
        };

        let healthy = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::unbounded_channel();
        let state = WriterState {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            fsync,
            next_seq,
            prev,
            written,
            healthy: Arc::clone(&healthy),
            failed: false,
            unflushed: 0,
            lost: 0,
        };
        let thread = std::thread::Builder::new()
            .name("cordon-audit".to_owned())
            .spawn(move || state.run(rx))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        let handle = AuditHandle {
            shared: Arc::new(Shared {
                tx: tx.clone(),
                healthy,
            }),
        };
        Ok((handle, AuditWriter { tx, thread }))
    }

    /// Writes every queued record, fsyncs, and stops the thread. Blocking.
    pub fn shutdown(self) {
        // If the thread already ended (it never does on its own while we hold `tx`), the
        // send fails and the join below returns at once.
        let _ = self.tx.send(Message::Stop);
        if self.thread.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
    }
}

enum Tail {
    Empty,
    Last { seq: u64, hash: String },
    Broken(String),
}

/// Reads only the file's last line: the trail can be large and start-up must stay quick.
fn read_tail(file: &mut File) -> io::Result<Tail> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut chunk = TAIL_CHUNK;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::take(&mut *file, len - start).read_to_end(&mut buf)?;
        if buf.last() != Some(&b'\n') {
            return Ok(Tail::Broken(
                "the last line has no trailing newline (torn write)".to_owned(),
            ));
        }
        let body = &buf[..buf.len() - 1];
        match body.iter().rposition(|&b| b == b'\n') {
            Some(nl) => return Ok(check_last(&body[nl + 1..])),
            None if start == 0 => return Ok(check_last(body)),
            // The last record is longer than what was read: look further back.
            None => chunk = chunk.saturating_mul(4),
        }
    }
}

fn check_last(line: &[u8]) -> Tail {
    let mut map = match chain::parse_line(line) {
        Ok(map) => map,
        Err(why) => return Tail::Broken(format!("last line: {why}")),
    };
    let Some(seq) = map.get("seq").and_then(Value::as_u64).filter(|&s| s > 0) else {
        return Tail::Broken("last record has no valid seq".to_owned());
    };
    let Some(Value::String(hash)) = map.remove("hash") else {
        return Tail::Broken(format!("last record (seq {seq}) has no hash"));
    };
    // Continuing from a record whose own hash is wrong would bless a tampered tail.
    if chain::record_hash(&map) != hash {
        return Tail::Broken(format!("last record (seq {seq}) does not match its hash"));
    }
    Tail::Last { seq, hash }
}

struct WriterState {
    path: PathBuf,
    out: BufWriter<File>,
    fsync: Fsync,
    next_seq: u64,
    prev: String,
    written: prometheus::IntCounter,
    healthy: Arc<AtomicBool>,
    failed: bool,
    /// Records in `out` not yet flushed; counted as written only once they reach the file.
    unflushed: u64,
    /// Records received after a failure.
    lost: u64,
}

impl WriterState {
    fn run(mut self, mut rx: UnboundedReceiver<Message>) {
        'outer: while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(message) = next.take() {
                match message {
                    Message::Record(record) => self.write(*record),
                    Message::Stop => {
                        self.commit(self.fsync != Fsync::None);
                        break 'outer;
                    }
                }
                taken += 1;
                if taken < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(self.fsync != Fsync::None);
            // Let records gather before parking again: a parked receiver costs the request
            // path a thread wake-up per record, a short nap costs the trail 2 ms of latency.
            std::thread::sleep(COALESCE);
        }
        // Anything still queued was sent after shutdown began and will not be written.
        rx.close();
        while let Ok(message) = rx.try_recv() {
            if let Message::Record(_) = message {
                self.lost += 1;
            }
        }
        if self.lost > 0 {
            tracing::error!(
                path = %self.path.display(),
                lost = self.lost,
                "audit records were not written"
            );
        }
    }

    fn write(&mut self, record: Record) {
        if self.failed {
            self.lost += 1;
            return;
        }
        let line = match self.chain_line(&record) {
            Ok(line) => line,
            Err(err) => return self.fail("encoding a record", &err),
        };
        if let Err(err) = self.out.write_all(&line) {
            return self.fail("write", &err);
        }
        self.unflushed += 1;
        if self.fsync == Fsync::Every {
            self.commit(true);
        }
    }

    /// Assigns `seq`, `ts`, `prev` and `hash` and returns the canonical line.
    fn chain_line(&mut self, record: &Record) -> Result<Vec<u8>, serde_json::Error> {
        let mut value = serde_json::to_value(record)?;
        chain::settle_floats(&mut value);
        let Value::Object(mut map) = value else {
            unreachable!("a Record serialises to an object")
        };
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        map.insert("seq".to_owned(), Value::from(self.next_seq));
        map.insert("ts".to_owned(), Value::String(ts));
        map.insert("prev".to_owned(), Value::String(self.prev.clone()));
        let hash = chain::record_hash(&map);
        map.insert("hash".to_owned(), Value::String(hash.clone()));
        let mut value = Value::Object(map);
        value.sort_all_objects();
        let mut line = serde_json::to_vec(&value)?;
        line.push(b'\n');
        self.next_seq += 1;
        self.prev = hash;
        Ok(line)
    }

    /// Pushes buffered records to the file (and to stable storage when `sync`).
    fn commit(&mut self, sync: bool) {
        if self.failed || self.unflushed == 0 {
            return;
        }
        if let Err(err) = self.out.flush() {
            return self.fail("write", &err);
        }
        if sync {
            if let Err(err) = self.out.get_ref().sync_data() {
                return self.fail("fsync", &err);
            }
        }
        self.written.inc_by(self.unflushed);
        self.unflushed = 0;
    }

    fn fail(&mut self, what: &str, err: &dyn std::fmt::Display) {
        // Logged once, and without the record: it may be exactly what the disk refused.
        tracing::error!(
            path = %self.path.display(),
            error = %err,
            "audit trail {what} failed; denying all requests from now on"
        );
        self.failed = true;
        self.lost += self.unflushed;
        self.unflushed = 0;
        self.healthy.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify_file;
    use std::time::{Duration, Instant};

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cordon-audit-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn counter() -> prometheus::IntCounter {
        prometheus::IntCounter::new("audit_records_written", "test").unwrap()
    }

    fn record(detail: String) -> Record {
        Record {
            kind: "http",
            decision: "allow",
            host: Some("api.github.com".to_owned()),
            port: Some(443),
            duration_ms: Some(0.1 + 0.2),
            detail: Some(detail),
            ..Record::default()
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Map<String, Value>> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| chain::parse_line(l.as_bytes()).unwrap())
            .collect()
    }

    fn write_n(path: &Path, fsync: Fsync, n: usize) {
        let (handle, writer) = AuditWriter::open(path, fsync, counter()).unwrap();
        for i in 0..n {
            handle.record(record(format!("r{i}")));
        }
        writer.shutdown();
    }

    #[test]
    fn chain_continues_across_reopen() {
        let path = temp_dir("reopen").join("audit.jsonl");
        write_n(&path, Fsync::Batch, 3);
        write_n(&path, Fsync::Batch, 2);
        assert_eq!(verify_file(&path).unwrap().records, 5);
        let records = lines(&path);
        let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(records[0]["prev"], GENESIS_PREV);
        assert_eq!(records[3]["prev"], records[2]["hash"]);
        let ts = records[0]["ts"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
    }

    #[test]
    fn new_file_is_created_owner_rw_group_r() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_dir("mode").join("audit.jsonl");
        write_n(&path, Fsync::None, 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may only remove bits; the group must never gain write, others nothing.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let path = temp_dir("nodir").join("absent").join("audit.jsonl");
        let err = AuditWriter::open(&path, Fsync::Batch, counter())
            .err()
            .expect("must refuse");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(!path.parent().unwrap().exists());
    }

    #[test]
    fn broken_tail_refuses_to_open() {
        let dir = temp_dir("torn");
        let cases: [(&str, &[u8]); 4] = [
            ("torn", b"{\"seq\":3,\"hash\":\"sha2"),
            ("garbage", b"not json\n"),
            ("no-hash", b"{\"seq\":3}\n"),
            ("forged", b"{\"hash\":\"sha256:00\",\"seq\":3}\n"),
        ];
        for (name, tail) in cases {
            let path = dir.join(format!("{name}.jsonl"));
            write_n(&path, Fsync::Batch, 2);
            let mut file = OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(tail).unwrap();
            drop(file);
            let before = std::fs::read(&path).unwrap();
            let err = AuditWriter::open(&path, Fsync::Batch, counter())
                .err()
                .unwrap_or_else(|| panic!("{name}: must refuse"));
            let text = err.to_string();
            assert!(text.contains("broken record"), "{name}: {text}");
            assert!(text.contains("cordon audit verify"), "{name}: {text}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                before,
                "{name}: file touched"
            );
        }
    }

    #[test]
    fn long_last_record_is_found_beyond_the_first_tail_chunk() {
        let path = temp_dir("long").join("audit.jsonl");
        write_n(&path, Fsync::Batch, 1);
        let (handle, writer) = AuditWriter::open(&path, Fsync::Batch, counter()).unwrap();
        handle.record(record("x".repeat(300_000)));
        writer.shutdown();
        write_n(&path, Fsync::Batch, 1);
        assert_eq!(verify_file(&path).unwrap().records, 3);
    }

    #[test]
    fn concurrent_handles_all_land_in_one_chain() {
        let path = temp_dir("concurrent").join("audit.jsonl");
        let written = counter();
        let (handle, writer) = AuditWriter::open(&path, Fsync::Batch, written.clone()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        handle.record(record(format!("t{t}-{i}")));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.shutdown();
        assert_eq!(verify_file(&path).unwrap().records, 8000);
        assert_eq!(written.get(), 8000);
        let records = lines(&path);
        for pair in records.windows(2) {
            assert!(pair[0]["seq"].as_u64() < pair[1]["seq"].as_u64());
        }
        let mut details: Vec<String> = records
            .iter()
            .map(|r| r["detail"].as_str().unwrap().to_owned())
            .collect();
        details.sort();
        details.dedup();
        assert_eq!(details.len(), 8000);
        // Each thread's own records keep their order.
        for t in 0..8 {
            let prefix = format!("t{t}-");
            let mine: Vec<u32> = records
                .iter()
                .filter_map(|r| r["detail"].as_str().unwrap().strip_prefix(&prefix))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn every_fsync_mode_writes_a_verifiable_chain() {
        let dir = temp_dir("fsync");
        for (name, mode) in [
            ("every", Fsync::Every),
            ("batch", Fsync::Batch),
            ("none", Fsync::None),
        ] {
            let path = dir.join(format!("{name}.jsonl"));
            write_n(&path, mode, 200);
            write_n(&path, mode, 1);
            assert_eq!(verify_file(&path).unwrap().records, 201, "{name}");
        }
    }

    #[test]
    fn full_disk_flips_healthy_and_stops_counting() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            eprintln!("skipped: /dev/full is not available to simulate a full disk");
            return;
        }
        let written = counter();
        let (handle, writer) = AuditWriter::open(full, Fsync::Every, written.clone()).unwrap();
        assert!(handle.healthy());
        handle.record(record("first".to_owned()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.healthy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !handle.healthy(),
            "a failed write must mark the trail unhealthy"
        );
        handle.record(record("after".to_owned()));
        assert!(!handle.healthy(), "stays unhealthy");
        writer.shutdown();
        assert_eq!(written.get(), 0);
    }

    #[test]
    fn recording_after_shutdown_marks_unhealthy_without_panicking() {
        let path = temp_dir("gone").join("audit.jsonl");
        let (handle, writer) = AuditWriter::open(&path, Fsync::Batch, counter()).unwrap();
        handle.record(record("kept".to_owned()));
        writer.shutdown();
        assert!(handle.healthy());
        handle.record(record("late".to_owned()));
        assert!(!handle.healthy());
        assert_eq!(verify_file(&path).unwrap().records, 1);
    }
}
