//! Policies of any size for benchmarks: `n` devices in one protected VLAN,
//! each with ten rules (nine from a shared profile shape plus one of its
//! own, so every device has its own rule set as in a real inventory).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_user::policy::{L4, Peer, Resolved, ResolvedDevice, ResolvedVlan, Rule};
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    s.parse().expect("network literal")
}

/// Most devices a policy of this shape holds (10.110.0.0/15, 250 hosts
/// per /24).
pub const MAX_DEVICES: usize = 250 * 512;

/// IPv4 address of device `i`.
pub fn device_ip(i: usize) -> IpAddr {
    let (hi, lo) = (i / 250, i % 250);
    IpAddr::V4(Ipv4Addr::new(10, 110 + (hi / 256) as u8, (hi % 256) as u8, (lo + 1) as u8))
}

/// IPv6 address of device `i`.
pub fn device_ip6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x110,
        0,
        0,
        0,
        (i >> 16) as u16,
        (i & 0xffff) as u16 + 1,
    ))
}

pub fn policy(n: usize) -> Resolved {
    assert!(n <= MAX_DEVICES, "10.110.0.0/15 holds {MAX_DEVICES} devices");
    let nurses = Peer::Nets(vec![net("10.30.0.0/16"), net("2001:db8:30::/48")]);
    let rule = |peer: &Peer, l4| Rule { peer: peer.clone(), l4 };
    let devices = (0..n)
        .map(|i| {
            let mut allow_in = vec![
                rule(&nurses, L4::Ports { proto: 6, lo: 443, hi: 443 }),
                rule(&nurses, L4::IcmpType { proto: 1, icmp_type: 8 }),
                rule(&nurses, L4::Ports { proto: 17, lo: 5000, hi: 5100 }),
                rule(
                    &Peer::Nets(vec![net("10.40.0.0/24")]),
                    L4::Ports { proto: 6, lo: 8000, hi: 8080 },
                ),
            ];
            // Each device's own admin host: distinct rule sets per device.
            let admin = IpNet::new(
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    31 + (i / 65_536) as u8,
                    (i / 256 % 256) as u8,
                    (i % 256) as u8,
                )),
                32,
            )
            .expect("/32");
            allow_in.push(rule(&Peer::Nets(vec![admin]), L4::Ports { proto: 6, lo: 22, hi: 22 }));
            let allow_out = vec![
                rule(
                    &Peer::Nets(vec![net("10.20.5.10/32")]),
                    L4::Ports { proto: 6, lo: 443, hi: 443 },
                ),
                rule(&Peer::Any, L4::Ports { proto: 17, lo: 123, hi: 123 }),
                rule(
                    &Peer::Nets(vec![net("10.20.0.0/16")]),
                    L4::Ports { proto: 17, lo: 53, hi: 53 },
                ),
                rule(&nurses, L4::Ports { proto: 6, lo: 8000, hi: 8100 }),
                rule(&Peer::Nets(vec![net("10.50.0.0/16")]), L4::Proto(17)),
            ];
            ResolvedDevice {
                name: format!("pump-{i}"),
                vlan: 110,
                addrs: vec![device_ip(i), device_ip6(i)],
                mac: None,
                allow_in,
                allow_out,
                monitor: false,
                rate_limit: Default::default(),
            }
        })
        .collect();
    Resolved {
        allow_arp: true,
        allow_ndp: true,
        allow_dhcp: true,
        events_per_sec: 100,
        debug_log: false,
        monitor: false,
        scan_detection: None,
        management: Vec::new(),
        flow_timeouts: filter_common::DEFAULT_FLOW_TIMEOUTS,
        vlans: vec![ResolvedVlan {
            id: 110,
            name: "pumps".into(),
            subnets: vec![net("10.110.0.0/15"), net("2001:db8:110::/48")],
            protected: true,
        }],
        devices,
        interfaces: Vec::new(),
    }
}
