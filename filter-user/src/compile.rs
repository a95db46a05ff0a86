//! Compiles a resolved policy into map entries (DESIGN §3, bit-vector
//! classification).
//!
//! Each distinct rule list (a device's `allow_in` or `allow_out`) becomes a
//! rule set with an id. Rule *i* of a set is bit *i*. Two LPM tries answer
//! "which rules match": one keyed by peer address, one by protocol and port.
//! The trie returns only the longest matching prefix, so each stored prefix
//! carries the bits of every rule whose prefix contains it; port ranges are
//! split into aligned prefixes first.

use std::{collections::HashMap, net::IpAddr};

use filter_common::{
    DEVICE_MAC_BOUND, DEVICE_MONITOR, RuleBits, VLAN_PROTECTED, settings, v4_mapped,
};
use ipnet::IpNet;

use crate::policy::{L4, Peer, Resolved, Rule};

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
/// Protocol (8 bits) then port or ICMP type (16 bits).
pub type PortPrefix = Prefix<24>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub peers: Vec<(PeerPrefix, RuleBits)>,
    pub ports: Vec<(PortPrefix, RuleBits)>,
}

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
    /// Rule set ids; 0 = no rules (deny).
    pub policy_in: u32,
    pub policy_out: u32,
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
    pub fn peer_entries(&self) -> usize {
        self.rule_sets.iter().map(|r| r.peers.len()).sum()
    }
    pub fn port_entries(&self) -> usize {
        self.rule_sets.iter().map(|r| r.ports.len()).sum()
    }
}

pub fn compile(policy: &Resolved) -> Compiled {
    let mut settings_flags = 0;
    if policy.allow_arp {
        settings_flags |= settings::ALLOW_ARP;
    }
    if policy.allow_ndp {
        settings_flags |= settings::ALLOW_NDP;
    }
    if policy.allow_dhcp {
        settings_flags |= settings::ALLOW_DHCP;
    }
    if policy.debug_log {
        settings_flags |= settings::DEBUG_LOG;
    }
    if policy.monitor {
        settings_flags |= settings::MONITOR;
    }
    let vlans =
        policy.vlans.iter().map(|v| (v.id, if v.protected { VLAN_PROTECTED } else { 0 })).collect();
    let protected = policy
        .vlans
        .iter()
        .filter(|v| v.protected)
        .flat_map(|v| v.subnets.iter().flat_map(net_prefixes).map(move |p| (p, v.id)))
        .collect();

    // Devices with the same rule list share one rule set.
    let mut rule_sets = Vec::new();
    let mut set_id = |rules: &[Rule], interned: &mut HashMap<Vec<Rule>, u32>| -> u32 {
        if rules.is_empty() {
            return 0;
        }
        if let Some(id) = interned.get(rules) {
            return *id;
        }
        rule_sets.push(compile_rules(rules));
        let id = rule_sets.len() as u32;
        interned.insert(rules.to_vec(), id);
        id
    };
    let mut ids: HashMap<Vec<Rule>, u32> = HashMap::new();
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
            addrs: d.addrs.iter().map(|a| mapped(*a)).collect(),
            policy_in: set_id(&d.allow_in, &mut ids),
            policy_out: set_id(&d.allow_out, &mut ids),
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
        protected,
        management: policy.management.iter().flat_map(net_prefixes).collect(),
        devices,
        rule_sets,
        interfaces: policy.interfaces.clone(),
    }
}

fn fingerprint(rules: &[Rule]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut h);
    h.finish()
}

/// The two tries' entries for one rule list.
pub fn compile_rules(rules: &[Rule]) -> RuleSet {
    let peers: Vec<Vec<PeerPrefix>> = rules
        .iter()
        .map(|r| match &r.peer {
            Peer::Any => vec![PeerPrefix::new(0, 0)],
            Peer::Nets(nets) => nets.iter().flat_map(net_prefixes).collect(),
        })
        .collect();
    let ports: Vec<Vec<PortPrefix>> = rules.iter().map(|r| l4_prefixes(&r.l4)).collect();
    RuleSet { peers: closure(&peers), ports: closure(&ports) }
}

/// For every distinct prefix, the rules (bits) with a prefix containing it.
fn closure<const B: u32>(per_rule: &[Vec<Prefix<B>>]) -> Vec<(Prefix<B>, RuleBits)> {
    let mut all: Vec<Prefix<B>> = per_rule.iter().flatten().copied().collect();
    all.sort();
    all.dedup();
    all.into_iter()
        .map(|p| {
            let bits = per_rule
                .iter()
                .enumerate()
                .filter(|(_, prefixes)| prefixes.iter().any(|q| q.contains(&p)))
                .fold(0, |bits, (i, _)| bits | 1 << i);
            (p, bits)
        })
        .collect()
}

