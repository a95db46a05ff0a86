//! Random policies and frames for the differential test. Frames are drawn
//! from the addresses, VLANs and ports the policy mentions (and their
//! edges), so most of them exercise a rule; some are malformed on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_user::policy::{L4 as RuleL4, Peer, Resolved, ResolvedDevice, ResolvedVlan, Rule};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, RngCore, seq::IndexedRandom as _};

use crate::frame::{Body, Ext, Frame, L4, TPID_8021AD, TPID_8021Q};

pub fn policy(rng: &mut impl Rng) -> (Resolved, u16) {
    let mut ids: Vec<u16> = vec![10, 30, 110, 120, 130, 4094, rng.random_range(1..4095)];
    ids.sort_unstable();
    ids.dedup();
    let n_vlans = rng.random_range(1..=4).min(ids.len());
    let ids: Vec<u16> = ids.choose_multiple(rng, n_vlans).copied().collect();
    let vlans: Vec<ResolvedVlan> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let len = *[16u8, 24, 24, 24, 28].choose(rng).expect("non-empty");
            let v4 = Ipv4Net::new(Ipv4Addr::new(10, 100 + i as u8, 0, 0), len).expect("prefix");
            let v6 =
                Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, *id, 0, 0, 0, 0, 0), 64).expect("prefix");
            let mut subnets = vec![IpNet::V4(v4)];
            if rng.random_bool(0.7) {
                subnets.push(IpNet::V6(v6));
            }
            // Now and then more IPv4 subnets than the configuration line
            // lists, or one overlapping another VLAN's: the program then
            // finds devices and protected hosts by hash and trie.
            match rng.random_range(0..20) {
                0 => subnets.extend((0..filter_common::MAX_V4_NETS as u8).map(|k| {
                    IpNet::V4(
                        Ipv4Net::new(Ipv4Addr::new(10, 250, i as u8, 16 * k), 28).expect("/28"),
                    )
                })),
                1 => subnets.push(IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 11).expect("/11 over 10.96-127"),
                )),
                // The same for IPv6: more subnets than the table holds, or
                // one over every VLAN's.
                2 => subnets.extend((0..filter_common::MAX_V6_NETS as u16).map(|k| {
                    IpNet::V6(
                        Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb9, *id, k, 0, 0, 0, 0), 64)
                            .expect("/64"),
                    )
                })),
                3 => subnets.push(IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32)
                        .expect("/32 over every VLAN's /64"),
                )),
                _ => {}
            }
            ResolvedVlan {
                id: *id,
                name: format!("vlan{id}"),
                subnets,
                protected: rng.random_bool(0.8),
            }
        })
        .collect();

    let mut used = Vec::new();
    let mut devices: Vec<ResolvedDevice> = Vec::new();
    for i in 0..rng.random_range(0..=8) {
        let vlan = vlans.choose(rng).expect("non-empty");
        let mut addrs = Vec::new();
        for net in &vlan.subnets {
            if addrs.is_empty() || rng.random_bool(0.5) {
                let a = host_in(rng, net);
                if !used.contains(&a) {
                    used.push(a);
                    addrs.push(a);
                }
            }
        }
        let mac = rng.random_bool(0.5).then(|| [0x02, 0, 0, 0, 0, i as u8 + 1]);
        // Declared by MAC alone: its addresses learned, none yet or some.
        let learns = mac.is_some() && rng.random_bool(0.3);
        if learns && rng.random_bool(0.5) {
            addrs.clear();
        }
        if addrs.is_empty() && !learns {
            continue;
        }
        devices.push(ResolvedDevice {
            name: format!("dev{i}"),
            vlan: vlan.id,
            addrs,
            mac,
            learns,
            allow_in: Vec::new(),
            allow_out: Vec::new(),
            profile_in: 0,
            profile_out: 0,
            monitor: rng.random_bool(0.25),
            // Rate limits depend on time; the kernel tests cover them.
            rate_limit: Default::default(),
        });
    }
    // Rules after devices, so peers can name other devices.
    let nets: Vec<IpNet> = vlans
        .iter()
        .flat_map(|v| v.subnets.clone())
        .chain(devices.iter().flat_map(|d| d.addrs.iter().map(|a| IpNet::from(*a))))
        .collect();
    // Some devices share a profile's rules at the head of their lists.
    let profiles: Vec<(Vec<Rule>, Vec<Rule>)> =
        (0..2).map(|_| (rules(rng, &nets), rules(rng, &nets))).collect();
    for d in &mut devices {
        d.allow_in = rules(rng, &nets);
        d.allow_out = rules(rng, &nets);
        if rng.random_bool(0.5) {
            let (p_in, p_out) = profiles.choose(rng).expect("non-empty");
            d.profile_in = p_in.len();
            d.profile_out = p_out.len();
            d.allow_in = merged(p_in, &d.allow_in);
            d.allow_out = merged(p_out, &d.allow_out);
        }
    }
    let iface_vlan =
        if rng.random_bool(0.3) { vlans.choose(rng).expect("non-empty").id } else { 0 };
    let policy = Resolved {
        allow_arp: rng.random_bool(0.5),
        allow_ndp: rng.random_bool(0.5),
        allow_dhcp: rng.random_bool(0.5),
        events_per_sec: 100,
        // The debug log's program returns the verdict in its place, so it
        // must agree with the reference too.
        debug_log: rng.random_bool(0.2),
        monitor: rng.random_bool(0.2),
        scan_detection: None,
        management: if rng.random_bool(0.5) {
            nets.choose_multiple(rng, 2).copied().collect()
        } else {
            Vec::new()
        },
        // Longer than any run: the reference's flows never time out.
        flow_timeouts: [7 * 24 * 3600; filter_common::FLOW_TIMEOUTS],
        vlans,
        devices,
        interfaces: Vec::new(),
        names: Default::default(),
        dns_refresh_secs: filter_user::policy::DEFAULT_DNS_REFRESH_SECS,
        learned_address_ttl_secs: filter_user::policy::DEFAULT_LEARNED_ADDRESS_TTL_SECS,
    };
    (policy, iface_vlan)
}

