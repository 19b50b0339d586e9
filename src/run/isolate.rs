//! `cordon run --isolate`: the child runs in a network namespace of its own whose only
//! way out is cordon.
//!
//! The namespace is made by util-linux `unshare` (user, network and mount namespaces),
//! which then executes `cordon isolated` inside it. That helper brings up the namespace's
//! loopback, points `/etc/resolv.conf` (in its private mount namespace only) at
//! `127.0.0.1`, and listens there on the proxy port and on port 53. Each connection it
//! accepts is carried over a Unix socket in the run directory to cordon outside, which
//! hands it to its own proxy and DNS listeners: a filesystem socket is the one channel
//! that crosses network namespaces without giving the child a route anywhere. Only then
//! does the helper start the child.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};

/// How long the helper may take to set the namespace up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a DNS query relayed from inside may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The programs isolation needs, found on `PATH` before anything runs.
pub struct Tools {
    unshare: PathBuf,
}

/// Finds `unshare`, `ip` and `mount`; the error says which is missing.
pub fn tools() -> Result<Tools, String> {
    let find = |name: &str, package: &str| {
        crate::os::which(name).ok_or_else(|| {
            format!(
                "`{name}` ({package}) was not found on PATH; it is needed to create the namespace"
            )
        })
    };
    let unshare = find("unshare", "util-linux")?;
    find("ip", "iproute2")?;
    find("mount", "util-linux")?;
    Ok(Tools { unshare })
}

/// The run directory's sockets and files that the helper inside uses.
struct Paths {
    proxy: PathBuf,
    dns: PathBuf,
    ready: PathBuf,
    resolv: PathBuf,
}

fn paths(dir: &Path) -> Paths {
    Paths {
        proxy: dir.join("proxy.sock"),
        dns: dir.join("dns.sock"),
        ready: dir.join("ready.sock"),
        resolv: dir.join("resolv.conf"),
    }
}

/// The outside half: Unix sockets relaying to cordon's own listeners, and the readiness
/// socket the helper reports on.
pub struct Bridge {
    ready: UnixListener,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    /// Binds the sockets in `dir` and starts relaying.
    pub fn open(dir: &Path, proxy: SocketAddr, dns: SocketAddr) -> Result<Bridge, String> {
        let paths = paths(dir);
        std::fs::write(&paths.resolv, "nameserver 127.0.0.1\noptions ndots:0\n")
            .map_err(|e| format!("cannot write {}: {e}", paths.resolv.display()))?;
        let bind = |path: &Path| {
            UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))
        };
        let tasks = vec![
            tokio::spawn(relay_to(bind(&paths.proxy)?, proxy)),
            tokio::spawn(relay_to(bind(&paths.dns)?, dns)),
        ];
        Ok(Bridge {
            ready: bind(&paths.ready)?,
            tasks,
        })
    }

    /// Waits until the helper reports that the namespace is set up; `Err` carries why not.
    pub async fn ready(&self) -> Result<(), String> {
        let wait = async {
            let (mut stream, _) = self
                .ready
                .accept()
                .await
                .map_err(|e| format!("waiting for the namespace: {e}"))?;
            let mut line = String::new();
            let _ = stream.read_to_string(&mut line).await;
            match line.trim() {
                "ready" => Ok(()),
                other => Err(other.to_owned()),
            }
        };
        tokio::time::timeout(READY_TIMEOUT, wait)
            .await
            .map_err(|_| "the namespace was not ready within 10 s".to_owned())?
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Hands each connection arriving on `listener` to the TCP listener at `to`.
async fn relay_to(listener: UnixListener, to: SocketAddr) {
    loop {
        let Ok((mut inside, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outside) = TcpStream::connect(to).await {
                let _ = outside.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
            }
        });
    }
}

/// The command that creates the namespace and runs `cordon isolated` in it.
pub fn command(
    tools: &Tools,
    dir: &Path,
    proxy_port: u16,
    session: bool,
    child: &[OsString],
) -> Result<tokio::process::Command, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find cordon's own executable: {e}"))?;
    let mut cmd = tokio::process::Command::new(&tools.unshare);
    // Always a user namespace, even when cordon is root: it grants the rights to configure
    // the other two, and only inside them. A child keeping root's capabilities in the
    // host's user namespace could enter cordon's own network namespace
    // (/proc/<cordon>/ns/net) and go around it, or read cordon's memory despite it being
    // not dumpable.
    cmd.args(["--user", "--map-root-user"]);
    cmd.args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .arg("isolated")
        .arg("--dir")
        .arg(dir)
        .arg("--proxy-port")
        .arg(proxy_port.to_string());
    if session {
        cmd.arg("--session");
    }
    cmd.arg("--").args(child);
    Ok(cmd)
}

