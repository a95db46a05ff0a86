//! How the program's maps key an address: IPv6 as it is, IPv4 in its
//! IPv4-mapped form (`::ffff:a.b.c.d`), so one 16-byte key holds both
//! families (ARCHITECTURE §3). User space encodes and decodes it here only;
//! and MAC addresses are written as text here only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::v4_mapped;

/// The map key of `addr`.
pub fn key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The IPv4 address a key holds, if it holds one.
pub fn key_v4(key: [u8; 16]) -> Option<Ipv4Addr> {
    Ipv6Addr::from(key).to_ipv4_mapped()
}

/// The address a key holds. All zeros, the program's "no address" (a frame
/// without IP, such as ARP), reads as `0.0.0.0`.
pub fn from_key(key: [u8; 16]) -> IpAddr {
    match key_v4(key) {
        Some(v4) => IpAddr::V4(v4),
        None if key == [0; 16] => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V6(Ipv6Addr::from(key)),
    }
}

/// A MAC address as operators write it: `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_both_families() {
        for a in ["192.0.2.7", "2001:db8::7", "::1", "0.0.0.0"] {
            let a: IpAddr = a.parse().expect("address");
            assert_eq!(from_key(key(a)), a, "{a}");
        }
        let k = key("10.1.2.3".parse().expect("address"));
        assert_eq!(k[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(key_v4(k), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(key_v4(key("2001:db8::1".parse().expect("address"))), None);
        assert_eq!(mac_text([0, 0x1b, 0x63, 0x84, 0x45, 0xe6]), "00:1b:63:84:45:e6");
    }
}
