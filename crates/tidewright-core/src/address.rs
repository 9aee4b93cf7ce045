//! Which addresses are the public internet, and what the others are: where
//! tidewright's own connections out (a webhook's delivery, a step's egress) must
//! not be turned inside a network (loopback, a private network, the cloud
//! metadata address) by a name that resolves there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPv4 networks [`not_public`] refuses, as CIDRs: for what can only
/// say "these addresses and no others" (a Kubernetes NetworkPolicy).
pub const NON_PUBLIC_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
];

/// The IPv6 networks [`not_public`] refuses, as CIDRs. Stricter than it in
/// two places: all of `::/8` (IPv4-mapped addresses never travel as such)
/// and all of NAT64's `64:ff9b::/96`.
pub const NON_PUBLIC_V6: &[&str] = &[
    "::/8",
    "64:ff9b::/96",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// `None` when `ip` is a public address; else what it is, for the refusal.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let what = match (a, b, c) {
        (127, _, _) => "a loopback address",
        (169, 254, _) => "a link-local address (where clouds serve instance metadata)",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, b, _) if (16..32).contains(&b) => "a private address",
        (100, b, _) if (64..128).contains(&b) => "a shared (carrier-grade NAT) address",
        (0, _, _) => "an unspecified address",
        (a, _, _) if a >= 224 => "a multicast, broadcast or reserved address",
        _ => return None,
    };
    Some(what)
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return not_public_v4(v4);
    }
    let what = match segments[0] {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        s if s & 0xfe00 == 0xfc00 => "a private (unique local) address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xffc0 == 0xfec0 => "a site-local address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        // ::a.b.c.d and the rest of ::/8 (besides the above): not routed.
        0 => "a reserved address",
        _ => return None,
    };
    Some(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
        let (net, bits) = cidr.split_once('/').expect("a CIDR");
        let bits: u32 = bits.parse().expect("prefix length");
        match (ip, net.parse::<IpAddr>().expect("network")) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(ip), IpAddr::V6(net)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    #[test]
    fn the_cidr_lists_hold_every_non_public_address_and_start_at_one() {
        let cidrs = || NON_PUBLIC_V4.iter().chain(NON_PUBLIC_V6);
        for cidr in cidrs() {
            let first: IpAddr = cidr.split_once('/').expect("cidr").0.parse().expect("ip");
            assert!(
                not_public(first).is_some(),
                "{cidr} starts at a public address"
            );
        }
        let non_public = [
            "0.1.2.3",
            "10.255.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ];
        for ip in non_public {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(not_public(ip).is_some(), "{ip} is non-public");
            assert!(cidrs().any(|c| in_cidr(ip, c)), "{ip} is in no CIDR");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(not_public(ip).is_none());
            assert!(!cidrs().any(|c| in_cidr(ip, c)), "{ip} is public");
        }
    }

    fn says(ip: &str) -> Option<&'static str> {
        not_public(ip.parse().expect("an address"))
    }

    #[test]
    fn the_inside_of_networks_is_not_public() {
        for inside in [
            "127.0.0.2",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:10.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(says(inside).is_some(), "{inside}");
        }
        assert_eq!(
            says("169.254.169.254"),
            Some("a link-local address (where clouds serve instance metadata)")
        );
        for public in [
            "1.1.1.1",
            "140.82.112.3",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert_eq!(says(public), None, "{public}");
        }
    }
}
