//! Classifies IP addresses so that only public ones, or ones a rule lists, are dialed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of an address; everything but `Public` needs an `allow_ips` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Routable on the internet.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, unique-local and site-local ranges.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT, 100.64.0.0/10.
    Cgnat,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// Cloud instance-metadata endpoints, which hand out credentials.
    Metadata,
    /// Documentation, benchmarking, protocol-assignment and future-use ranges.
    Reserved,
}

impl AddrClass {
    /// Lower-case name used in hints and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link_local",
            AddrClass::Cgnat => "cgnat",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Metadata => "metadata",
            AddrClass::Reserved => "reserved",
        }
    }
}

/// Classifies an address; IPv6 forms that embed an IPv4 address take its class.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `Ok` when the address is public or inside one of `allow` (matched literally).
pub fn permitted(ip: IpAddr, allow: &[IpNet]) -> Result<(), AddrClass> {
    let class = classify(ip);
    // No v4/v6 translation here: allowing 127.0.0.1 must not quietly allow its mapped form.
    if class == AddrClass::Public || allow.iter().any(|net| net.contains(&ip)) {
        Ok(())
    } else {
        Err(class)
    }
}

/// Whether `ip` lies in `base/len`.
fn in_v4(ip: u32, base: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip & mask == u32::from_be_bytes(base) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let n = u32::from(ip);
    // Metadata endpoints sit inside link-local, CGNAT and reserved ranges, so they go first.
    const METADATA: [[u8; 4]; 3] = [[169, 254, 169, 254], [100, 100, 100, 200], [192, 0, 0, 192]];
    if METADATA.contains(&ip.octets()) {
        return AddrClass::Metadata;
    }
    const TABLE: &[([u8; 4], u32, AddrClass)] = &[
        ([0, 0, 0, 0], 32, AddrClass::Unspecified),
        ([0, 0, 0, 0], 8, AddrClass::Reserved),
        ([127, 0, 0, 0], 8, AddrClass::Loopback),
        ([10, 0, 0, 0], 8, AddrClass::Private),
        ([172, 16, 0, 0], 12, AddrClass::Private),
        ([192, 168, 0, 0], 16, AddrClass::Private),
        ([169, 254, 0, 0], 16, AddrClass::LinkLocal),
        ([100, 64, 0, 0], 10, AddrClass::Cgnat),
        ([224, 0, 0, 0], 4, AddrClass::Multicast),
        ([255, 255, 255, 255], 32, AddrClass::Broadcast),
        ([240, 0, 0, 0], 4, AddrClass::Reserved),
        ([192, 0, 0, 0], 24, AddrClass::Reserved),
        ([192, 0, 2, 0], 24, AddrClass::Reserved),
        ([198, 18, 0, 0], 15, AddrClass::Reserved),
        ([198, 51, 100, 0], 24, AddrClass::Reserved),
        ([203, 0, 113, 0], 24, AddrClass::Reserved),
    ];
    TABLE
        .iter()
        .find(|(base, len, _)| in_v4(n, *base, *len))
        .map_or(AddrClass::Public, |(_, _, class)| *class)
}

/// The IPv4 address held in bits `at..at + 32` of an IPv6 address.
fn v4_at(n: u128, at: u32) -> Ipv4Addr {
    Ipv4Addr::from((n >> (96 - at)) as u32)
}

