//! Watches the agent's bytes on their way into hyper and flags a request head that
//! carries both `Content-Length` and `Transfer-Encoding`. hyper resolves that conflict
//! safely (chunked wins, the connection closes after), but it is the signature of a
//! smuggling attempt, so cordon refuses the request outright and records it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most header lines a head may have before the watcher stops looking.
const MAX_HEADERS: usize = 128;

/// What the watcher learned about a connection.
#[derive(Default, Debug)]
pub struct ConnFlags {
    /// A head carried both framing headers.
    pub conflicting_framing: AtomicBool,
    /// A head (or chunk-size or trailer line) grew past the limit.
    pub oversized_head: AtomicBool,
}

/// What one `feed` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Nothing wrong so far.
    Clean,
    /// A head carried both `Content-Length` and `Transfer-Encoding`.
    ConflictingFraming,
    /// A head grew past the limit; hyper may still accept it, cordon does not.
    OversizedHead,
}

/// Where the watcher is in the byte stream.
#[derive(Debug, PartialEq)]
enum Phase {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    /// A tunnel, an upgrade, or bytes hyper will refuse: nothing more to watch.
    Done,
}

/// Tracks message boundaries just far enough to see every request head.
#[derive(Debug)]
pub struct FramingWatch {
    phase: Phase,
    pending: Vec<u8>,
    limit: usize,
}

impl FramingWatch {
    /// A watcher for a new connection; heads longer than `limit` are left to hyper.
    pub fn new(limit: usize) -> FramingWatch {
        FramingWatch {
            phase: Phase::Head,
            pending: Vec::new(),
            limit,
        }
    }

    /// Feeds bytes as read and reports the first problem seen.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Finding {
        while !bytes.is_empty() {
            match self.phase {
                Phase::Done => return Finding::Clean,
                Phase::Body(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.phase = if take == left {
                        Phase::Head
                    } else {
                        Phase::Body(left - take)
                    };
                }
                Phase::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.phase = if take == left {
                        Phase::ChunkEnd(2)
                    } else {
                        Phase::ChunkData(left - take)
                    };
                }
                Phase::ChunkEnd(left) => {
                    bytes = &bytes[1..];
                    self.phase = if left == 1 {
                        Phase::ChunkSize
                    } else {
                        Phase::ChunkEnd(left - 1)
                    };
                }
                Phase::Head | Phase::ChunkSize | Phase::Trailers => {
                    let take = match bytes.iter().position(|b| *b == b'\n') {
                        Some(i) => i + 1,
                        None => bytes.len(),
                    };
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() > self.limit {
                        self.phase = Phase::Done;
                        return Finding::OversizedHead;
                    }
                    if self.pending.last() == Some(&b'\n') && self.step() {
                        self.phase = Phase::Done;
                        return Finding::ConflictingFraming;
                    }
                }
            }
        }
        Finding::Clean
    }

    /// Acts on a complete line in `pending`; true on conflicting framing.
    fn step(&mut self) -> bool {
        match self.phase {
            Phase::Head => {
                if self.pending == b"\r\n" || self.pending == b"\n" {
                    // Empty lines before a request line are allowed and ignored.
                    self.pending.clear();
                    return false;
                }
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&self.pending) {
                    Ok(httparse::Status::Partial) => false,
                    Ok(httparse::Status::Complete(_)) => {
                        let next = next_phase(&req);
                        self.pending.clear();
                        match next {
                            Some(phase) => {
                                self.phase = phase;
                                false
                            }
                            None => true,
                        }
                    }
                    Err(_) => {
                        self.phase = Phase::Done;
                        false
                    }
                }
            }
            Phase::ChunkSize => {
                match httparse::parse_chunk_size(&self.pending) {
                    Ok(httparse::Status::Complete((_, 0))) => self.phase = Phase::Trailers,
                    Ok(httparse::Status::Complete((_, size))) => {
                        self.phase = Phase::ChunkData(size)
                    }
                    Ok(httparse::Status::Partial) => return false,
                    Err(_) => self.phase = Phase::Done,
                }
                self.pending.clear();
                false
            }
            Phase::Trailers => {
                if self.pending == b"\r\n" || self.pending == b"\n" {
                    self.phase = Phase::Head;
                }
                self.pending.clear();
                false
            }
            _ => false,
        }
    }
}

/// The phase after a complete head, or `None` when it carries both framing headers.
fn next_phase(req: &httparse::Request<'_, '_>) -> Option<Phase> {
    let mut length = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut upgrade = false;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(Some(u64::MAX));
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            chunked = header
                .value
                .trim_ascii()
                .to_ascii_lowercase()
                .ends_with(b"chunked");
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if transfer_encoding && length.is_some() {
        return None;
    }
    Some(if req.method == Some("CONNECT") || upgrade {
        Phase::Done
    } else if transfer_encoding {
        if chunked {
            Phase::ChunkSize
        } else {
            Phase::Done
        }
    } else {
        match length {
            Some(u64::MAX) => Phase::Done,
            Some(0) | None => Phase::Head,
            Some(n) => Phase::Body(n),
        }
    })
}

/// The agent's socket with a [`FramingWatch`] on its read side.
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
    flags: Arc<ConnFlags>,
}

impl<S> Watched<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S, flags: Arc<ConnFlags>, limit: usize) -> Watched<S> {
        Watched {
            inner,
            watch: FramingWatch::new(limit),
            flags,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let fresh = &buf.filled()[before..];
            match self.watch.feed(fresh) {
                Finding::Clean => {}
                Finding::ConflictingFraming => {
                    self.flags.conflicting_framing.store(true, Ordering::SeqCst)
                }
                Finding::OversizedHead => self.flags.oversized_head.store(true, Ordering::SeqCst),
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflicting(chunks: &[&[u8]]) -> bool {
        let mut watch = FramingWatch::new(64 * 1024);
        chunks
            .iter()
            .any(|c| watch.feed(c) == Finding::ConflictingFraming)
    }

    #[test]
    fn both_framing_headers_are_flagged_in_either_order() {
        assert!(conflicting(&[b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"]));
        assert!(conflicting(&[
            b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n"
        ]));
    }

    #[test]
    fn a_single_framing_header_is_not_flagged() {
        assert!(!conflicting(&[
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd"
        ]));
        assert!(!conflicting(&[
            b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
        ]));
    }

    #[test]
    fn heads_after_bodies_are_still_seen() {
        // A content-length body, then a chunked body split at awkward places, then the bad head.
        let clean: &[u8] = b"POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        let bad: &[u8] =
            b"GET http://a/ HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = [clean, bad].concat();
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert!(conflicting(&[a, b]), "missed at split {split}");
        }
        for split in 1..clean.len() {
            let (a, b) = clean.split_at(split);
            assert!(!conflicting(&[a, b]), "false alarm at split {split}");
        }
    }

    #[test]
    fn an_oversized_head_is_reported_once() {
        let mut watch = FramingWatch::new(1024);
        assert_eq!(watch.feed(b"GET http://a/ HTTP/1.1\r\n"), Finding::Clean);
        let big = format!("X-Big: {}\r\n", "a".repeat(1100));
        assert_eq!(watch.feed(big.as_bytes()), Finding::OversizedHead);
        assert_eq!(watch.feed(b"\r\n"), Finding::Clean);
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_not_read_as_one() {
        let body =
            b"GET http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST http://a/ HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert!(!conflicting(&[head.as_bytes(), body]));
    }
}
