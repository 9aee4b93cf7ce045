//! Which addresses are the public internet, and what the others are: where
//! orca's own connections out (a webhook's delivery, a step's egress) must
//! not be turned inside a network (loopback, a private network, the cloud
//! metadata address) by a name that resolves there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
