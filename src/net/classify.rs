//! Classifies IP addresses so that only public ones, or ones a rule lists, are dialed.

use ipnet::IpNet;
use std::net::IpAddr;

/// The class of an address; everything but `Public` needs an `allow_ips` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    Cgnat,
    Multicast,
    Unspecified,
    Broadcast,
    Metadata,
    Reserved,
}

impl AddrClass {
    /// Lower-case name used in hints and logs.
    pub fn as_str(self) -> &'static str {
        todo!()
    }
}

/// Classifies an address; IPv6 forms that embed an IPv4 address take its class.
pub fn classify(ip: IpAddr) -> AddrClass {
    let _ = ip;
    todo!()
}

/// `Ok` when the address is public or inside one of `allow` (matched literally).
pub fn permitted(ip: IpAddr, allow: &[IpNet]) -> Result<(), AddrClass> {
    let _ = (ip, allow);
    todo!()
}