/// Whether `ip` lies in `base/len`.
fn in_v6(ip: u128, base: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip & mask == base & mask
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let n = u128::from(ip);
    const FD00_EC2_254: u128 = 0xfd00_0ec2_0000_0000_0000_0000_0000_0254;
    match n {
        0 => return AddrClass::Unspecified,
        1 => return AddrClass::Loopback,
        FD00_EC2_254 => return AddrClass::Metadata,
        _ => {}
    }
    // ::a.b.c.d (compatible), ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (SIIT
    // translated) all reach the embedded IPv4 host on dual-stack systems.
    if in_v6(n, 0, 96)
        || in_v6(n, 0xffff << 32, 96)
        || in_v6(n, 0xffff_0000 << 32, 96)
        || in_v6(n, 0x0064_ff9b << 96, 96)
    {
        return classify_v4(v4_at(n, 96));
    }
    if in_v6(n, 0x0064_ff9b_0001 << 80, 48) {
        // Local-use NAT64 (RFC 8215) is a site's own translator, so it is private even
        // when what it embeds is public.
        return match classify_v4(v4_at(n, 96)) {
            AddrClass::Public => AddrClass::Private,
            class => class,
        };
    }
    if in_v6(n, 0x2002 << 112, 16) {
        return classify_v4(v4_at(n, 16));
    }
    if in_v6(n, 0x2001_0000 << 96, 32) {
        // Teredo stores the client address inverted so NATs do not rewrite it.
        return classify_v4(Ipv4Addr::from(!(n as u32)));
    }
    const TABLE: &[(u128, u32, AddrClass)] = &[
        (0xfe80 << 112, 10, AddrClass::LinkLocal),
        (0xfec0 << 112, 10, AddrClass::Private),
        (0xfc00 << 112, 7, AddrClass::Private),
        (0xff00 << 112, 8, AddrClass::Multicast),
        (0x2001_0db8 << 96, 32, AddrClass::Reserved),
        (0x0100 << 112, 64, AddrClass::Reserved),
    ];
    TABLE
        .iter()
        .find(|(base, len, _)| in_v6(n, *base, *len))
        .map_or(AddrClass::Public, |(_, _, class)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classes() {
        use AddrClass::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("1.0.0.0", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("128.0.0.1", Public),
            ("10.0.0.1", Private),
            ("11.0.0.1", Public),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("172.15.255.255", Public),
            ("192.168.1.1", Private),
            ("192.169.0.1", Public),
            ("169.254.169.254", Metadata),
            ("169.254.169.253", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("169.255.0.1", Public),
            ("100.64.0.1", Cgnat),
            ("100.127.255.255", Cgnat),
            ("100.128.0.1", Public),
            ("100.63.255.255", Public),
            ("100.100.100.200", Metadata),
            ("100.100.100.201", Cgnat),
            ("192.0.0.192", Metadata),
            ("192.0.0.8", Reserved),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("255.255.255.255", Broadcast),
            ("255.255.255.254", Reserved),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("198.20.0.1", Public),
            ("198.51.100.7", Reserved),
            ("203.0.113.9", Reserved),
            ("203.0.114.9", Public),
            ("8.8.8.8", Public),
            ("140.82.112.6", Public),
        ];
        for (ip, want) in cases {
            assert_eq!(class_of(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_classes() {
        use AddrClass::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("::2", Reserved),
            ("fd00:ec2::254", Metadata),
            ("fd00:ec2::253", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", Private),
            ("fdff::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2001:db9::1", Public),
            ("100::1", Reserved),
            ("100:0:0:1::1", Public),
            ("2606:4700::1111", Public),
            // Mapped.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            // Compatible.
            ("::127.0.0.1", Loopback),
            ("::10.1.2.3", Private),
            ("::8.8.8.8", Public),
            // SIIT translated.
            ("::ffff:0:127.0.0.1", Loopback),
            // NAT64 well-known prefix.
            ("64:ff9b::a01:203", Private),
            ("64:ff9b::169.254.169.254", Metadata),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b:0:1::a01:203", Public),
            // Local-use NAT64.
            ("64:ff9b:1::8.8.8.8", Private),
            ("64:ff9b:1::127.0.0.1", Loopback),
            // 6to4.
            ("2002:a01:203::1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::", Metadata),
            ("2002:808:808::1", Public),
            // Teredo: client 10.1.2.1 stored inverted.
            ("2001:0:4136:e378:8000:63bf:f5fe:fdfe", Private),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Public),
        ];
        for (ip, want) in cases {
            assert_eq!(class_of(ip), want, "{ip}");
        }
    }

    #[test]
    fn names() {
        let all = [
            (AddrClass::Public, "public"),
            (AddrClass::Loopback, "loopback"),
            (AddrClass::Private, "private"),
            (AddrClass::LinkLocal, "link_local"),
            (AddrClass::Cgnat, "cgnat"),
            (AddrClass::Multicast, "multicast"),
            (AddrClass::Unspecified, "unspecified"),
            (AddrClass::Broadcast, "broadcast"),
            (AddrClass::Metadata, "metadata"),
            (AddrClass::Reserved, "reserved"),
        ];
        for (class, name) in all {
            assert_eq!(class.as_str(), name);
        }
    }

    #[test]
    fn permitted_is_literal() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let allow: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        assert_eq!(permitted(ip("8.8.8.8"), &[]), Ok(()));
        assert_eq!(permitted(ip("127.0.0.1"), &[]), Err(AddrClass::Loopback));
        assert_eq!(permitted(ip("127.0.0.1"), &allow), Ok(()));
        assert_eq!(permitted(ip("127.0.0.2"), &allow), Err(AddrClass::Loopback));
        assert_eq!(permitted(ip("10.9.9.9"), &allow), Ok(()));
        assert_eq!(
            permitted(ip("::ffff:127.0.0.1"), &allow),
            Err(AddrClass::Loopback)
        );
        assert_eq!(
            permitted(ip("64:ff9b::a01:203"), &allow),
            Err(AddrClass::Private)
        );
        assert_eq!(
            permitted(ip("169.254.169.254"), &allow),
            Err(AddrClass::Metadata)
        );
        let v6_allow: Vec<IpNet> = vec!["::ffff:127.0.0.1/128".parse().unwrap()];
        assert_eq!(permitted(ip("::ffff:127.0.0.1"), &v6_allow), Ok(()));
        assert_eq!(
            permitted(ip("127.0.0.1"), &v6_allow),
            Err(AddrClass::Loopback)
        );
    }
}