/// A profile's rules, then the device's own that the profile lacks, at
/// most `MAX_RULES` (as the policy resolves them).
fn merged(profile: &[Rule], own: &[Rule]) -> Vec<Rule> {
    let mut out = profile.to_vec();
    for r in own {
        if !out.contains(r) && out.len() < filter_common::MAX_RULES {
            out.push(r.clone());
        }
    }
    out
}

fn rules(rng: &mut impl Rng, nets: &[IpNet]) -> Vec<Rule> {
    let n = if rng.random_bool(0.05) { rng.random_range(20..=64) } else { rng.random_range(0..=6) };
    let mut out: Vec<Rule> = Vec::new();
    for _ in 0..n {
        let peer = if rng.random_bool(0.15) {
            Peer::Any
        } else {
            // Now and then more networks than are matched inline, so the
            // program asks the generation's peer-network trie.
            let k = if rng.random_bool(0.1) {
                rng.random_range(5..=8)
            } else {
                rng.random_range(1..=3)
            };
            Peer::Nets((0..k).map(|_| peer_net(rng, nets)).collect())
        };
        let l4 = match rng.random_range(0..10) {
            0 => RuleL4::Any,
            1 | 2 => {
                RuleL4::Proto(*[6u8, 17, 1, 58, 47, 2, 50, 132].choose(rng).expect("non-empty"))
            }
            3 | 4 => {
                let icmp6 = rng.random_bool(0.5);
                RuleL4::IcmpType {
                    proto: if icmp6 { 58 } else { 1 },
                    icmp_type: *[0u8, 3, 8, 128, 129, 135, rng.random()]
                        .choose(rng)
                        .expect("non-empty"),
                }
            }
            _ => {
                let lo: u16 = *[0u16, 1, 22, 67, 68, 123, 443, 1023, 5000, 65535, rng.random()]
                    .choose(rng)
                    .expect("non-empty");
                let span: u16 =
                    *[0u16, 0, 1, 7, 100, 1000, rng.random()].choose(rng).expect("non-empty");
                let hi = lo.saturating_add(span);
                let proto = *[6u8, 17].choose(rng).expect("non-empty");
                if lo == 0 && hi == u16::MAX {
                    RuleL4::Proto(proto)
                } else {
                    RuleL4::Ports { proto, lo, hi }
                }
            }
        };
        // Now and then a source port or range too (TCP and UDP).
        let sport = match l4 {
            RuleL4::Ports { proto: 6 | 17, .. } | RuleL4::Proto(6 | 17) if rng.random_bool(0.2) => {
                let lo: u16 =
                    *[0u16, 53, 123, 1024, 40000, rng.random()].choose(rng).expect("non-empty");
                (lo, lo.saturating_add(*[0u16, 1, 1000, u16::MAX].choose(rng).expect("non-empty")))
            }
            _ => Rule::ANY_SPORT,
        };
        let rule = Rule { peer, l4, sport };
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    out
}

fn peer_net(rng: &mut impl Rng, nets: &[IpNet]) -> IpNet {
    match rng.random_range(0..6) {
        0 => "0.0.0.0/0".parse().expect("net"),
        1 => "::/0".parse().expect("net"),
        2 => IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(rng.random::<u32>()), rng.random_range(8..=32))
                .expect("len")
                .trunc(),
        ),
        _ => {
            // A sub- or super-net of a known network: overlaps and nesting.
            let base = *nets.choose(rng).expect("non-empty");
            let max = base.max_prefix_len();
            let len = rng.random_range(base.prefix_len().saturating_sub(8)..=max);
            IpNet::new(host_in(rng, &base), len).expect("len").trunc()
        }
    }
}

