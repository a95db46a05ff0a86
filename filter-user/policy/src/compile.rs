//! Compiles a resolved policy into map entries (ARCHITECTURE §3).
//!
//! Each distinct rule list (a device's `allow_in` or `allow_out`) becomes a
//! rule set: consecutive `RULES` entries that the program scans in order and
//! matches by comparison (protocol, port ranges, peer prefix). A rule whose
//! peer is a few networks takes one entry per network; one with more names
//! a peer set, whose networks go to the generation's `PEER_NETS` trie.

use std::collections::HashMap;

use filter_common::{
    DEVICE_MAC_BOUND, DEVICE_MONITOR, MAX_RULE_SCAN, MAX_V4_NETS, MAX_V6_NETS, Rule as RuleEntry,
    V4_INDEX_ENTRIES, V4Net, V6Net, V6Table, VLAN_PROTECTED, config, rule, settings, v4_mapped,
    v4net, v6table,
};
use ipnet::IpNet;

use crate::{
    addr,
    policy::{L4, Peer, Resolved, Rule},
};

/// A prefix of a `BITS`-wide key space: the top `len` bits of `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix<const BITS: u32> {
    pub value: u128,
    pub len: u32,
}

impl<const BITS: u32> Prefix<BITS> {
    fn new(value: u128, len: u32) -> Self {
        Prefix { value: value & Self::mask(len), len }
    }
    fn mask(len: u32) -> u128 {
        if len == 0 { 0 } else { (u128::MAX >> (128 - BITS)) & !((1u128 << (BITS - len)) - 1) }
    }
    /// Whether `other` lies inside `self`.
    pub fn contains(&self, other: &Self) -> bool {
        self.len <= other.len && other.value & Self::mask(self.len) == self.value
    }
}

/// Peer prefixes over v4-mapped IPv6 addresses.
pub type PeerPrefix = Prefix<128>;

/// One rule list as the program holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleSet {
    /// The `RULES` entries, in list order. An entry with `rule::PEER_SET`
    /// has `set` = its index in `nets` (the loader renumbers it).
    pub entries: Vec<RuleEntry>,
    /// The networks of each peer set the entries name.
    pub nets: Vec<Vec<PeerPrefix>>,
}

/// A peer of at most this many networks is matched inline, one entry per
/// network: scanning a few 32-byte entries is cheaper than a trie walk.
pub const INLINE_NETS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledDevice {
    pub name: String,
    /// Counter slot in file order; the loader replaces it with the
    /// device's stable slot.
    pub slot: u32,
    pub vlan: u16,
    pub flags: u16,
    pub mac: [u8; 6],
    pub addrs: Vec<[u8; 16]>,
    /// Declared by MAC alone (`ResolvedDevice::learns`): in `MAC_DEVICES`.
    pub learns: bool,
    /// Rule set ids of each direction's list: its profile's part (shared
    /// by the profile's devices), then its own; 0 = no rules. No rules at
    /// all denies.
    pub policy_in: [u32; 2],
    pub policy_out: [u32; 2],
    /// Fingerprints of the rule lists, to notice when a device's rules (and
    /// so the meaning of its rule-hit counters) change.
    pub rules_fingerprint: (u64, u64),
    /// `rate_limit`, 0 for none.
    pub packets_per_sec: u32,
    pub syns_per_sec: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub settings_flags: u32,
    pub events_per_sec: u32,
    pub flow_timeouts: [u32; filter_common::FLOW_TIMEOUTS],
    /// (vlan id, flags) for every declared VLAN.
    pub vlans: Vec<(u16, u32)>,
    /// Every VLAN's IPv4 subnets: (subnet, vlan id, protected).
    pub v4_subnets: Vec<(ipnet::Ipv4Net, u16, bool)>,
    /// Every VLAN's IPv6 subnets: (subnet, vlan id, protected).
    pub v6_subnets: Vec<(ipnet::Ipv6Net, u16, bool)>,
    pub protected: Vec<(PeerPrefix, u16)>,
    /// `[settings] management` as prefixes.
    pub management: Vec<PeerPrefix>,
    pub devices: Vec<CompiledDevice>,
    /// Rule set `id` is `rule_sets[id - 1]`.
    pub rule_sets: Vec<RuleSet>,
    /// Interface name -> untagged VLAN.
    pub interfaces: Vec<(String, u16)>,
}