fn l4_prefixes(l4: &L4) -> Vec<PortPrefix> {
    match *l4 {
        L4::Any => vec![PortPrefix::new(0, 0)],
        L4::Proto(p) => vec![PortPrefix::new(u128::from(p) << 16, 8)],
        L4::IcmpType { proto, icmp_type } => {
            vec![PortPrefix::new(u128::from(proto) << 16 | u128::from(icmp_type), 24)]
        }
        L4::Ports { proto, lo, hi } => split_range(lo, hi)
            .into_iter()
            .map(|(base, len)| PortPrefix::new(u128::from(proto) << 16 | u128::from(base), 8 + len))
            .collect(),
    }
}

/// Splits `lo..=hi` into the fewest aligned prefixes (base, prefix length
/// within the 16-bit port).
pub fn split_range(lo: u16, hi: u16) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // Largest aligned block starting at lo that does not pass hi.
        let mut size = if lo == 0 { 1 << 16 } else { 1 << lo.trailing_zeros().min(16) };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros()));
        lo += size;
    }
    out
}

/// v4-mapped bytes of an address.
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
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

    fn covered(prefixes: &[(u16, u32)]) -> Vec<u16> {
        let mut ports: Vec<u16> = prefixes
            .iter()
            .flat_map(|(base, len)| {
                let size = 1u32 << (16 - len);
                (u32::from(*base)..u32::from(*base) + size).map(|p| p as u16)
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    #[test]
    fn port_ranges_split_into_exact_aligned_prefixes() {
        assert_eq!(split_range(443, 443), vec![(443, 16)]);
        assert_eq!(split_range(0, 65535), vec![(0, 0)]);
        assert_eq!(split_range(8000, 8080), vec![(8000, 10), (8064, 12), (8080, 16)]);
        assert_eq!(split_range(1, 65535).len(), 16);
        assert_eq!(split_range(65535, 65535), vec![(65535, 16)]);
        for (lo, hi) in
            [(0, 0), (1, 2), (5000, 5100), (1023, 1025), (0, 1023), (1024, 65535), (32767, 32768)]
        {
            let prefixes = split_range(lo, hi);
            assert_eq!(covered(&prefixes), (lo..=hi).collect::<Vec<_>>(), "{lo}-{hi}");
            for (base, len) in &prefixes {
                let size = 1u32 << (16 - len);
                assert_eq!(u32::from(*base) % size, 0, "{lo}-{hi}: {base}/{len} is aligned");
            }
            // Minimal: at most two prefixes per bit of the range.
            assert!(prefixes.len() <= 32, "{lo}-{hi}: {} prefixes", prefixes.len());
        }
    }

    fn rules(text: &str) -> Vec<Rule> {
        let policy = Policy::from_toml(&format!(
            "[[vlan]]\nid = 110\nname = \"v\"\nsubnets = [\"10.110.0.0/24\", \"2001:db8:110::/64\"]\n\
             [[device]]\nname = \"d\"\nvlan = 110\nip = [\"10.110.0.7\"]\nallow_in = [{text}]\n"
        ))
        .expect("parses");
        policy.resolve().expect("valid").devices[0].allow_in.clone()
    }

    /// Bits the peer trie answers for `addr`: the longest stored prefix.
    fn peer_bits(set: &RuleSet, addr: &str) -> RuleBits {
        let a = PeerPrefix::new(u128::from_be_bytes(mapped(addr.parse().expect("address"))), 128);
        set.peers
            .iter()
            .filter(|(p, _)| p.contains(&a))
            .max_by_key(|(p, _)| p.len)
            .map_or(0, |(_, b)| *b)
    }

    fn port_bits(set: &RuleSet, proto: u8, port: u16) -> RuleBits {
        let k = PortPrefix::new(u128::from(proto) << 16 | u128::from(port), 24);
        set.ports
            .iter()
            .filter(|(p, _)| p.contains(&k))
            .max_by_key(|(p, _)| p.len)
            .map_or(0, |(_, b)| *b)
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
        assert_eq!(any.ports.len(), 2, "full port range is stored as the protocol alone");
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
        assert_ne!(a.policy_in, dc.policy_in, "c adds a rule");
        assert_eq!(
            resolved.devices[2].allow_in.len(),
            2,
            "the duplicate of the profile rule is merged: {:?}",
            resolved.devices[2]
        );
        assert_eq!(c.rule_sets.len(), 3);
        assert_eq!(dc.flags, DEVICE_MAC_BOUND);
        assert_eq!(dc.mac, [2, 0, 0, 0, 0, 3]);
        let set = &c.rule_sets[dc.policy_in as usize - 1];
        assert_eq!(peer_bits(set, "10.30.4.20"), 0b11);
        assert_eq!(peer_bits(set, "2001:db8:30::9"), 0b01, "profile rules come first");
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