pub fn host_in(rng: &mut impl Rng, net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host_bits = 32 - u32::from(n.prefix_len());
            let mask = if host_bits == 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | (rng.random::<u32>() & mask)))
        }
        IpNet::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix_len());
            let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (rng.random::<u128>() & mask)))
        }
    }
}

/// Source, destination and (when a rule says) L4 for a frame aimed at a
/// rule of a random device.
fn targeted(rng: &mut impl Rng, policy: &Resolved) -> Option<(IpAddr, IpAddr, Option<L4>)> {
    if policy.devices.is_empty() || rng.random_bool(0.5) {
        return None;
    }
    let d = policy.devices.choose(rng)?;
    let outbound = rng.random_bool(0.5);
    let dev_addr = *d.addrs.choose(rng)?;
    let v6 = dev_addr.is_ipv6();
    let rules = if outbound { &d.allow_out } else { &d.allow_in };
    let rule = rules.choose(rng);
    let random_addr = |rng: &mut dyn RngCore| {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(rng.random::<u128>() | 0x2000 << 112))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
        }
    };
    let peer = match rule.map(|r| &r.peer) {
        Some(Peer::Nets(nets)) => {
            let same: Vec<&IpNet> =
                nets.iter().filter(|n| matches!(n, IpNet::V6(_)) == v6).collect();
            match same.choose(rng) {
                Some(n) => host_in(rng, n),
                None => random_addr(rng),
            }
        }
        _ => {
            // Often another device, for device-to-device traffic.
            let other: Vec<IpAddr> = policy
                .devices
                .iter()
                .flat_map(|o| o.addrs.iter().copied())
                .filter(|a| a.is_ipv6() == v6)
                .collect();
            match other.choose(rng) {
                Some(a) if rng.random_bool(0.5) => *a,
                _ => random_addr(rng),
            }
        }
    };
    let edge = |rng: &mut dyn RngCore, lo: u16, hi: u16| -> u16 {
        *[lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1), lo + (hi - lo) / 2]
            .choose(rng)
            .expect("non-empty")
    };
    let l4 = rule.and_then(|r| match r.l4 {
        RuleL4::Ports { proto, lo, hi } => {
            // Aimed at the rule's source ports too when it has some.
            let sport = if r.sport == Rule::ANY_SPORT || rng.random_bool(0.2) {
                rng.random()
            } else {
                edge(rng, r.sport.0, r.sport.1)
            };
            let dport = edge(rng, lo, hi);
            Some(if proto == 6 {
                L4::Tcp { sport, dport, doff: 5, flags: tcp_flags(rng) }
            } else {
                L4::Udp { sport, dport }
            })
        }
        RuleL4::IcmpType { icmp_type, .. } => Some(L4::Icmp {
            icmp_type: edge(rng, u16::from(icmp_type), u16::from(icmp_type)) as u8,
        }),
        RuleL4::Proto(6) => Some(L4::Tcp {
            sport: rng.random(),
            dport: rng.random(),
            doff: 5,
            flags: tcp_flags(rng),
        }),
        RuleL4::Proto(17) => Some(L4::Udp { sport: rng.random(), dport: rng.random() }),
        RuleL4::Proto(1 | 58) => Some(L4::Icmp { icmp_type: rng.random() }),
        RuleL4::Proto(p) => Some(L4::Other { proto: p, len: 8 }),
        RuleL4::Any => None,
    });
    Some(if outbound { (dev_addr, peer, l4) } else { (peer, dev_addr, l4) })
}