impl Compiled {
    /// `RULES` entries of all rule sets.
    pub fn rule_entries(&self) -> usize {
        self.rule_sets.iter().map(|r| r.entries.len()).sum()
    }
    /// Networks of all peer sets (`PEER_NETS` entries).
    pub fn peer_nets(&self) -> usize {
        self.rule_sets.iter().flat_map(|r| &r.nets).map(Vec::len).sum()
    }

    /// The configuration line's IPv4 subnet table for this policy
    /// ([`v4_table`]), or none (flags 0) should a device's IPv4 address lie
    /// outside every subnet: validation keeps devices in their VLAN's
    /// subnets, and the table would call such an address no device.
    pub fn v4_table(&self) -> (u32, Vec<V4Net>) {
        let (flags, table) = v4_table(&self.v4_subnets);
        let outside = self.devices.iter().flat_map(|d| &d.addrs).any(|a| {
            addr::key_v4(*a).is_some_and(|a| !table.iter().any(|n| u32::from(a) & n.mask == n.net))
        });
        if outside { (0, Vec::new()) } else { (flags, table) }
    }

    /// The generation's IPv6 subnet table ([`v6_table`]), incomplete (flags
    /// 0) should a device's IPv6 address lie outside every subnet, as for
    /// [`Compiled::v4_table`].
    pub fn v6_table(&self) -> V6Table {
        let table = v6_table(&self.v6_subnets);
        let outside = self.devices.iter().flat_map(|d| &d.addrs).any(|a| {
            addr::key_v4(*a).is_none()
                && !self.v6_subnets.iter().any(|(n, ..)| n.contains(&std::net::Ipv6Addr::from(*a)))
        });
        if outside { V6Table::default() } else { table }
    }
}

/// The IPv6 subnet table for `subnets`: complete when they fit and none
/// overlaps (the first match decides an address's protection), otherwise
/// empty and incomplete, and the program asks `DEVICES` and `PROTECTED`.
pub fn v6_table(subnets: &[(ipnet::Ipv6Net, u16, bool)]) -> V6Table {
    let overlapping = subnets.iter().enumerate().any(|(i, (a, ..))| {
        subnets[i + 1..].iter().any(|(b, ..)| a.contains(&b.network()) || b.contains(&a.network()))
    });
    let mut table = V6Table::default();
    if subnets.len() > MAX_V6_NETS || overlapping {
        return table;
    }
    for (entry, (net, vlan, protected)) in table.nets.iter_mut().zip(subnets) {
        let halves = |a: std::net::Ipv6Addr| {
            let v = u128::from(a);
            ((v >> 64) as u64, v as u64)
        };
        let (net_hi, net_lo) = halves(net.network());
        let (mask_hi, mask_lo) = halves(net.netmask());
        *entry = V6Net {
            net_hi,
            net_lo,
            mask_hi,
            mask_lo,
            vlan: *vlan,
            flags: if *protected { v4net::PROTECTED } else { 0 },
            _pad: 0,
        };
    }
    table.count = subnets.len() as u32;
    table.flags = v6table::COMPLETE;
    table
}

