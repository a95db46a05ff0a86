//! Policies of any size for benchmarks: `n` devices in one protected VLAN,
//! each with ten rules (nine from a shared profile shape plus one of its
//! own, so every device has its own rule set as in a real inventory), as a
//! resolved policy (`policy`) and as a policy file (`policy_toml`) for the
//! daemon.

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

/// Device `i`'s own admin host: distinct rule sets per device.
fn admin_host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 31 + (i / 65_536) as u8, (i / 256 % 256) as u8, (i % 256) as u8)
}

/// Extra rule `k` of device `i` (`policy_with_rules`): its own host
/// (10.64.0.0/10) and port.
fn extra_host(i: usize, k: usize) -> Ipv4Addr {
    let n = (i * 64 + k) as u32;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + n)
}

pub fn policy(n: usize) -> Resolved {
    policy_with_rules(n, 10)
}

/// `policy(n)` with `rules` rules per device (10 or more, at most 74): the
/// rules beyond ten are the device's own, for the memory cost of a rule.
pub fn policy_with_rules(n: usize, rules: usize) -> Resolved {
    assert!(n <= MAX_DEVICES, "10.110.0.0/15 holds {MAX_DEVICES} devices");
    assert!((10..=74).contains(&rules), "10 to 74 rules per device");
    let nurses = Peer::Nets(vec![net("10.30.0.0/16"), net("2001:db8:30::/48")]);
    let rule = |peer: &Peer, l4| Rule { peer: peer.clone(), l4, sport: Rule::ANY_SPORT };
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
            let admin = IpNet::new(IpAddr::V4(admin_host(i)), 32).expect("/32");
            allow_in.push(rule(&Peer::Nets(vec![admin]), L4::Ports { proto: 6, lo: 22, hi: 22 }));
            for k in 0..rules - 10 {
                let host = IpNet::new(IpAddr::V4(extra_host(i, k)), 32).expect("/32");
                let port = 2000 + k as u16;
                allow_in.push(rule(
                    &Peer::Nets(vec![host]),
                    L4::Ports { proto: 6, lo: port, hi: port },
                ));
            }
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
                learns: false,
                allow_in,
                allow_out,
                // As in `policy_toml`: the pump profile's rules first.
                profile_in: 4,
                profile_out: 5,
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
        names: Default::default(),
        dns_refresh_secs: filter_user::policy::DEFAULT_DNS_REFRESH_SECS,
        learned_address_ttl_secs: filter_user::policy::DEFAULT_LEARNED_ADDRESS_TTL_SECS,
    }
}

/// Profiles of the hospital-shaped policy.
pub const HOSPITAL_PROFILES: usize = 20;

/// The shape real sites have: `policy(n)`'s devices in
/// [`HOSPITAL_PROFILES`] profiles, each profile the nine shared rules plus
/// one of its own (a service port of that device class), each device one
/// or two rules of its own (its admin host; every other device also a log
/// host). Same addresses and verdicts for the benchmark's frames.
pub fn hospital(n: usize) -> Resolved {
    let mut p = policy(n);
    for (i, d) in p.devices.iter_mut().enumerate() {
        let profile = i % HOSPITAL_PROFILES;
        let service = Rule {
            peer: Peer::Nets(vec![net(&format!("10.60.{profile}.0/24"))]),
            l4: L4::Ports { proto: 6, lo: 9000 + profile as u16, hi: 9000 + profile as u16 },
            sport: Rule::ANY_SPORT,
        };
        // Profile rules first: the nine shared, then the profile's own;
        // then the device's admin rule (it is last in `policy`).
        let admin = d.allow_in.pop().expect("the admin rule");
        d.allow_in.truncate(4);
        d.allow_in.extend([service, admin]);
        d.profile_in = 5;
        if i % 2 == 0 {
            let log_host = IpNet::new(IpAddr::V4(extra_host(i, 0)), 32).expect("/32");
            d.allow_out.push(Rule {
                peer: Peer::Nets(vec![log_host]),
                l4: L4::Ports { proto: 17, lo: 514, hi: 514 },
                sport: Rule::ANY_SPORT,
            });
        }
    }
    p
}