/// Longest frame the generator makes.
pub const MAX_FRAME: usize = 3000;

/// Blocked nets and quarantined device names, each with whether it is in
/// force.
pub type Actions = (Vec<(IpNet, bool)>, Vec<(String, bool)>);

/// Operators' actions for `policy`: mostly none; else a few blocked
/// addresses and networks (device addresses, subnets, rule peers, nested
/// ones) and quarantined devices, each in force or already expired.
pub fn actions(rng: &mut impl Rng, policy: &Resolved) -> Actions {
    let mut blocks: Vec<(IpNet, bool)> = Vec::new();
    let mut quarantined = Vec::new();
    if rng.random_bool(0.6) {
        return (blocks, quarantined);
    }
    let mut pool: Vec<IpNet> = policy.vlans.iter().flat_map(|v| v.subnets.clone()).collect();
    pool.extend(policy.devices.iter().flat_map(|d| d.addrs.iter().map(|a| IpNet::from(*a))));
    for d in &policy.devices {
        for r in d.allow_in.iter().chain(&d.allow_out) {
            if let Peer::Nets(nets) = &r.peer {
                pool.extend(nets);
            }
        }
    }
    // The loader refuses IPv6 nets over the IPv4-mapped range.
    pool.retain(|n| !filter_user::compile::overlaps_v4_mapped(n));
    for _ in 0..rng.random_range(1..=3) {
        if let Some(net) = pool.choose(rng) {
            let net = if rng.random_bool(0.3) {
                // Something inside it: the nesting the loader must keep right.
                IpNet::from(host_in(rng, net))
            } else {
                *net
            };
            if !blocks.iter().any(|(n, _)| *n == net) {
                blocks.push((net, rng.random_bool(0.7)));
            }
        }
    }
    for d in &policy.devices {
        if rng.random_bool(0.5) {
            quarantined.push((d.name.clone(), rng.random_bool(0.7)));
        }
    }
    (blocks, quarantined)
}

/// Mostly connection openings (SYN), some of everything else.
fn tcp_flags(rng: &mut (impl Rng + ?Sized)) -> u8 {
    *[0x02, 0x02, 0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x03].choose(rng).expect("non-empty")
}

/// The addresses and L4 header of an IP frame, as `frame` built it.
pub type Tuple = (IpAddr, IpAddr, L4);

/// The answer to `t`: addresses and ports swapped, echo requests answered,
/// TCP flags of a reply or a close.
pub fn reply(rng: &mut impl Rng, t: &Tuple) -> Tuple {
    let (src, dst, l4) = t;
    let l4 = match l4 {
        L4::Tcp { sport, dport, doff, .. } => L4::Tcp {
            sport: *dport,
            dport: *sport,
            doff: *doff,
            flags: *[0x12, 0x10, 0x11, 0x04, 0x02].choose(rng).expect("non-empty"),
        },
        L4::Udp { sport, dport } => L4::Udp { sport: *dport, dport: *sport },
        L4::Icmp { icmp_type } => L4::Icmp {
            icmp_type: match icmp_type {
                8 => 0,
                128 => 129,
                t => *t,
            },
        },
        other => other.clone(),
    };
    (*dst, *src, l4)
}

/// A fragment of the datagram `t` (its first, or a later one at a random
/// offset), sent as its source would: from a device, tagged with its VLAN
/// and from its MAC. Fragments of one (source, destination, protocol) share
/// an identification here, so a later fragment belongs to the datagram of
/// any first fragment of the same tuple.
pub fn fragment(rng: &mut impl Rng, policy: &Resolved, t: &Tuple, first: bool) -> Vec<u8> {
    let (src, dst, l4) = t.clone();
    let offset = if first {
        0
    } else {
        *[1u16, 2, 185, rng.random_range(3..8192)].choose(rng).expect("non-empty")
    };
    let more = first || rng.random_bool(0.6);
    let mut f = Frame::ip(src, dst, l4).with_ip(|b| {
        if let Body::Ip { frag_offset8, more_frags, ext, payload, .. } = b {
            if src.is_ipv6() {
                ext.push(Ext::Fragment { offset8: offset, more });
            } else {
                *frag_offset8 = offset;
                *more_frags = more;
            }
            *payload = 8;
        }
    });
    if let Some(d) = policy.devices.iter().find(|d| d.addrs.contains(&src)) {
        f = f.vlan(d.vlan);
        if let Some(mac) = d.mac {
            f = f.from_mac(mac);
        }
    }
    f.bytes()
}