/// The settings' flags (`CONFIG[gen].settings.flags`).
fn settings_flags(policy: &Resolved) -> u32 {
    [
        (policy.allow_arp, settings::ALLOW_ARP),
        (policy.allow_ndp, settings::ALLOW_NDP),
        (policy.allow_dhcp, settings::ALLOW_DHCP),
        (policy.debug_log, settings::DEBUG_LOG),
        (policy.monitor, settings::MONITOR),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(0, |flags, (_, flag)| flags | flag)
}

/// The subnets of one address family, truncated, with their VLAN and
/// whether it is protected.
fn subnets<N>(policy: &Resolved, family: impl Fn(&IpNet) -> Option<N>) -> Vec<(N, u16, bool)> {
    policy
        .vlans
        .iter()
        .flat_map(|v| v.subnets.iter().filter_map(|n| Some((family(n)?, v.id, v.protected))))
        .collect()
}

pub fn compile(policy: &Resolved) -> Compiled {
    let settings_flags = settings_flags(policy);
    let vlans =
        policy.vlans.iter().map(|v| (v.id, if v.protected { VLAN_PROTECTED } else { 0 })).collect();
    let v4_subnets = subnets(policy, |n| match n {
        IpNet::V4(n) => Some(n.trunc()),
        IpNet::V6(_) => None,
    });
    let v6_subnets = subnets(policy, |n| match n {
        IpNet::V6(n) => Some(n.trunc()),
        IpNet::V4(_) => None,
    });
    let protected = policy
        .vlans
        .iter()
        .filter(|v| v.protected)
        .flat_map(|v| v.subnets.iter().flat_map(net_prefixes).map(move |p| (p, v.id)))
        .collect();

    // Equal lists (at the same place in a device's list, which numbers
    // their rules) share one rule set: a profile's part is stored once.
    let mut rule_sets = Vec::new();
    let mut ids: HashMap<(Vec<Rule>, usize), u32> = HashMap::new();
    let mut set_id = |rules: &[Rule], first: usize| -> u32 {
        if rules.is_empty() {
            return 0;
        }
        *ids.entry((rules.to_vec(), first)).or_insert_with(|| {
            rule_sets.push(compile_rules_at(rules, first));
            rule_sets.len() as u32
        })
    };
    let mut parts = |rules: &[Rule], profile: usize| -> [u32; 2] {
        let profile = profile.min(rules.len());
        [set_id(&rules[..profile], 0), set_id(&rules[profile..], profile)]
    };
    let devices = policy
        .devices
        .iter()
        .enumerate()
        .map(|(slot, d)| CompiledDevice {
            name: d.name.clone(),
            slot: slot as u32,
            vlan: d.vlan,
            flags: if d.mac.is_some() { DEVICE_MAC_BOUND } else { 0 }
                | if d.monitor { DEVICE_MONITOR } else { 0 },
            mac: d.mac.unwrap_or_default(),
            addrs: d.addrs.iter().map(|a| addr::key(*a)).collect(),
            learns: d.learns && d.mac.is_some(),
            policy_in: parts(&d.allow_in, d.profile_in),
            policy_out: parts(&d.allow_out, d.profile_out),
            rules_fingerprint: (fingerprint(&d.allow_in), fingerprint(&d.allow_out)),
            packets_per_sec: d.rate_limit.packets_per_second.unwrap_or(0),
            syns_per_sec: d.rate_limit.new_tcp_per_second.unwrap_or(0),
        })
        .collect();

    Compiled {
        settings_flags,
        events_per_sec: policy.events_per_sec,
        flow_timeouts: policy.flow_timeouts,
        vlans,
        v4_subnets,
        v6_subnets,
        protected,
        management: policy.management.iter().flat_map(net_prefixes).collect(),
        devices,
        rule_sets,
        interfaces: policy.interfaces.clone(),
    }
}

/// The configuration line's IPv4 subnet table for `subnets`: `Config`
/// flags and entries. A table needs every subnet listed and none
/// overlapping (otherwise flags 0: the program falls back to `DEVICES` and
/// `PROTECTED`); subnets are indexed for direct device lookup while the
/// index has room, in order, the rest found in `DEVICES`.
pub fn v4_table(subnets: &[(ipnet::Ipv4Net, u16, bool)]) -> (u32, Vec<V4Net>) {
    let overlapping = subnets.iter().enumerate().any(|(i, (a, ..))| {
        subnets[i + 1..].iter().any(|(b, ..)| a.contains(&b.network()) || b.contains(&a.network()))
    });
    if subnets.len() > MAX_V4_NETS || overlapping {
        return (0, Vec::new());
    }
    let mut base = 0u64;
    let table = subnets
        .iter()
        .map(|(net, vlan, protected)| {
            let size = 1u64 << (32 - u32::from(net.prefix_len()));
            let mut flags = if *protected { v4net::PROTECTED } else { 0 };
            let mut first = 0;
            if base + size <= u64::from(V4_INDEX_ENTRIES) {
                flags |= v4net::INDEXED;
                first = base as u32;
                base += size;
            }
            V4Net {
                net: u32::from(net.network()),
                mask: u32::from(net.netmask()),
                base: first,
                vlan: *vlan,
                flags,
            }
        })
        .collect();
    (config::V4_TABLE, table)
}

fn fingerprint(rules: &[Rule]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut h);
    h.finish()
}

/// The entries for one rule list.
pub fn compile_rules(rules: &[Rule]) -> RuleSet {
    compile_rules_at(rules, 0)
}

