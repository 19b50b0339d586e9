//! Address classification (SSRF defence), cordon's own resolver, and dialing of checked
//! addresses only.

pub mod classify;
pub mod pinned;
pub mod resolve;

pub use classify::{classify, permitted, AddrClass};
pub use resolve::{ResolveFailure, Resolver};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one TCP connect attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the first reachable address of `addrs` (already checked by the caller);
/// never resolves anything itself.
pub async fn dial(addrs: &[IpAddr], port: u16) -> std::io::Result<(TcpStream, SocketAddr)> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to dial");
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(err)) => last = err,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )
            }
        }
    }
    Err(last)
}