/// `policy(n)` as a policy file, for the daemon.
pub fn policy_toml(n: usize) -> String {
    assert!(n <= MAX_DEVICES, "10.110.0.0/15 holds {MAX_DEVICES} devices");
    let mut out = String::from(
        "# `policy(n)` of tests/src/scale.rs: generated for benchmarks\n\
         [settings]\nallow_arp = true\nallow_ndp = true\nallow_dhcp = true\n\n\
         [[vlan]]\nid = 110\nname = \"pumps\"\nsubnets = [\"10.110.0.0/15\", \"2001:db8:110::/48\"]\n\n\
         [peers]\nnurses = [\"10.30.0.0/16\", \"2001:db8:30::/48\"]\n\n\
         [[profile]]\nname = \"pump\"\nallow_in = [\n\
         \x20 { from = \"nurses\", proto = \"tcp\", port = 443 },\n\
         \x20 { from = \"nurses\", proto = \"icmp\", icmp_type = 8 },\n\
         \x20 { from = \"nurses\", proto = \"udp\", port = \"5000-5100\" },\n\
         \x20 { from = \"10.40.0.0/24\", proto = \"tcp\", port = \"8000-8080\" },\n]\n\
         allow_out = [\n\
         \x20 { to = \"10.20.5.10\", proto = \"tcp\", port = 443 },\n\
         \x20 { to = \"any\", proto = \"udp\", port = 123 },\n\
         \x20 { to = \"10.20.0.0/16\", proto = \"udp\", port = 53 },\n\
         \x20 { to = \"nurses\", proto = \"tcp\", port = \"8000-8100\" },\n\
         \x20 { to = \"10.50.0.0/16\", proto = \"udp\" },\n]\n",
    );
    for i in 0..n {
        out.push_str(&format!(
            "\n[[device]]\nname = \"pump-{i}\"\nvlan = 110\nip = [\"{}\", \"{}\"]\nprofile = \"pump\"\n\
             allow_in = [ {{ from = \"{}\", proto = \"tcp\", port = 22 }} ]\n",
            device_ip(i),
            device_ip6(i),
            admin_host(i),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use filter_user::policy::Policy;

    #[test]
    fn the_policy_file_is_the_resolved_policy() {
        let file = Policy::from_toml(&super::policy_toml(300)).expect("parses");
        let resolved = file.resolve().expect("resolves");
        let expected = super::policy(300);
        assert_eq!(resolved.devices.len(), expected.devices.len());
        for (got, want) in resolved.devices.iter().zip(&expected.devices) {
            assert_eq!(got.addrs, want.addrs, "{}", want.name);
            let mut got_in = got.allow_in.clone();
            let mut want_in = want.allow_in.clone();
            got_in.sort();
            want_in.sort();
            assert_eq!(got_in, want_in, "{} allow_in", want.name);
            let (mut got_out, mut want_out) = (got.allow_out.clone(), want.allow_out.clone());
            got_out.sort();
            want_out.sort();
            assert_eq!(got_out, want_out, "{} allow_out", want.name);
        }
        assert_eq!(resolved.vlans, expected.vlans);
    }

    #[test]
    fn hospital_devices_share_their_profiles_rules() {
        let p = super::hospital(100);
        let c = filter_user::compile::compile(&p);
        let profiles: std::collections::BTreeSet<_> =
            c.devices.iter().map(|d| (d.policy_in[0], d.policy_out[0])).collect();
        assert_eq!(profiles.len(), super::HOSPITAL_PROFILES, "one shared part per profile");
        for d in &p.devices {
            let own = d.allow_in.len() - d.profile_in + d.allow_out.len() - d.profile_out;
            assert!((1..=2).contains(&own), "{}: {own} rules of its own", d.name);
        }
    }

    #[test]
    fn extra_rules_are_each_devices_own() {
        let p = super::policy_with_rules(1000, 20);
        assert!(p.devices.iter().all(|d| d.allow_in.len() + d.allow_out.len() == 20));
        let mut peers: Vec<_> = p.devices.iter().flat_map(|d| &d.allow_in[5..]).collect();
        let all = peers.len();
        peers.sort();
        peers.dedup();
        assert_eq!(peers.len(), all, "no two devices share an extra rule");
    }
}