/// The entries for `rules`, the part of a device's list from rule index
/// `first` on.
pub fn compile_rules_at(rules: &[Rule], first: usize) -> RuleSet {
    // Each rule's peer as inline prefixes (with `rule::NOT_V4` where an
    // IPv6 network contains the IPv4 range), or as a set.
    let mut inline: Vec<Option<Vec<(PeerPrefix, u8)>>> = rules
        .iter()
        .map(|r| match &r.peer {
            Peer::Any => Some(vec![(PeerPrefix::new(0, 0), 0)]),
            Peer::Nets(nets) => {
                let prefixes: Vec<_> = nets.iter().filter_map(inline_prefix).collect();
                (prefixes.len() <= INLINE_NETS).then_some(prefixes)
            }
        })
        .collect();
    // Keep the scan bounded: the rules with the most networks go to sets.
    let entries_of = |inline: &[Option<Vec<(PeerPrefix, u8)>>]| -> usize {
        inline.iter().map(|p| p.as_ref().map_or(1, Vec::len)).sum()
    };
    while entries_of(&inline) > MAX_RULE_SCAN as usize {
        let widest = (0..inline.len())
            .max_by_key(|i| inline[*i].as_ref().map_or(0, Vec::len))
            .expect("rules are not empty when over the bound");
        inline[widest] = None;
    }
    let mut set = RuleSet::default();
    for (index, (r, peer)) in rules.iter().zip(inline).enumerate() {
        let base = l4_entry(r, (first + index) as u8);
        match peer {
            Some(prefixes) => {
                for (p, flags) in prefixes {
                    let value = p.value.to_be_bytes();
                    let (hi, lo) = value.split_at(8);
                    set.entries.push(RuleEntry {
                        peer_hi: u64::from_be_bytes(hi.try_into().expect("8 bytes")),
                        peer_lo: u64::from_be_bytes(lo.try_into().expect("8 bytes")),
                        peer_len: p.len as u8,
                        flags: base.flags | flags,
                        ..base
                    });
                }
            }
            None => {
                let Peer::Nets(nets) = &r.peer else { unreachable!("`any` is always inline") };
                set.entries.push(RuleEntry {
                    set: set.nets.len() as u32,
                    flags: base.flags | rule::PEER_SET,
                    ..base
                });
                set.nets.push(nets.iter().flat_map(net_prefixes).collect());
            }
        }
    }
    set
}

/// An entry matching any peer with the protocol and ports of `r`.
fn l4_entry(r: &Rule, index: u8) -> RuleEntry {
    let entry = dport_entry(&r.l4, index);
    if r.sport == Rule::ANY_SPORT {
        return entry;
    }
    // A source port needs the L4 header as a destination port does.
    RuleEntry { flags: entry.flags | rule::L4, sport_lo: r.sport.0, sport_hi: r.sport.1, ..entry }
}

/// An entry matching any peer and source port with the protocol and
/// destination port (or ICMP type) of `l4`.
fn dport_entry(l4: &L4, index: u8) -> RuleEntry {
    let any = RuleEntry { port_hi: u16::MAX, sport_hi: u16::MAX, index, ..RuleEntry::default() };
    match *l4 {
        L4::Any => RuleEntry { flags: rule::ANY_PROTO, ..any },
        L4::Proto(proto) => RuleEntry { proto, ..any },
        // The whole range needs no port: it also matches non-first fragments.
        L4::Ports { proto, lo: 0, hi: u16::MAX } => RuleEntry { proto, ..any },
        L4::Ports { proto, lo, hi } => {
            RuleEntry { proto, flags: rule::L4, port_lo: lo, port_hi: hi, ..any }
        }
        L4::IcmpType { proto, icmp_type } => RuleEntry {
            proto,
            flags: rule::L4,
            port_lo: u16::from(icmp_type),
            port_hi: u16::from(icmp_type),
            ..any
        },
    }
}

/// A network as one inline prefix and its flags; `None` for an IPv6
/// network inside `::ffff:0:0/96` (it would name IPv4 hosts, and matches
/// nothing, as in `net_prefixes`).
fn inline_prefix(net: &IpNet) -> Option<(PeerPrefix, u8)> {
    match net {
        IpNet::V4(_) => Some((net_prefixes(net)[0], 0)),
        IpNet::V6(n) => {
            let (p, v4) = (v6_prefix(n), v4_mapped_range());
            if p.contains(&v4) {
                Some((p, rule::NOT_V4))
            } else if v4.contains(&p) {
                None
            } else {
                Some((p, 0))
            }
        }
    }
}

