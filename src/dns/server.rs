//! The resolver's sockets: UDP and TCP on the same address.

use super::DnsService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The largest query cordon reads over TCP; real queries are a few hundred bytes.
const MAX_TCP_QUERY: usize = 4096;

/// Answers UDP queries until `shutdown` turns true.
pub async fn serve_udp(
    socket: UdpSocket,
    service: Arc<DnsService>,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::debug!(error = %err, "DNS receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let packet = buf[..n].to_vec();
        let socket = socket.clone();
        let service = service.clone();
        tokio::spawn(async move {
            if let Some(response) = service.handle(&packet, true).await {
                let _ = socket.send_to(&response, peer).await;
            }
        });
    }
}

/// Answers TCP queries (2-byte length prefix) until `shutdown` turns true.
pub async fn serve_tcp(
    listener: TcpListener,
    service: Arc<DnsService>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let service = service.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let mut len = [0u8; 2];
                match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let len = u16::from_be_bytes(len) as usize;
                if len == 0 || len > MAX_TCP_QUERY {
                    // Not a query cordon will read; closing is the only safe answer.
                    return;
                }
                let mut packet = vec![0u8; len];
                match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let Some(response) = service.handle(&packet, false).await else {
                    return;
                };
                let mut framed = Vec::with_capacity(response.len() + 2);
                framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
                framed.extend_from_slice(&response);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Writes the resolver's aggregated audit records once a second until `shutdown`.
pub async fn flush_records(service: Arc<DnsService>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => service.flush_records(),
            _ = shutdown.changed() => {
                service.flush_records();
                return;
            }
        }
    }
}
