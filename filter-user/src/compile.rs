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

use filter_common::{DEVICE_MAC_BOUND, RuleBits, VLAN_PROTECTED, settings, v4_mapped};
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
    pub slot: u32,
    pub vlan: u16,
    pub flags: u16,
    pub mac: [u8; 6],
    pub addrs: Vec<[u8; 16]>,
    /// Rule set ids; 0 = no rules (deny).
    pub policy_in: u32,
    pub policy_out: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub settings_flags: u32,
    /// (vlan id, flags) for every declared VLAN.
    pub vlans: Vec<(u16, u32)>,
    pub protected: Vec<(PeerPrefix, u16)>,
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
    let vlans = policy
        .vlans
        .iter()
        .map(|v| (v.id, if v.protected { VLAN_PROTECTED } else { 0 }))
        .collect();
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
            slot: slot as u32,
            vlan: d.vlan,
            flags: if d.mac.is_some() { DEVICE_MAC_BOUND } else { 0 },
            mac: d.mac.unwrap_or_default(),
            addrs: d.addrs.iter().map(|a| mapped(*a)).collect(),
            policy_in: set_id(&d.allow_in, &mut ids),
            policy_out: set_id(&d.allow_out, &mut ids),
        })
        .collect();

    Compiled {
        settings_flags,
        vlans,
        protected,
        devices,
        rule_sets,
        interfaces: policy.interfaces.clone(),
    }
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
            let p = PeerPrefix::new(u128::from_be_bytes(n.network().octets()), u32::from(n.prefix_len()));
            let v4 = PeerPrefix::new(0xffff_u128 << 32, 96);
            if p.contains(&v4) { subtract(p, v4) } else if v4.contains(&p) { Vec::new() } else { vec![p] }
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