/// `cordon isolated`: runs inside the new namespaces; sets them up, reports readiness to
/// cordon outside, runs the child and returns its exit code.
/// With `session`, the child is started through `cordon session` so that the terminal
/// on its stdin becomes its controlling terminal.
pub fn inside(dir: &Path, proxy_port: u16, session: bool, child: &[OsString]) -> i32 {
    let paths = paths(dir);
    let report = |message: &str| {
        // Best effort: cordon outside turns this into its exit-2 message.
        if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&paths.ready) {
            use std::io::Write;
            let _ = stream.write_all(message.as_bytes());
        }
    };
    if let Err(problem) = prepare(&paths) {
        report(&problem);
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("cannot start the runtime: {err}"));
            return 2;
        }
    };
    runtime.block_on(async {
        let listeners = match listen(proxy_port).await {
            Ok(listeners) => listeners,
            Err(problem) => {
                report(&problem);
                return 2;
            }
        };
        let (proxy, dns_udp, dns_tcp) = listeners;
        tokio::spawn(relay_from(proxy, paths.proxy.clone()));
        tokio::spawn(relay_from(dns_tcp, paths.dns.clone()));
        tokio::spawn(relay_dns_udp(dns_udp, paths.dns.clone()));
        report("ready");
        let mut cmd = if session {
            match crate::run::session_command(child) {
                Ok(cmd) => cmd,
                Err(err) => {
                    eprintln!("cordon run: {err}");
                    return 126;
                }
            }
        } else {
            let mut cmd = tokio::process::Command::new(&child[0]);
            cmd.args(&child[1..]);
            cmd
        };
        cmd.kill_on_drop(false);
        crate::run::run_child(cmd).await
    })
}

/// Loopback up, resolv.conf pointed at the namespace's own resolver address.
fn prepare(paths: &Paths) -> Result<(), String> {
    tool("ip", &["link", "set", "lo", "up"], "bringing up loopback")?;
    let resolv = paths.resolv.to_string_lossy().into_owned();
    tool(
        "mount",
        &["--bind", &resolv, "/etc/resolv.conf"],
        "pointing /etc/resolv.conf at cordon",
    )
}

fn tool(program: &str, args: &[&str], what: &str) -> Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: `{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

async fn listen(proxy_port: u16) -> Result<(TcpListener, UdpSocket, TcpListener), String> {
    let proxy = TcpListener::bind(("127.0.0.1", proxy_port))
        .await
        .map_err(|e| format!("binding the proxy port {proxy_port} inside: {e}"))?;
    let udp = UdpSocket::bind("127.0.0.1:53")
        .await
        .map_err(|e| format!("binding 127.0.0.1:53/udp inside: {e}"))?;
    let tcp = TcpListener::bind("127.0.0.1:53")
        .await
        .map_err(|e| format!("binding 127.0.0.1:53/tcp inside: {e}"))?;
    Ok((proxy, udp, tcp))
}

/// Carries each TCP connection made inside to the Unix socket `to`.
async fn relay_from(listener: TcpListener, to: PathBuf) {
    loop {
        let Ok((mut inside, _)) = listener.accept().await else {
            continue;
        };
        let _ = inside.set_nodelay(true);
        let to = to.clone();
        tokio::spawn(async move {
            if let Ok(mut outside) = UnixStream::connect(&to).await {
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
            }
        });
    }
}

/// Answers each UDP query by asking cordon's DNS listener over the Unix socket, in DNS's
/// TCP framing (a two-byte length before each message).
async fn relay_dns_udp(socket: UdpSocket, to: PathBuf) {
    let socket = std::sync::Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..n].to_vec();
        let socket = socket.clone();
        let to = to.clone();
        tokio::spawn(async move {
            let ask = async {
                let mut stream = UnixStream::connect(&to).await?;
                let mut framed = (query.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&query);
                stream.write_all(&framed).await?;
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await?;
                let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
                stream.read_exact(&mut answer).await?;
                std::io::Result::Ok(answer)
            };
            if let Ok(Ok(answer)) = tokio::time::timeout(DNS_TIMEOUT, ask).await {
                let answer = fit_for_udp(&query, answer);
                let _ = socket.send_to(&answer, peer).await;
            }
        });
    }
}

/// An answer fetched over the stream, made fit for the UDP client that asked: when it is
/// larger than the client said it can take (512 bytes, or its EDNS size), the records are
/// left out and the answer marked truncated, so the client asks again over TCP.
fn fit_for_udp(query: &[u8], answer: Vec<u8>) -> Vec<u8> {
    use hickory_proto::op::Message;
    let limit = Message::from_vec(query)
        .ok()
        .and_then(|q| {
            q.extensions()
                .as_ref()
                .map(|e| usize::from(e.max_payload()))
        })
        .unwrap_or(512)
        .max(512);
    if answer.len() <= limit {
        return answer;
    }
    let Ok(mut message) = Message::from_vec(&answer) else {
        return answer;
    };
    message.take_answers();
    message.take_name_servers();
    message.take_additionals();
    message.set_truncated(true);
    message.to_vec().unwrap_or(answer)
}

#[cfg(test)]
mod tests {
    use super::fit_for_udp;
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(name: &str) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .set_message_type(MessageType::Query)
            .add_query(Query::query(
                Name::from_ascii(name).unwrap(),
                RecordType::TXT,
            ));
        q
    }

    #[test]
    fn large_answers_are_truncated_for_udp_and_small_ones_pass() {
        let q = query("big.test.");
        let mut big = q.clone();
        big.set_message_type(MessageType::Response);
        for i in 0..20 {
            big.add_answer(Record::from_rdata(
                Name::from_ascii("big.test.").unwrap(),
                60,
                RData::TXT(TXT::new(vec![format!("{i:03}").repeat(30)])),
            ));
        }
        let bytes = big.to_vec().unwrap();
        assert!(bytes.len() > 512);
        let fitted = Message::from_vec(&fit_for_udp(&q.to_vec().unwrap(), bytes)).unwrap();
        assert!(fitted.truncated());
        assert!(fitted.answers().is_empty());
        assert_eq!(fitted.id(), 7);

        let mut small = q.clone();
        small.set_message_type(MessageType::Response);
        let bytes = small.to_vec().unwrap();
        assert_eq!(fit_for_udp(&q.to_vec().unwrap(), bytes.clone()), bytes);
    }
}
