//! Plain-HTTP requests go through a pooled client that dials by URI. To let it fall back
//! from one checked address to the next (as CONNECT does) without ever resolving a name,
//! the checked addresses themselves are written into the URI's host as a name only
//! [`PinnedAddrs`] understands: `4-127-0-0-1.6-<32 hex>.cordon-pinned.invalid`. Decoding is
//! all this "resolver" does. Connections are pooled per address set, so a kept-alive
//! connection is only reused for a request whose checked addresses are the same.

use std::future::Ready;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

/// The suffix of every encoded name (`.invalid` can never resolve anywhere).
const SUFFIX: &str = ".cordon-pinned.invalid";
/// The most addresses carried (a DNS name is at most 253 characters).
const MOST: usize = 6;

/// The host for a URI that dials exactly `addrs`, in order (at most the first six).
pub fn encode(addrs: &[IpAddr]) -> String {
    use std::fmt::Write;
    let mut host = String::with_capacity(addrs.len() * 36 + SUFFIX.len());
    for (i, ip) in addrs.iter().take(MOST).enumerate() {
        if i > 0 {
            host.push('.');
        }
        let _ = match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                write!(host, "4-{a}-{b}-{c}-{d}")
            }
            IpAddr::V6(v6) => write!(host, "6-{}", crate::os::hex(&v6.octets())),
        };
    }
    host.push_str(SUFFIX);
    host
}

/// The addresses of a host made by [`encode`]; `None` for anything else.
pub fn decode(host: &str) -> Option<Vec<IpAddr>> {
    let labels = host.strip_suffix(SUFFIX)?;
    labels.split('.').map(decode_label).collect()
}

fn decode_label(label: &str) -> Option<IpAddr> {
    if let Some(v4) = label.strip_prefix("4-") {
        let octets: Vec<u8> = v4
            .split('-')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        let [a, b, c, d] = octets.try_into().ok()?;
        return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    let hex = label.strip_prefix("6-")?;
    if hex.len() != 32 {
        return None;
    }
    let mut octets = [0u8; 16];
    for (i, octet) in octets.iter_mut().enumerate() {
        *octet = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// The plain-HTTP client's "resolver": decodes [`encode`]d hosts, refuses every other name.
#[derive(Debug, Clone, Copy, Default)]
pub struct PinnedAddrs;

/// A name that is not an encoded address list: nothing is resolved for it.
#[derive(Debug, thiserror::Error)]
#[error("cordon dials only addresses it has checked; {0:?} is not one")]
pub struct NotPinned(String);

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for PinnedAddrs {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = NotPinned;
    type Future = Ready<Result<Self::Response, NotPinned>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), NotPinned>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        std::future::ready(match decode(name.as_str()) {
            Some(addrs) => Ok(addrs
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter()),
            None => Err(NotPinned(name.as_str().to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_in_order() {
        let addrs: Vec<IpAddr> = ["127.0.0.3", "::1", "10.1.2.3", "fd00:ec2::254", "0.0.0.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let host = encode(&addrs);
        assert!(host.len() <= 253);
        assert!(format!("http://{host}:80/").parse::<http::Uri>().is_ok());
        assert_eq!(decode(&host), Some(addrs));
    }

    #[test]
    fn other_names_are_never_resolved() {
        for host in [
            "example.com",
            "4-127-0-0-1.example.com",
            "4-127-0-0.cordon-pinned.invalid",
            "4-127-0-0-256.cordon-pinned.invalid",
            "6-00.cordon-pinned.invalid",
            "x.cordon-pinned.invalid",
            ".cordon-pinned.invalid",
        ] {
            assert_eq!(decode(host), None, "{host}");
        }
    }
}