/// Whether an IPv6 network contains or lies inside `::ffff:0:0/96`, where
/// the program keeps IPv4 addresses (so it would reach IPv4 hosts).
pub fn overlaps_v4_mapped(net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => {
            let (p, v4) = (v6_prefix(n), v4_mapped_range());
            p.contains(&v4) || v4.contains(&p)
        }
        IpNet::V4(_) => false,
    }
}

/// `::ffff:0:0/96`, where IPv4 addresses live in the program's keys.
fn v4_mapped_range() -> PeerPrefix {
    PeerPrefix::new(0xffff_u128 << 32, 96)
}

fn v6_prefix(n: &ipnet::Ipv6Net) -> PeerPrefix {
    PeerPrefix::new(u128::from_be_bytes(n.network().octets()), u32::from(n.prefix_len()))
}

/// The prefixes of the v4-mapped key space a network covers. IPv4 lives
/// in `::ffff:0:0/96`, so an IPv6 network containing that range (`::/0`,
/// say) is split around it: IPv6 rules must never match IPv4 hosts.
pub fn net_prefixes(net: &IpNet) -> Vec<PeerPrefix> {
    match net {
        IpNet::V4(n) => vec![PeerPrefix::new(
            u128::from_be_bytes(v4_mapped(n.network().octets())),
            96 + u32::from(n.prefix_len()),
        )],
        IpNet::V6(n) => {
            let (p, v4) = (v6_prefix(n), v4_mapped_range());
            if p.contains(&v4) {
                subtract(p, v4)
            } else if v4.contains(&p) {
                Vec::new()
            } else {
                vec![p]
            }
        }
    }
}