/// A random frame for `policy`; with `answer`, built around that tuple
/// instead of a random one (a reply to an earlier frame). Returns the bytes
/// and, for IP frames, the tuple used.
pub fn frame(
    rng: &mut impl Rng,
    policy: &Resolved,
    answer: Option<Tuple>,
) -> (Vec<u8>, Option<Tuple>) {
    let v6 = rng.random_bool(0.35);
    let mut pool: Vec<IpAddr> = Vec::new();
    for d in &policy.devices {
        pool.extend(&d.addrs);
    }
    for v in &policy.vlans {
        for n in &v.subnets {
            pool.push(host_in(rng, n));
        }
    }
    for d in &policy.devices {
        for r in d.allow_in.iter().chain(&d.allow_out) {
            if let Peer::Nets(nets) = &r.peer {
                let net = *nets.choose(rng).expect("non-empty");
                pool.push(host_in(rng, &net));
            }
        }
    }
    let pool: Vec<IpAddr> = pool.into_iter().filter(|a| a.is_ipv6() == v6).collect();
    let addr = |rng: &mut dyn RngCore| -> IpAddr {
        if !pool.is_empty() && rng.random_bool(0.8) {
            *pool.choose(rng).expect("non-empty")
        } else if v6 {
            IpAddr::V6(Ipv6Addr::from(rng.random::<u128>() | 0x2000 << 112))
        } else {
            IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
        }
    };
    let ports: Vec<u16> = policy
        .devices
        .iter()
        .flat_map(|d| d.allow_in.iter().chain(&d.allow_out))
        .flat_map(|r| match r.l4 {
            RuleL4::Ports { lo, hi, .. } => vec![lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)],
            RuleL4::IcmpType { icmp_type, .. } => vec![u16::from(icmp_type)],
            _ => vec![],
        })
        .chain(policy.devices.iter().flat_map(|d| d.allow_in.iter().chain(&d.allow_out)).flat_map(
            |r| {
                let (lo, hi) = r.sport;
                [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]
            },
        ))
        .chain([67, 68, 546, 547, 133, 135, 137, 138, 8, 0, 128, 129])
        .collect();
    let port = |rng: &mut dyn RngCore| {
        if rng.random_bool(0.8) { *ports.choose(rng).expect("non-empty") } else { rng.random() }
    };
    let random_l4 = |rng: &mut dyn RngCore| match rng.random_range(0..10) {
        0..=3 => L4::Tcp {
            sport: port(rng),
            dport: port(rng),
            doff: if rng.random_bool(0.05) { rng.random_range(0..16) } else { 5 },
            flags: tcp_flags(rng),
        },
        4..=6 => L4::Udp { sport: port(rng), dport: port(rng) },
        7 | 8 => L4::Icmp { icmp_type: port(rng) as u8 },
        _ => L4::Other {
            proto: *[47u8, 50, 132, 6, 17, 59, rng.random()].choose(rng).expect("non-empty"),
            len: rng.random_range(0..24),
        },
    };
    // Half the frames aim at one rule of one device (and its edges), so
    // allow/deny decisions are well represented, not only unknown hosts.
    let (src, dst, l4) = match (answer, targeted(rng, policy)) {
        (Some(t), _) => t,
        (None, Some((src, dst, Some(l4)))) => (src, dst, l4),
        (None, Some((src, dst, None))) => (src, dst, random_l4(rng)),
        (None, None) => (addr(rng), addr(rng), random_l4(rng)),
    };
    let tuple = (src, dst, l4.clone());
    let v6 = src.is_ipv6();
    let src_dev = policy.devices.iter().find(|d| d.addrs.contains(&src));

    let mut f = match rng.random_range(0..100) {
        0..=6 => {
            let mut as_v4 = |a: IpAddr| match a {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::from(rng.random::<u32>()),
            };
            let (s, d) = (as_v4(src), as_v4(dst));
            let sha = if rng.random_bool(0.7) {
                src_dev.and_then(|d| d.mac).unwrap_or([2, 9, 9, 9, 9, 9])
            } else {
                [2, 7, 7, 7, 7, 7]
            };
            Frame::arp(sha, s, d)
        }
        7..=9 => Frame::ether(
            *[0x88ccu16, 0x8035, 0x22f0, 0x0801].choose(rng).expect("non-empty"),
            rng.random_range(0..46),
        ),
        _ => Frame::ip(src, dst, l4),
    };
    if let Body::Ip { ihl, frag_offset8, more_frags, ext, payload, .. } = &mut f.body {
        if !v6 && rng.random_bool(0.15) {
            *ihl = rng.random_range(5..=15);
        }
        if rng.random_bool(0.12) {
            let offset =
                *[0u16, 1, 2, 185, rng.random_range(0..8192)].choose(rng).expect("non-empty");
            if v6 {
                ext.push(Ext::Fragment { offset8: offset, more: rng.random() });
            } else {
                *frag_offset8 = offset;
                *more_frags = rng.random();
            }
        }
        if v6 && rng.random_bool(0.2) {
            for _ in 0..rng.random_range(1..=8) {
                let e = match rng.random_range(0..4) {
                    0 => Ext::HopByHop { len8: rng.random_range(0..4) },
                    1 => Ext::Routing { len8: rng.random_range(0..4) },
                    2 => Ext::DestOpts {
                        len8: if rng.random_bool(0.1) { 255 } else { rng.random_range(0..4) },
                    },
                    _ => Ext::Fragment {
                        offset8: if rng.random_bool(0.5) { 0 } else { rng.random_range(0..8192) },
                        more: rng.random(),
                    },
                };
                ext.insert(0, e);
            }
        }
        *payload = rng.random_range(0..32);
    }
    let vids: Vec<u16> =
        policy.vlans.iter().map(|v| v.id).chain([0, rng.random_range(1..4095)]).collect();
    let vid = |rng: &mut dyn RngCore| -> u16 {
        match src_dev {
            Some(d) if rng.random_bool(0.5) => d.vlan,
            _ => *vids.choose(rng).expect("non-empty"),
        }
    };
    f.tags = match rng.random_range(0..100) {
        // Most traffic from a device carries its own VLAN.
        _ if src_dev.is_some() && rng.random_bool(0.5) => vec![(TPID_8021Q, vid(rng))],
        0..=39 => vec![],
        40..=79 => vec![(TPID_8021Q, vid(rng))],
        80..=96 => vec![
            (
                *[TPID_8021AD, 0x9100, TPID_8021Q].choose(rng).expect("non-empty"),
                rng.random_range(0..4096),
            ),
            (TPID_8021Q, vid(rng)),
        ],
        _ => vec![(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, vid(rng))],
    };
    if let Some(d) = src_dev
        && let Some(mac) = d.mac
        && rng.random_bool(0.7)
    {
        f.src_mac = mac;
    }
    // A device whose addresses are learned, sending from an address not
    // (yet) its own, in its VLAN.
    let learning: Vec<&ResolvedDevice> = policy.devices.iter().filter(|d| d.learns).collect();
    if src_dev.is_none()
        && rng.random_bool(0.15)
        && let Some(d) = learning.choose(rng)
    {
        f.src_mac = d.mac.expect("learning devices have a MAC");
        f.tags = vec![(TPID_8021Q, d.vlan)];
    }

    let mut bytes = if rng.random_bool(0.3) { f.padded() } else { f.bytes() };
    // BPF_PROG_TEST_RUN hands the program at most 3520 linear bytes (a page
    // less headroom and skb_shared_info); larger frames would be split into
    // XDP fragments this program does not take. Cut longer ones: a cut
    // frame is itself a test case.
    bytes.truncate(MAX_FRAME);
    match rng.random_range(0..100) {
        // Truncated anywhere past the Ethernet header.
        0..=9 if bytes.len() > 14 => bytes.truncate(rng.random_range(14..bytes.len())),
        // One corrupted byte.
        10..=14 => {
            let i = rng.random_range(12..bytes.len());
            bytes[i] = rng.random();
        }
        _ => {}
    }
    let is_ip = matches!(f.body, Body::Ip { .. });
    (bytes, is_ip.then_some(tuple))
}