/// `outer` minus `inner` (which it contains), as prefixes.
fn subtract(outer: PeerPrefix, inner: PeerPrefix) -> Vec<PeerPrefix> {
    let mut out = Vec::new();
    let mut cur = outer;
    while cur.len < inner.len {
        let len = cur.len + 1;
        let low = PeerPrefix::new(cur.value, len);
        let high = PeerPrefix::new(cur.value | 1u128 << (128 - len), len);
        let (keep, next) = if low.contains(&inner) { (high, low) } else { (low, high) };
        out.push(keep);
        cur = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn rules(text: &str) -> Vec<Rule> {
        rules_with("", text)
    }

    fn rules_with(peers: &str, text: &str) -> Vec<Rule> {
        let policy = Policy::from_toml(&format!(
            "{peers}\n[[vlan]]\nid = 110\nname = \"v\"\nsubnets = [\"10.110.0.0/24\", \"2001:db8:110::/64\"]\n\
             [[device]]\nname = \"d\"\nvlan = 110\nip = [\"10.110.0.7\"]\nallow_in = [{text}]\n"
        ))
        .expect("parses");
        policy.resolve().expect("valid").devices[0].allow_in.clone()
    }

    /// Whether entry `e` of `set` matches peer address `peer`, as the
    /// program decides it.
    fn peer_matches(set: &RuleSet, e: &RuleEntry, peer: &[u8; 16]) -> bool {
        let addr = PeerPrefix::new(u128::from_be_bytes(*peer), 128);
        let v4 = peer[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        if e.flags & rule::PEER_SET != 0 {
            return set.nets[e.set as usize].iter().any(|p| p.contains(&addr));
        }
        let net = u128::from(e.peer_hi) << 64 | u128::from(e.peer_lo);
        PeerPrefix::new(net, u32::from(e.peer_len)).contains(&addr)
            && !(e.flags & rule::NOT_V4 != 0 && v4)
    }

    /// Rules (as bits) whose peer contains `addr`.
    fn peer_bits(set: &RuleSet, addr: &str) -> u64 {
        let peer = addr::key(addr.parse().expect("address"));
        set.entries
            .iter()
            .filter(|e| peer_matches(set, e, &peer))
            .fold(0, |bits, e| bits | 1 << e.index)
    }

    /// The index of the first entry matching a packet, as the program's
    /// scan decides (filter-ebpf/src/rules.rs).
    fn first_match(
        set: &RuleSet,
        peer: &[u8; 16],
        proto: u8,
        sport: u16,
        dport: u16,
        l4_known: bool,
    ) -> Option<u8> {
        set.entries
            .iter()
            .find(|e| {
                let l4 = e.flags & rule::L4 == 0
                    || (l4_known
                        && (e.port_lo..=e.port_hi).contains(&dport)
                        && (e.sport_lo..=e.sport_hi).contains(&sport));
                (e.flags & rule::ANY_PROTO != 0 || e.proto == proto)
                    && l4
                    && peer_matches(set, e, peer)
            })
            .map(|e| e.index)
    }

    /// Rules (as bits) whose protocol and port match.
    fn port_bits(set: &RuleSet, proto: u8, port: u16) -> u64 {
        set.entries
            .iter()
            .filter(|e| {
                (e.flags & rule::ANY_PROTO != 0 || e.proto == proto)
                    && (e.flags & rule::L4 == 0 || (e.port_lo..=e.port_hi).contains(&port))
            })
            .fold(0, |bits, e| bits | 1 << e.index)
    }

    #[test]
    fn nested_and_overlapping_cidrs_carry_every_containing_rule() {
        let set = compile_rules(&rules(
            r#"{ from = "10.0.0.0/8" }, { from = "10.30.0.0/16" }, { from = "10.30.4.0/24" },
               { from = "10.30.4.0/23" }, { from = "any", proto = "tcp", port = 22 }"#,
        ));
        assert_eq!(peer_bits(&set, "10.30.4.20"), 0b11111);
        assert_eq!(peer_bits(&set, "10.30.5.1"), 0b11011);
        assert_eq!(peer_bits(&set, "10.30.6.1"), 0b10011);
        assert_eq!(peer_bits(&set, "10.31.0.1"), 0b10001);
        assert_eq!(peer_bits(&set, "192.0.2.1"), 0b10000);
        assert_eq!(peer_bits(&set, "2001:db8::1"), 0b10000, "any covers IPv6");
    }

    #[test]
    fn ipv6_rules_never_match_ipv4_hosts() {
        let set = compile_rules(&rules(
            r#"{ from = "::/0" }, { from = "2001:db8::/32" }, { from = "0.0.0.0/0" }"#,
        ));
        assert_eq!(peer_bits(&set, "2001:db8::1"), 0b011);
        assert_eq!(peer_bits(&set, "fe80::1"), 0b001);
        assert_eq!(peer_bits(&set, "10.1.2.3"), 0b100, "::/0 is split around ::ffff:0:0/96");
        assert_eq!(peer_bits(&set, "::ffff:10.1.2.3"), 0b100, "the kernel's v4-mapped form");
        assert_eq!(peer_bits(&set, "::1"), 0b001);
        assert_eq!(peer_bits(&set, "::fffe:0:1"), 0b001);
    }

    #[test]
    fn peers_of_many_networks_become_sets_and_the_scan_stays_bounded() {
        let peers = r#"[peers]
two = ["10.1.0.0/16", "10.2.0.0/16"]
four = ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"]
five = ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16", "10.5.0.0/16"]
"#;
        let set = compile_rules(&rules_with(
            peers,
            r#"{ from = "two", proto = "tcp", port = 22 }, { from = "five" }"#,
        ));
        assert_eq!(set.entries.len(), 3, "two inline entries, one set entry: {set:?}");
        assert_eq!(set.entries[2].flags & rule::PEER_SET, rule::PEER_SET);
        assert_eq!(set.nets.len(), 1);
        assert_eq!(set.nets[0].len(), 5);
        assert_eq!(peer_bits(&set, "10.2.3.4"), 0b11);
        assert_eq!(peer_bits(&set, "10.5.3.4"), 0b10);
        assert_eq!(peer_bits(&set, "10.6.3.4"), 0);

        // 20 rules of four networks each would be 80 entries: the widest go
        // to sets until the scan fits.
        let list: Vec<String> = (0..20)
            .map(|i| format!("{{ from = \"four\", proto = \"udp\", port = {} }}", 1000 + i))
            .collect();
        let set = compile_rules(&rules_with(peers, &list.join(", ")));
        assert!(set.entries.len() <= MAX_RULE_SCAN as usize, "{} entries", set.entries.len());
        let indexes: std::collections::BTreeSet<u8> = set.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes.len(), 20, "every rule keeps an entry");
        assert_eq!(port_bits(&set, 17, 1019), 1 << 19);
        assert_eq!(peer_bits(&set, "10.4.0.1"), (1 << 20) - 1);
    }

    #[test]
    fn source_ports_need_the_l4_header() {
        let set = compile_rules(&rules(
            r#"{ from = "any", proto = "udp", sport = 53 }, { from = "any", proto = "tcp", port = 22, sport = "1024-2048" }"#,
        ));
        let (dns, ssh) = (&set.entries[0], &set.entries[1]);
        assert_eq!((dns.flags & rule::L4, dns.sport_lo, dns.sport_hi), (rule::L4, 53, 53));
        assert_eq!((dns.port_lo, dns.port_hi), (0, u16::MAX));
        assert_eq!((ssh.port_lo, ssh.port_hi, ssh.sport_lo, ssh.sport_hi), (22, 22, 1024, 2048));
        let peer = addr::key("192.0.2.1".parse().expect("address"));
        assert_eq!(first_match(&set, &peer, 17, 53, 9999, true), Some(0));
        assert_eq!(first_match(&set, &peer, 17, 54, 9999, true), None);
        assert_eq!(first_match(&set, &peer, 17, 53, 9999, false), None, "a fragment: no ports");
        assert_eq!(first_match(&set, &peer, 6, 2048, 22, true), Some(1));
        assert_eq!(first_match(&set, &peer, 6, 2049, 22, true), None);
    }

    #[test]
    fn v4_subnets_are_indexed_while_the_index_has_room() {
        let net = |s: &str| s.parse::<ipnet::Ipv4Net>().expect("net");
        let (flags, table) = v4_table(&[
            (net("10.110.0.0/24"), 110, true),
            (net("10.120.0.0/12"), 120, false),
            (net("10.200.0.0/16"), 200, true),
        ]);
        assert_eq!(flags, config::V4_TABLE);
        assert_eq!(table[0].net, 0x0a6e_0000);
        assert_eq!(table[0].mask, 0xffff_ff00);
        assert_eq!(table[0].flags, v4net::PROTECTED | v4net::INDEXED);
        assert_eq!(table[0].base, 0);
        // A /12 is 1,048,576 addresses: past the index, found by hash.
        assert_eq!(table[1].flags, 0, "{:?}", table[1]);
        assert_eq!(table[2].flags, v4net::PROTECTED | v4net::INDEXED);
        assert_eq!(table[2].base, 256);
        // Overlapping subnets, or more than the line holds: no table.
        assert_eq!(v4_table(&[(net("10.0.0.0/8"), 1, true), (net("10.1.0.0/16"), 2, true)]).0, 0);
        let many: Vec<_> =
            (0..=MAX_V4_NETS).map(|i| (net(&format!("10.{i}.0.0/24")), 1, true)).collect();
        assert_eq!(v4_table(&many).0, 0);
    }

    #[test]
    fn v6_subnets_are_listed_with_their_protection() {
        let net = |s: &str| s.parse::<ipnet::Ipv6Net>().expect("net");
        let table = v6_table(&[
            (net("2001:db8:110::/48"), 110, true),
            (net("2001:db8:30::/64"), 30, false),
        ]);
        assert_eq!(table.flags, v6table::COMPLETE);
        assert_eq!(table.count, 2);
        let n = table.nets[0];
        assert_eq!((n.net_hi, n.net_lo), (0x2001_0db8_0110_0000, 0));
        assert_eq!((n.mask_hi, n.mask_lo), (0xffff_ffff_ffff_0000, 0));
        assert_eq!((n.vlan, n.flags), (110, v4net::PROTECTED));
        let n = table.nets[1];
        assert_eq!((n.mask_hi, n.mask_lo), (u64::MAX, 0));
        assert_eq!((n.vlan, n.flags), (30, 0));
        // Overlapping subnets, or more than the table holds: incomplete.
        let nested = [(net("2001:db8::/32"), 1, true), (net("2001:db8:1::/48"), 2, false)];
        assert_eq!(v6_table(&nested), V6Table::default());
        let many: Vec<_> =
            (0..=MAX_V6_NETS).map(|i| (net(&format!("2001:db8:{i}::/48")), 1, true)).collect();
        assert_eq!(v6_table(&many).flags, 0);
    }

    #[test]
    fn ports_protocols_and_icmp_types() {
        let set = compile_rules(&rules(
            r#"{ from = "any", proto = "tcp", port = "8000-8080" }, { from = "any", proto = "tcp", port = 8080 },
               { from = "any", proto = "udp" }, { from = "any", proto = "icmp", icmp_type = 8 },
               { from = "any", proto = "icmpv6" }"#,
        ));
        assert_eq!(port_bits(&set, 6, 7999), 0);
        assert_eq!(port_bits(&set, 6, 8000), 0b00001);
        assert_eq!(port_bits(&set, 6, 8080), 0b00011);
        assert_eq!(port_bits(&set, 6, 8081), 0);
        assert_eq!(port_bits(&set, 17, 8080), 0b00100);
        assert_eq!(port_bits(&set, 1, 8), 0b01000);
        assert_eq!(port_bits(&set, 1, 0), 0);
        assert_eq!(port_bits(&set, 58, 135), 0b10000);
        let any = compile_rules(&rules(
            r#"{ from = "any" }, { from = "any", proto = "udp", port = "0-65535" }"#,
        ));
        assert_eq!(any.entries[1].flags & rule::L4, 0, "full port range is the protocol alone");
        assert_eq!(port_bits(&any, 47, 0), 0b01);
        assert_eq!(port_bits(&any, 17, 9), 0b11);
    }

    const BASE: &str = r#"
[[vlan]]
id = 110
name = "pumps"
subnets = ["10.110.0.0/24"]
[peers]
nurses = ["10.30.0.0/16", "2001:db8:30::/48"]
[[profile]]
name = "pump"
allow_in = [ { from = "nurses", proto = "tcp", port = 443 } ]
allow_out = [ { to = "any", proto = "udp", port = 123 } ]
"#;

    #[test]
    fn profiles_merge_with_device_rules_and_identical_sets_are_shared() {
        let text = format!(
            "{BASE}
[[device]]
name = \"a\"
vlan = 110
ip = [\"10.110.0.1\"]
profile = \"pump\"
[[device]]
name = \"b\"
vlan = 110
ip = [\"10.110.0.2\"]
profile = \"pump\"
[[device]]
name = \"c\"
vlan = 110
ip = [\"10.110.0.3\"]
mac = \"02:00:00:00:00:03\"
profile = \"pump\"
allow_in = [ {{ from = \"10.30.4.20\", proto = \"tcp\", port = 22 }}, {{ from = \"nurses\", proto = \"tcp\", port = 443 }} ]
"
        );
        let resolved = Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        let c = compile(&resolved);
        let (a, b, dc) = (&c.devices[0], &c.devices[1], &c.devices[2]);
        assert_eq!(a.policy_in, b.policy_in, "same profile, same rule set");
        assert_eq!(a.policy_out, dc.policy_out);
        assert_eq!(a.policy_in[0], dc.policy_in[0], "c shares the profile's part");
        assert_eq!(a.policy_in[1], 0, "a has no rules of its own");
        assert_ne!(dc.policy_in[1], 0, "c adds a rule");
        assert_eq!(
            resolved.devices[2].allow_in.len(),
            2,
            "the duplicate of the profile rule is merged: {:?}",
            resolved.devices[2]
        );
        assert_eq!(c.rule_sets.len(), 3, "the profile's in and out, c's own");
        assert_eq!(dc.flags, DEVICE_MAC_BOUND);
        assert_eq!(dc.mac, [2, 0, 0, 0, 0, 3]);
        let (profile, own) = (
            &c.rule_sets[dc.policy_in[0] as usize - 1],
            &c.rule_sets[dc.policy_in[1] as usize - 1],
        );
        assert_eq!(peer_bits(profile, "10.30.4.20"), 0b01);
        assert_eq!(peer_bits(own, "10.30.4.20"), 0b10, "its own rules are numbered after");
        assert_eq!(peer_bits(own, "2001:db8:30::9"), 0, "profile rules come first");
    }

    #[test]
    fn rule_count_limit_is_a_clear_error() {
        let many: Vec<String> = (0..65)
            .map(|p| format!("{{ from = \"any\", proto = \"tcp\", port = {} }}", 1000 + p))
            .collect();
        let text = format!(
            "{BASE}\n[[device]]\nname = \"big\"\nvlan = 110\nip = [\"10.110.0.9\"]\nprofile = \"pump\"\nallow_in = [{}]\n",
            many.join(", ")
        );
        let err = Policy::from_toml(&text).expect("parses").resolve().expect_err("over the limit");
        let msg = err.to_string();
        assert!(
            msg.contains("\"big\"")
                && msg.contains("66 allow_in rules")
                && msg.contains("limit is 64"),
            "{msg}"
        );
        // 64 is fine.
        let text =
            text.replace(&format!(", {}", many[64]), "").replace(&format!(", {}", many[63]), "");
        Policy::from_toml(&text).expect("parses").resolve().expect("64 rules are allowed");
    }
}
