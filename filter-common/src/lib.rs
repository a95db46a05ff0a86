//! Map keys, values and constants shared by the vlanguard XDP program
//! (`filter-ebpf`) and its controller (`filter-user`).
//!
//! Every type is `#[repr(C)]` with explicit integer fields and explicit
//! padding, so the kernel and user space agree on the bytes and no
//! uninitialised padding reaches a map. Layouts are checked by the tests at
//! the bottom of this file.
#![no_std]
// clap's derive names `::std` (the CLI's `Direction` value; user space only).
#[cfg(feature = "clap")]
extern crate std;

/// Map names, as they appear in the object file and under the pin directory.
pub mod maps {
    pub const GENERATION: &str = "GENERATION";
    pub const CONFIG: &str = "CONFIG";
    pub const IFACES: &str = "IFACES";
    pub const VLAN_FLAGS: &str = "VLAN_FLAGS";
    pub const DEVICES: &str = "DEVICES";
    pub const DEVICE_LINES: &str = "DEVICE_LINES";
    pub const V4_INDEX: &str = "V4_INDEX";
    /// `[generation]`: the VLANs' IPv6 subnets (`V6Table`).
    pub const V6_NETS: &str = "V6_NETS";
    pub const PROTECTED: &str = "PROTECTED";
    pub const RULES: &str = "RULES";
    pub const PEER_NETS: &str = "PEER_NETS";
    /// Per-device counters and rule hits: one [`CounterLine`] per device
    /// and possible CPU, `[slot * cpus + cpu]`.
    pub const COUNTER_LINES: &str = "COUNTER_LINES";
    /// The per-device counters of versions before `COUNTER_LINES` (a
    /// per-CPU array of `DeviceCounters`): added into the lines when such
    /// a version is upgraded, then unpinned.
    pub const LEGACY_DEVICE_COUNTERS: &str = "DEVICE_COUNTERS";
    /// Their rule-hit lines (a per-CPU array of `RuleHitLine`): the same.
    pub const LEGACY_RULE_HIT_LINES: &str = "RULE_HIT_LINES";
    /// The per-device counters of versions before `DEVICE_COUNTERS` (a
    /// per-CPU hash of `StatKey` -> `Counter`): the same.
    pub const LEGACY_DEVICE_STATS: &str = "DEVICE_STATS";
    pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
    pub const META: &str = "META";
    pub const DEVICE_SLOTS: &str = "DEVICE_SLOTS";
    pub const EVENTS: &str = "EVENTS";
    pub const EVENT_STATS: &str = "EVENT_STATS";
    pub const EVENT_RATE: &str = "EVENT_RATE";
    pub const RULE_HITS: &str = "RULE_HITS";
    /// Slot 0: the debug-log program, tail-called when `settings::DEBUG_LOG`
    /// is on. Pinned so the kernel keeps its entry while no daemon runs.
    pub const DEBUG_PROGS: &str = "DEBUG_PROGS";
    /// The flow cache (`filter_common::FlowEntry`), its bucket tags and
    /// its hash seed.
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
    pub const FLOW_TAGS: &str = "FLOW_TAGS";
    pub const FLOW_SEED: &str = "FLOW_SEED";
    /// The flow table of versions before the flow cache (an LRU hash of
    /// `FlowKey` -> `FlowValue`): read once when such a version is
    /// upgraded, so its flows carry over, then unpinned.
    pub const LEGACY_FLOWS: &str = "FLOWS";
    pub const FLOW_STATS: &str = "FLOW_STATS";
    pub const FRAGS: &str = "FRAGS";
    pub const BLOCKS: &str = "BLOCKS";
    pub const QUARANTINE: &str = "QUARANTINE";
    pub const MANAGEMENT: &str = "MANAGEMENT";
    pub const ACTION_COUNTS: &str = "ACTION_COUNTS";
    pub const RATE_STATE: &str = "RATE_STATE";
    /// Devices declared by MAC (`MacKey` -> line), for `Reason::Learning`.
    pub const MAC_DEVICES: &str = "MAC_DEVICES";
    /// Identity reports for the inventory (`Sighting`, `DhcpCapture`), their
    /// rate window, counts, and the (VLAN, MAC, address) triples reported
    /// lately.
    pub const IDENTITY: &str = "IDENTITY";
    pub const IDENTITY_RATE: &str = "IDENTITY_RATE";
    pub const IDENTITY_STATS: &str = "IDENTITY_STATS";
    pub const IDENTITY_SEEN: &str = "IDENTITY_SEEN";

    /// Every map, in the order they are pinned.
    pub const ALL: [&str; 35] = [
        GENERATION,
        CONFIG,
        IFACES,
        VLAN_FLAGS,
        DEVICES,
        DEVICE_LINES,
        V4_INDEX,
        V6_NETS,
        PROTECTED,
        RULES,
        PEER_NETS,
        COUNTER_LINES,
        GLOBAL_STATS,
        META,
        DEVICE_SLOTS,
        EVENTS,
        EVENT_STATS,
        EVENT_RATE,
        RULE_HITS,
        DEBUG_PROGS,
        FLOW_CACHE,
        FLOW_TAGS,
        FLOW_SEED,
        FLOW_STATS,
        FRAGS,
        BLOCKS,
        QUARANTINE,
        MANAGEMENT,
        ACTION_COUNTS,
        RATE_STATE,
        MAC_DEVICES,
        IDENTITY,
        IDENTITY_RATE,
        IDENTITY_STATS,
        IDENTITY_SEEN,
    ];

    /// Maps of earlier versions that this one reads once, when it takes
    /// over from such a version, and then unpins.
    pub const LEGACY: [&str; 4] =
        [LEGACY_FLOWS, LEGACY_DEVICE_STATS, LEGACY_DEVICE_COUNTERS, LEGACY_RULE_HIT_LINES];
}

/// `META[i]`: facts the controller keeps with the pinned maps so that a
/// restarted daemon can take over. Never read by the program.
pub mod meta {
    /// `META[RULES + generation]`: `RULES` entries written for it.
    pub const RULES: u32 = 0;
    /// `META[APPLIED_AT]`: seconds since the epoch of the last apply.
    pub const APPLIED_AT: u32 = 2;
    /// `META[EPOCH]`: applies so far (`Settings::epoch` of the last one).
    pub const EPOCH: u32 = 3;
    /// `META[PEER_NETS + generation]`: networks in its `PEER_NETS` trie.
    pub const PEER_NETS: u32 = 4;
    /// `META[DEVICE_ADDRS + generation]`: device addresses written for it.
    pub const DEVICE_ADDRS: u32 = 6;
    pub const LEN: u32 = 8;
}

/// `ACTION_COUNTS` indices: how many entries of each operator action are
/// in force (kept by user space; zero spares frames the lookups).
pub mod action_counts {
    /// Entries in `BLOCKS`.
    pub const BLOCKS: u32 = 0;
    /// Entries in `QUARANTINE`.
    pub const QUARANTINE: u32 = 1;
    pub const LEN: u32 = 2;
}

/// The program's global holding the machine's possible CPUs (the stride
/// of `maps::COUNTER_LINES`), set by the loader.
pub const CPUS_GLOBAL: &str = "VLANGUARD_CPUS";

/// The XDP program's name in the object file.
pub const PROGRAM_NAME: &str = "vlanguard";
/// The debug-log program (see `maps::DEBUG_PROGS`).
pub const DEBUG_PROGRAM_NAME: &str = "vlanguard_log";
/// The same filter at TC ingress, for ports whose NIC takes VLAN tags out
/// of frames (user space: `offload`).
pub const TC_PROGRAM_NAME: &str = "vlanguard_tc";

/// Policy generations held in the maps at once: the active one and the one
/// being built (ARCHITECTURE §4). The active one is `GENERATION[0]`.
pub const GENERATIONS: u32 = 2;
/// Mask applied to `GENERATION[0]` before use as an index.
pub const GENERATION_MASK: u32 = GENERATIONS - 1;

/// Rules per device and direction (after merging its profile's).
pub const MAX_RULES: usize = 64;

/// `RULES` entries one part of a device's rules may use: a rule whose peer
/// is a few networks takes one entry per network, more go to `PEER_NETS`
/// (see `filter_user::compile`). Bounds the program's scan.
pub const MAX_RULE_SCAN: u32 = 64;

/// `RULES` entries per generation; generation `g` owns
/// `g * MAX_RULE_ENTRIES .. (g + 1) * MAX_RULE_ENTRIES`. Devices with equal
/// rule lists share their entries, so this counts distinct lists' rules.
pub const MAX_RULE_ENTRIES: u32 = 1 << 20;

/// Networks of all multi-network rule peers of one generation.
pub const MAX_PEER_NETS: u32 = 1 << 16;

/// `Rule::flags` bits.
pub mod rule {
    /// Any IP protocol (`proto` is ignored).
    pub const ANY_PROTO: u8 = 1 << 0;
    /// The ports (or ICMP type) must be read from the frame and lie in the
    /// ranges: a frame without an L4 header (a non-first fragment) does not
    /// match.
    pub const L4: u8 = 1 << 1;
    /// The peer is any of the networks of set `set` in `PEER_NETS`, not
    /// `peer_hi`/`peer_lo`/`peer_len`.
    pub const PEER_SET: u8 = 1 << 2;
    /// The peer network is IPv6 and contains `::ffff:0:0/96`, where the
    /// program keeps IPv4 addresses: it does not match those.
    pub const NOT_V4: u8 = 1 << 3;
}

/// One rule (or one network of a rule's peer) in `RULES`, matched by
/// comparison. A device's rules for one direction are `count` consecutive
/// entries from `first` (see [`DeviceInfo`]), in the order of its rule list.
/// 32 bytes: two per cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The peer network's address (v4-mapped) as two big-endian halves,
    /// masked to `peer_len` bits.
    pub peer_hi: u64,
    pub peer_lo: u64,
    /// The device's port for `allow_in`, the peer's for `allow_out` (both the
    /// destination port), or the ICMP type: inclusive range.
    pub port_lo: u16,
    pub port_hi: u16,
    /// The source port: inclusive range.
    pub sport_lo: u16,
    pub sport_hi: u16,
    /// With `rule::PEER_SET`: the set's id in `PEER_NETS`.
    pub set: u32,
    pub proto: u8,
    /// Prefix length over the 128-bit (v4-mapped) address.
    pub peer_len: u8,
    /// `rule` bits.
    pub flags: u8,
    /// The rule's index in the device's merged list (rule-hit counters).
    pub index: u8,
}

/// `PEER_NETS` inner trie key: set id, then the address (v4-mapped).
/// Prefix lengths count the 32 set bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerSetKey {
    pub set: u32,
    pub addr: [u8; 16],
}

/// Full prefix of a [`PeerSetKey`].
pub const PEER_SET_KEY_BITS: u32 = 32 + 128;

/// VLAN ids 0..4096; VID 0 means "priority tag only" (treated as untagged).
pub const VLAN_IDS: u32 = 4096;

/// Map capacities. Hash maps and tries are not preallocated, so these are
/// ceilings, not memory reservations. Each counts both generations.
pub const MAX_DEVICE_ADDRS: u32 = 1 << 19;
pub const MAX_PROTECTED_NETS: u32 = 1 << 14;
pub const MAX_IFACES: u32 = 256;

/// IPv6 extension headers walked before the frame counts as malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// An IPv6 extension header or L4 header starting further into the frame
/// than this makes the frame malformed.
pub const MAX_HEADER_START: usize = 1024;

/// Nanoseconds in a second: the program's clocks and the controller's
/// expiries count in ns.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// EtherTypes the parser reads (and the test frames write).
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN_8021Q: u16 = 0x8100;
    /// 802.1ad (QinQ) outer tag.
    pub const VLAN_8021AD: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still sent by some switches.
    pub const QINQ_9100: u16 = 0x9100;
}

/// IP protocol numbers (IANA) the program and the controller name.
pub mod ipproto {
    /// IPv6 hop-by-hop options (an extension header).
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
}

/// TCP header flags (`Packet::tcp_flags` in the program).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// ICMP and ICMPv6 message types the decision names.
pub mod icmp {
    pub const ECHO_REPLY: u16 = 0;
    pub const ECHO_REQUEST: u16 = 8;
    pub const V6_ECHO_REQUEST: u16 = 128;
    pub const V6_ECHO_REPLY: u16 = 129;
    /// Neighbour discovery (`allow_ndp`): router solicitation and
    /// advertisement, neighbour solicitation and advertisement, redirect.
    pub const V6_NDP_FIRST: u16 = 133;
    pub const V6_NDP_LAST: u16 = 137;
}

/// Why the program decided what it did. Stored as `u8` in drop events and
/// used as an index into `GLOBAL_STATS`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Passed: touches no device and no protected VLAN.
    Unmatched = 0,
    /// Passed: every device involved allows it.
    Allowed = 1,
    /// Passed: ARP, IPv6 neighbour discovery or DHCP, enabled in settings.
    Infra = 2,
    /// Dropped: a device involved has no rule allowing it.
    NotAllowed = 3,
    /// Dropped: a host in a protected VLAN that is not in the inventory.
    UnknownDevice = 4,
    /// Dropped: source MAC differs from the device's bound MAC.
    SpoofedMac = 5,
    /// Dropped: a device's address seen on a frame not from its VLAN.
    WrongVlan = 6,
    /// Dropped: the frame could not be parsed (truncated, bad header, too
    /// many VLAN tags or IPv6 extension headers).
    Malformed = 7,
    /// Passed: part of a flow an allowed packet opened (a reply, or more of
    /// the same connection), still allowed by the policy in force.
    Established = 8,
    /// Dropped: from or to an address on the dynamic blocklist.
    Blocked = 9,
    /// Dropped: a quarantined device, with a peer outside the management
    /// networks.
    Quarantined = 10,
    /// Dropped: over the receiving device's `rate_limit` this second.
    RateLimited = 11,
    /// Dropped: from a device declared by MAC whose source address is not
    /// bound to it yet; the daemon learns it from this frame's event.
    Learning = 12,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Unmatched,
        Reason::Allowed,
        Reason::Infra,
        Reason::NotAllowed,
        Reason::UnknownDevice,
        Reason::SpoofedMac,
        Reason::WrongVlan,
        Reason::Malformed,
        Reason::Established,
        Reason::Blocked,
        Reason::Quarantined,
        Reason::RateLimited,
        Reason::Learning,
    ];

    /// The verdict a reason implies in enforce mode.
    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::Unmatched | Reason::Allowed | Reason::Infra | Reason::Established => {
                Verdict::Pass
            }
            _ => Verdict::Drop,
        }
    }

    /// The operator-facing name (metrics label, CLI output).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Unmatched => "unmatched",
            Reason::Allowed => "allowed",
            Reason::Infra => "infra",
            Reason::NotAllowed => "not-allowed",
            Reason::UnknownDevice => "unknown-device",
            Reason::SpoofedMac => "spoofed-mac",
            Reason::WrongVlan => "wrong-vlan",
            Reason::Malformed => "malformed",
            Reason::Established => "established",
            Reason::Blocked => "blocked",
            Reason::Quarantined => "quarantined",
            Reason::RateLimited => "rate-limited",
            Reason::Learning => "learning",
        }
    }

    /// An operator's explicit action (block, quarantine): enforced in
    /// monitor mode too.
    pub const fn is_operator_action(self) -> bool {
        matches!(self, Reason::Blocked | Reason::Quarantined)
    }

    pub fn from_u8(v: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(v)).copied()
    }
}

/// Room for reasons added later without changing the stats layout.
pub const NUM_REASONS: u32 = 16;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
    /// Monitor mode: would have been dropped, was passed and reported.
    WouldDrop = 2,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Drop, Verdict::WouldDrop];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::WouldDrop => "would-drop",
        }
    }

    pub fn from_u8(v: u8) -> Option<Verdict> {
        Verdict::ALL.get(usize::from(v)).copied()
    }

    /// What the frame gets: a would-drop passes.
    pub const fn passes(self) -> bool {
        !matches!(self, Verdict::Drop)
    }
}

pub const NUM_VERDICTS: u32 = 4;

/// Direction relative to a device: the one representation of it, in the
/// maps (`as u8`), in the policy (`allow_in`/`allow_out`), on the control
/// socket and the CLI (`in`/`out`, features `serde` and `clap`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Direction {
    /// `allow_in`: traffic to the device, from PEER.
    In = 0,
    /// `allow_out`: traffic from the device, to PEER.
    Out = 1,
}

impl Direction {
    /// As operators read it: `in` (towards the device), `out`.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    /// The policy's key for the device's rules in this direction.
    pub const fn rules_key(self) -> &'static str {
        match self {
            Direction::In => "allow_in",
            Direction::Out => "allow_out",
        }
    }

    /// The rule's key naming the peer: `from` (in), `to` (out).
    pub const fn peer_key(self) -> &'static str {
        match self {
            Direction::In => "from",
            Direction::Out => "to",
        }
    }

    /// The direction stored as `d as u8` in a map key.
    pub const fn from_u8(d: u8) -> Option<Direction> {
        match d {
            0 => Some(Direction::In),
            1 => Some(Direction::Out),
            _ => None,
        }
    }
}

/// Index into `GLOBAL_STATS`: every frame is counted there exactly once.
pub const fn global_stat_index(verdict: Verdict, reason: Reason) -> u32 {
    verdict as u32 * NUM_REASONS + reason as u32
}
pub const GLOBAL_STATS_LEN: u32 = NUM_VERDICTS * NUM_REASONS;

/// `CONFIG[gen].settings.flags`: infrastructure protocols let through to and from
/// protected VLANs (ARCHITECTURE §2: explicit, visible settings).
pub mod settings {
    pub const ALLOW_ARP: u32 = 1 << 0;
    pub const ALLOW_NDP: u32 = 1 << 1;
    pub const ALLOW_DHCP: u32 = 1 << 2;
    /// Log every decision through aya-log (troubleshooting only).
    pub const DEBUG_LOG: u32 = 1 << 3;
    /// Monitor mode for frames that involve no device (unknown hosts,
    /// malformed frames, non-IP on protected VLANs): report, never drop.
    /// Devices carry their own `DEVICE_MONITOR`.
    pub const MONITOR: u32 = 1 << 4;
}

/// `VLAN_FLAGS[gen * VLAN_IDS + vid]` bits.
pub const VLAN_PROTECTED: u32 = 1;

/// Per-generation settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Drop events each CPU may send per second; the rest are counted as
    /// suppressed (a flood cannot flood user space).
    pub events_per_sec: u32,
    /// Counts applies. A flow opened under another epoch is checked against
    /// the rules again before it may pass (revoked rules end their flows).
    pub epoch: u32,
    /// Flow idle timeouts in seconds, indexed by [`FlowTimeout`].
    pub flow_timeouts: [u32; FLOW_TIMEOUTS],
}

/// IPv4 subnets of VLANs the configuration line lists ([`Config`]).
pub const MAX_V4_NETS: usize = 8;

/// `V4_INDEX` entries per generation: one per address of the indexed
/// subnets.
pub const V4_INDEX_ENTRIES: u32 = 1 << 20;

/// `DEVICE_LINES` entries per generation: devices a policy may hold.
pub const MAX_DEVICE_LINES: u32 = 1 << 17;

/// Interfaces with an untagged VLAN the configuration line lists.
pub const MAX_UNTAGGED_IFACES: usize = 8;

/// `Config::flags` bits.
pub mod config {
    /// More interfaces have an untagged VLAN than `Config::ifaces` holds:
    /// the program asks `IFACES`.
    pub const IFACES_HASH: u32 = 1 << 1;
    /// `Config::v4_nets` lists every IPv4 subnet of every VLAN (they do not
    /// overlap): an IPv4 address is found without hashing, and one in none
    /// of them is neither a device nor protected. Otherwise the program
    /// asks `DEVICES` and `PROTECTED`.
    pub const V4_TABLE: u32 = 1 << 0;
    /// The generation has devices declared by MAC (`MAC_DEVICES`): an
    /// unknown source is looked up there before it is called unknown.
    pub const MAC_DEVICES: u32 = 1 << 2;
}

/// `V4Net::flags` bits.
pub mod v4net {
    /// The VLAN is protected: an address in it that is no device is an
    /// unknown host.
    pub const PROTECTED: u16 = 1 << 0;
    /// Its devices are found by direct index: `V4_INDEX[base + (address -
    /// net)]` holds the device's line + 1 (0: none). Otherwise in `DEVICES`.
    pub const INDEXED: u16 = 1 << 1;
}

/// An IPv4 subnet of a VLAN in the configuration line. Addresses as
/// `u32::from_be_bytes` of the address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Net {
    pub net: u32,
    pub mask: u32,
    /// Its first entry in the generation's half of `V4_INDEX`.
    pub base: u32,
    pub vlan: u16,
    /// `v4net` bits.
    pub flags: u16,
}

/// IPv6 subnets of VLANs a [`V6Table`] lists.
pub const MAX_V6_NETS: usize = 8;

/// `V6Table::flags` bits.
pub mod v6table {
    /// The table lists every IPv6 subnet of every VLAN (they do not
    /// overlap, and every device's IPv6 addresses lie in them): an IPv6
    /// address in none of them is neither a device nor protected, and one
    /// in a subnet takes its protection from the entry, without asking
    /// `PROTECTED`. Otherwise (0, also a table never written) the program
    /// asks `DEVICES` and `PROTECTED`.
    pub const COMPLETE: u32 = 1 << 0;
}

/// An IPv6 subnet of a VLAN, as the two halves of `Addr::halves`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V6Net {
    pub net_hi: u64,
    pub net_lo: u64,
    pub mask_hi: u64,
    pub mask_lo: u64,
    pub vlan: u16,
    /// `v4net::PROTECTED` or 0.
    pub flags: u16,
    pub _pad: u32,
}

/// `V6_NETS[generation]`: the VLANs' IPv6 subnets. Why: an IPv6 address
/// that is no device cost a hash lookup and a trie walk (`PROTECTED`) per
/// frame; with the table, one in no VLAN subnet (a host on an ordinary
/// network) costs neither, and one in a subnet no trie walk. Its own map,
/// not part of [`Config`]: the configuration line's size is fixed by the
/// pinned map, so growing it would refuse upgrades.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V6Table {
    /// `v6table` bits.
    pub flags: u32,
    /// Entries of `nets` in use.
    pub count: u32,
    pub nets: [V6Net; MAX_V6_NETS],
}

/// `CONFIG[generation]`: everything a frame needs to know about the policy
/// besides its devices and rules, read with one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub settings: Settings,
    /// `config` bits.
    pub flags: u32,
    /// Entries of `v4_nets` in use.
    pub v4_count: u32,
    pub v4_nets: [V4Net; MAX_V4_NETS],
    /// Entries of `ifaces` in use.
    pub iface_count: u32,
    pub _pad: u32,
    /// Interfaces whose untagged frames belong to a VLAN (`IfaceConf`).
    pub ifaces: [UntaggedIface; MAX_UNTAGGED_IFACES],
}

/// An interface whose untagged (and priority-tagged) frames belong to
/// `vlan`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UntaggedIface {
    pub ifindex: u32,
    pub vlan: u16,
    pub _pad: u16,
}

/// `Settings::flow_timeouts` indices.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowTimeout {
    /// TCP after the SYN, until the other side answers.
    TcpOpening = 0,
    TcpEstablished = 1,
    /// TCP after a FIN or RST.
    TcpClosing = 2,
    Udp = 3,
    /// ICMP and ICMPv6 echo.
    Icmp = 4,
}

pub const FLOW_TIMEOUTS: usize = 5;
/// Defaults in seconds, as in Linux conntrack (SYN_SENT 120, ESTABLISHED 5
/// days shortened to one hour: medical devices reconnect, and a shorter
/// timeout bounds how long a forgotten flow stays open; CLOSE_WAIT-ish 10,
/// UDP 30 unreplied / 120 replied taken as 60, ICMP 30).
pub const DEFAULT_FLOW_TIMEOUTS: [u32; FLOW_TIMEOUTS] = [120, 3600, 10, 60, 30];

/// `BLOCKS` capacity: blocked addresses and networks.
pub const MAX_BLOCKS: u32 = 1 << 14;
/// `MANAGEMENT` capacity (both generations).
pub const MAX_MANAGEMENT_NETS: u32 = 1 << 10;
/// Bytes of an operator's reason kept with a block or quarantine.
pub const BLOCK_REASON_LEN: usize = 48;

/// `BLOCKS` value (key: an LPM prefix of a v4-mapped address, like
/// `PeerData`) and `QUARANTINE` value (key: device counter slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// `bpf_ktime_get_boot_ns` after which the entry no longer applies; 0
    /// for never. The program checks it: expiry needs no daemon.
    pub expires_ns: u64,
    /// When it was made, seconds since the Unix epoch (for operators).
    pub created_unix: u64,
    /// The operator's reason, UTF-8, zero-padded.
    pub reason: [u8; BLOCK_REASON_LEN],
}

impl BlockEntry {
    /// Whether the entry applies at boot time `now_ns`.
    #[inline(always)]
    pub const fn active(&self, now_ns: u64) -> bool {
        self.expires_ns == 0 || now_ns < self.expires_ns
    }
}

/// The flow cache (README "Flows"): `FLOW_BUCKETS`
/// buckets of `FLOW_WAYS` entries, a flow's bucket chosen by its seeded
/// hash. An ARRAY rather than an LRU hash: a lookup is a hash of five
/// words and one line of tags, an insert plain stores (an LRU insert cost
/// ~200 ns, ARCHITECTURE §3). A full bucket gives up the entry closest to
/// expiring; with 8 ways that happens only when 9 live flows share a
/// bucket (at 65,536 flows, about 8 of the 32,768 buckets).
pub const FLOW_WAYS: u32 = 8;
pub const FLOW_BUCKETS: u32 = 1 << 15;
/// Flow cache capacity.
pub const MAX_FLOWS: u32 = FLOW_BUCKETS * FLOW_WAYS;

/// `FLOW_CACHE` entry: one 64-byte line. `tag` is 0 for a free entry, else
/// the key's tag (`flow_tag`), written last on insert and first on removal
/// so that a reader on another CPU can tell a half-written entry
/// (README "Flows").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub value: FlowValue,
    pub tag: u32,
    pub _pad: u32,
}

/// `FLOW_TAGS[bucket]`: each way's tag, so a miss reads one line of tags
/// rather than every way's entry. 8-aligned (as map values are) so the
/// program reads two tags per load.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTags {
    pub tags: [u32; FLOW_WAYS as usize],
}

/// The flow key's 64-bit hash under the cache's `seed` (random per
/// filter, kept with the pins, so that senders cannot aim flows at one
/// bucket). Each of the key's five words is mixed with the seed and
/// multiplied by its own odd constant, independently of the others (the
/// CPU does the five multiplies at once; a chain of them was the largest
/// single cost of a frame's flow lookup), then the sum is folded.
#[inline(always)]
pub const fn flow_hash(key: &FlowKey, seed: u64) -> u64 {
    let [w0, w1, w2, w3, w4] = key.words();
    let a = (w0 ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = (w1 ^ seed).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let c = (w2 ^ seed).wrapping_mul(0x94d0_49bb_1331_11eb);
    let d = (w3 ^ seed).wrapping_mul(0xd6e8_feb8_6659_fd93);
    let e = (w4 ^ seed).wrapping_mul(0xa076_1d64_78bd_642f);
    let h = a.wrapping_add(b).wrapping_add(c.wrapping_add(d)).wrapping_add(e);
    let h = (h ^ (h >> 32)).wrapping_mul(0xe703_7ed1_a0b4_28db);
    h ^ (h >> 29)
}

/// A hash's bucket.
#[inline(always)]
pub const fn flow_bucket(hash: u64) -> u32 {
    (hash as u32) & (FLOW_BUCKETS - 1)
}

/// A hash's tag: never 0, which marks a free entry.
#[inline(always)]
pub const fn flow_tag(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// Whether either 32-bit lane of `word` (two ways' tags, `FlowTags` read as
/// words) is `tag`, without a branch: a lane of `word ^ tag` is zero where
/// the tag is, and subtracting 1 from each lane sets the top bit of a zero
/// lane only (a lower lane borrows only when it is zero, so the upper
/// lane's result is never wrong unless the lower one already matched).
/// Nonzero for a match. The program's flow lookup ORs this over a bucket.
#[inline(always)]
pub const fn tag_lanes(word: u64, tag: u32) -> u64 {
    let x = word ^ (tag as u64 | (tag as u64) << 32);
    x.wrapping_sub(0x0000_0001_0000_0001) & !x & 0x8000_0000_8000_0000
}

/// An IPv6 address, or an IPv4 one v4-mapped (`::ffff:a.b.c.d`), in
/// network byte order and 8-aligned. Why its own type: the BPF target has
/// no unaligned loads, so LLVM copies and compares a `[u8; 16]` it cannot
/// prove aligned one byte at a time (measured at about a tenth of a
/// dropped frame's cost); an `Addr` is two words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// The bytes as two machine words (for copies and equality).
    #[inline(always)]
    pub const fn words(&self) -> [u64; 2] {
        // SAFETY: 16 bytes, 8-aligned (`repr(align(8))`), all initialised.
        unsafe { *(self as *const Addr).cast::<[u64; 2]>() }
    }

    /// The address as two big-endian numbers, high half first (for
    /// prefixes and ordering).
    #[inline(always)]
    pub const fn halves(&self) -> (u64, u64) {
        let [hi, lo] = self.words();
        (u64::from_be(hi), u64::from_be(lo))
    }

    /// Whether it is an IPv4 address held v4-mapped.
    #[inline(always)]
    pub const fn is_v4_mapped(&self) -> bool {
        let (hi, lo) = self.halves();
        hi == 0 && lo >> 32 == 0xffff
    }

    /// The low 32 bits: a v4-mapped address's IPv4 address.
    #[inline(always)]
    pub const fn v4(&self) -> u32 {
        self.halves().1 as u32
    }
}

impl Addr {
    /// IPv4 address `v4` (host order), v4-mapped.
    #[inline(always)]
    pub const fn from_v4(v4: u32) -> Addr {
        let words = [0u64, (0xffff_u64 << 32 | v4 as u64).to_be()];
        // SAFETY: two words are 16 initialised bytes with Addr's alignment.
        unsafe { core::mem::transmute::<[u64; 2], Addr>(words) }
    }
}

impl PartialEq for Addr {
    #[inline(always)]
    fn eq(&self, other: &Addr) -> bool {
        let ([a, b], [c, d]) = (self.words(), other.words());
        a == c && b == d
    }
}

impl Eq for Addr {}

/// A flow's key: a connection in canonical order (the lower (address, port)
/// end first), so both directions find the same entry with one lookup.
/// Addresses v4-mapped. ICMP echo uses ports 0.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo: [u8; 16],
    pub hi: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// Sets the key of a packet from (`src`, `sport`) to (`dst`, `dport`);
    /// returns whether the source is the `lo` end. Written in place: in
    /// the XDP program the key lives in a per-CPU scratch map, not on the
    /// stack.
    #[inline(always)]
    pub fn set(&mut self, src: &Addr, sport: u16, dst: &Addr, dport: u16, proto: u8) -> bool {
        let src_lo = order(src, sport) <= order(dst, dport);
        let (lo, lo_port, hi, hi_port) =
            if src_lo { (src, sport, dst, dport) } else { (dst, dport, src, sport) };
        let ([a, b], [c, d]) = (lo.words(), hi.words());
        let [p0, p1] = lo_port.to_ne_bytes();
        let [q0, q1] = hi_port.to_ne_bytes();
        // Whole words, as the hash reads them: the CPU forwards a stored
        // word to a load of it, but not bytes stored apart (a stall of
        // ~10 ns measured on the flow hash).
        let tail = u64::from_ne_bytes([p0, p1, q0, q1, proto, 0, 0, 0]);
        // SAFETY: 40 bytes, 8-aligned, every byte a field (see `words`).
        unsafe { *(self as *mut FlowKey).cast::<[u64; 5]>() = [a, b, c, d, tail] };
        src_lo
    }

    /// The key as five words: what the hash and the cache's compare read.
    #[inline(always)]
    pub const fn words(&self) -> [u64; 5] {
        // SAFETY: 40 bytes, 8-aligned (`repr(align(8))`), every byte a
        // field (no implicit padding, see the layout test).
        unsafe { *(self as *const FlowKey).cast::<[u64; 5]>() }
    }
}

/// A total order on (address, port) made of plain integer compares (no
/// memcmp call in the BPF program).
#[inline(always)]
fn order(a: &Addr, port: u16) -> (u64, u64, u16) {
    let (hi, lo) = a.halves();
    (hi, lo, port)
}

/// `FlowValue::state`.
pub mod flow_state {
    /// TCP SYN seen, no answer yet.
    pub const OPENING: u8 = 0;
    /// TCP answered; UDP and ICMP flows are always in this state.
    pub const ESTABLISHED: u8 = 1;
    /// TCP FIN or RST seen.
    pub const CLOSING: u8 = 2;
}

/// A flow's state (`FlowEntry::value`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// CLOCK_MONOTONIC (the program's coarse clock, tick resolution) after
    /// which the flow is gone.
    pub expires_ns: u64,
    /// `Settings::epoch` the flow was last found allowed under.
    pub epoch: u32,
    /// The destination port (ICMP: type) of the opening packet: what the
    /// rules are asked again when the epoch changes.
    pub open_port: u16,
    /// Whether the `lo` end opened the flow.
    pub lo_opened: u8,
    pub state: u8,
}

/// `FRAGS` capacity: datagrams whose first fragment passed, remembered
/// until their later fragments came (LRU: the least recently used goes).
pub const MAX_FRAGS: u32 = 1 << 14;
/// How long a first fragment's ports are kept: Linux's reassembly timeout
/// (`ipfrag_time`, 30 s).
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// `FRAGS` key: a fragmented datagram (addresses v4-mapped). 8-aligned
/// (its size is 40 either way) so that the program copies the addresses
/// into it as words, not as halves.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// `FRAGS` value: the first fragment's ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragPorts {
    /// CLOCK_MONOTONIC (coarse) after which the entry is ignored.
    pub expires_ns: u64,
    pub sport: u16,
    /// Destination port, or ICMP type.
    pub dport: u16,
    pub _pad: u32,
}

/// `FLOW_STATS[i]` (per CPU).
pub mod flow_stats {
    pub const CREATED: u32 = 0;
    /// Found past its timeout and removed.
    pub const EXPIRED: u32 = 1;
    /// Found no longer allowed after a policy change and removed.
    pub const REVOKED: u32 = 2;
    /// Live, but given up for a new flow in a full bucket.
    pub const EVICTED: u32 = 3;
    pub const LEN: u32 = 4;
}

/// A dropped frame, sent to user space through the `EVENTS` ring buffer.
/// Addresses v4-mapped; fields the frame did not reach are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// CLOCK_MONOTONIC at tick resolution (the program's coarse clock).
    pub ktime_ns: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Counter slots of the devices involved, `u32::MAX` for none.
    pub src_slot: u32,
    pub dst_slot: u32,
    pub ifindex: u32,
    pub sport: u16,
    pub dport: u16,
    pub vlan: u16,
    pub proto: u8,
    pub reason: u8,
    /// `Verdict`: drop, or would-drop in monitor mode.
    pub verdict: u8,
    /// The frame's source MAC: who sent it, for the inventory of hosts on
    /// protected VLANs. Records of versions before it are 64 bytes long.
    pub src_mac: [u8; 6],
    pub _pad: [u8; 5],
}

/// `DropEvent`'s size before it carried the source MAC; user space reads
/// both.
pub const DROP_EVENT_V1_BYTES: usize = 64;

/// `EVENT_STATS[i]` (per CPU): what happened to drop events.
pub mod event_stats {
    pub const SENT: u32 = 0;
    /// Over the per-CPU rate.
    pub const SUPPRESSED: u32 = 1;
    /// The ring buffer was full.
    pub const LOST: u32 = 2;
    pub const LEN: u32 = 4;
}

/// `EVENT_RATE[0]` (per CPU): the rate limiter's window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// When the window began (the program's coarse clock, ns).
    pub start_ns: u64,
    pub sent: u32,
    pub _pad: u32,
}

pub const EVENTS_RING_BYTES: u32 = 1 << 18;

/// `MAC_DEVICES` key: a device declared by MAC, in its generation and VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub generation: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
}

/// Both generations' devices declared by MAC.
pub const MAX_MAC_DEVICES: u32 = 2 * 4096;

/// What an identity report is (`Sighting::kind`).
pub mod identity {
    /// An ARP packet: sender MAC and IPv4 address.
    pub const ARP: u8 = 1;
    /// An IPv6 neighbour or router solicitation or advertisement.
    pub const NDP: u8 = 2;
    /// A DHCPv4 client message (`DhcpCapture`).
    pub const DHCPV4: u8 = 3;
    /// A DHCPv6 client message (`DhcpCapture`).
    pub const DHCPV6: u8 = 4;

    /// `IDENTITY_STATS[i]` (per CPU).
    pub const SENT: u32 = 0;
    /// Over the per-CPU rate.
    pub const SUPPRESSED: u32 = 1;
    /// The ring buffer was full.
    pub const LOST: u32 = 2;
    /// ARP/NDP of a (VLAN, MAC, address) reported within `REPEAT_NS`.
    pub const REPEATED: u32 = 3;
    pub const STATS_LEN: u32 = 4;

    /// Reports per CPU per second; DHCP and ARP are rare, a flood of them
    /// (DHCP starvation, ARP scans) is counted, not forwarded.
    pub const PER_SEC: u32 = 64;
    /// A known (VLAN, MAC, address) is reported again after this long, so
    /// that the inventory's last-seen stays fresh.
    pub const REPEAT_NS: u64 = 300 * super::NS_PER_SEC;
    /// (VLAN, MAC, address) triples remembered (LRU).
    pub const SEEN_ENTRIES: u32 = 16_384;
    pub const RING_BYTES: u32 = 1 << 18;
    /// The first bytes of a DHCP message kept: the fixed BOOTP part (236),
    /// the cookie and the options a client sends fit with room to spare.
    pub const DHCP_PAYLOAD: usize = 1024;
}

/// An identity report: a host on a protected VLAN said who it is (ARP,
/// NDP). The header of `DhcpCapture` too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// CLOCK_MONOTONIC at tick resolution.
    pub ktime_ns: u64,
    /// The frame's source address (ARP: the sender's), v4-mapped; 0.0.0.0
    /// for a DHCPv4 client that has none yet.
    pub src: [u8; 16],
    pub ifindex: u32,
    /// The frame's VLAN (tag, else the interface's untagged VLAN).
    pub vlan: u16,
    /// `identity::*`.
    pub kind: u8,
    pub _pad: u8,
    pub src_mac: [u8; 6],
    /// Bytes of `DhcpCapture::payload` holding the message (0 for ARP/NDP).
    pub payload_len: u16,
}

/// A DHCP client message: the UDP payload's first bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpCapture {
    pub head: Sighting,
    pub payload: [u8; identity::DHCP_PAYLOAD],
}

/// `IDENTITY_SEEN` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeenKey {
    pub addr: [u8; 16],
    pub mac: [u8; 6],
    pub vlan: u16,
}
pub const DEFAULT_EVENTS_PER_SEC: u32 = 100;

/// `IFACES` value, keyed by ifindex (when `Config::ifaces` cannot hold
/// them all).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceConf {
    /// VLAN that untagged (and priority-tagged) frames on this interface
    /// belong to; 0 = none (an uplink).
    pub untagged_vlan: u16,
    pub _pad: u16,
}

/// `DEVICES` key: an address of a device in one generation, for addresses
/// not found by direct index (IPv6; IPv4 outside the indexed subnets).
/// IPv4 is stored v4-mapped (`::ffff:a.b.c.d`) so one map serves both
/// families. The value is the device's line in `DEVICE_LINES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    pub generation: u32,
    pub addr: [u8; 16],
}

/// `DeviceInfo::flags` bits (`DEVICE_LINES` entries).
pub const DEVICE_MAC_BOUND: u16 = 1;
/// The device is in monitor mode: frames it would deny pass as would-drops.
pub const DEVICE_MONITOR: u16 = 2;

/// `DEVICE_LINES[generation * MAX_DEVICE_LINES + line]`: a device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable per-device index for counters.
    pub slot: u32,
    /// Its rules for traffic to it and from it, each in two parts: its
    /// profile's (shared with the profile's devices), then its own.
    pub rules_in: [RuleRange; 2],
    pub rules_out: [RuleRange; 2],
    pub vlan: u16,
    pub flags: u16,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Frames per second it may receive; 0: no limit.
    pub packets_per_sec: u32,
    /// New TCP connections (SYN) per second towards it; 0: no limit.
    pub syns_per_sec: u32,
}

/// `RULES` entries `first .. first + count` of the generation; no entries
/// in every part of a direction denies it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRange {
    pub first: u32,
    pub count: u32,
}

/// `RATE_STATE` value, keyed by device slot: this second's counts towards
/// the device, shared by all CPUs (atomic adds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// `bpf_ktime_get_ns` / 1e9 of the window.
    pub second: u64,
    pub packets: u64,
    pub syns: u64,
}

/// `PROTECTED` LPM data: generation, then the address. Prefix lengths count
/// the 32 generation bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtectedKey {
    pub generation: u32,
    pub addr: [u8; 16],
}

/// Full prefix of a `PROTECTED` key (generation + address).
pub const PROTECTED_KEY_BITS: u32 = 32 + 128;

/// `PROTECTED` value: the VLAN the subnet belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectedNet {
    pub vlan: u16,
    pub _pad: u16,
}

/// Key data of `BLOCKS`: an address (v4-mapped).
pub type PeerData = [u8; 16];
pub const PEER_BITS: u32 = 128;

/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME: usize = 63;

/// `DEVICE_SLOTS` key: a device name, NUL-padded. The value is the device's
/// counter slot, kept stable across applies and daemon restarts so that a
/// device's counters stay its own when others are added or removed. Never
/// read by the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceName {
    pub bytes: [u8; MAX_DEVICE_NAME + 1],
}

pub const MAX_DEVICE_SLOTS: u32 = 1 << 18;

/// Key of the per-device counters of earlier versions (see
/// `maps::LEGACY_DEVICE_STATS`), read once on upgrade.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatKey {
    pub slot: u32,
    pub direction: u8,
    pub verdict: u8,
    pub reason: u8,
    pub _pad: u8,
}

/// `RULE_HITS` key: rule `rule` (its index in the device's merged list) of
/// direction `direction` of the device in counter slot `slot`. The value
/// (per CPU) counts the frames it let through. Rules below [`LINE_RULES`]
/// are counted in the device's [`CounterLine`] instead; an entry for one
/// of them is what an earlier version counted, and is added in.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleHitKey {
    pub slot: u32,
    pub direction: u8,
    pub rule: u8,
    pub _pad: u16,
}

pub const MAX_RULE_HITS: u32 = 1 << 20;

/// Rules per direction whose hits a [`CounterLine`] holds: most frames a
/// device's rules allow match one of its first few, and six fill the
/// direction's 64-byte line beside its pass counter.
pub const LINE_RULES: usize = 6;

/// The most counter slots `COUNTER_LINES` can hold: the devices of a full
/// policy ([`MAX_DEVICE_LINES`]). The map is sized when the filter is first
/// loaded (`--device-capacity`, default from the CPU count); during a
/// policy change the slots of removed devices stay taken until the switch,
/// so the devices kept plus the devices added must fit.
pub const COUNTER_SLOTS: u32 = MAX_DEVICE_LINES;

/// `COUNTER_LINES[slot * cpus + cpu]`: what CPU `cpu` counted for the device
/// in counter slot `slot` (`cpus`: the machine's possible CPUs). One plain
/// array rather than per-CPU maps: a per-CPU array finds a value through a
/// table of per-CPU pointers and in memory apart from its neighbours, so at
/// many devices a frame paid for the pointer, the counters and the rule
/// hits in three cold places; here it touches one 64-byte line per device
/// (the array is created mmapable, which aligns its values to pages and so
/// each line to a cache line). Only CPU `cpu` writes its lines, as with a
/// per-CPU map. Why frames were dropped is counted globally
/// (`GLOBAL_STATS`) and reported per frame in drop events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterLine {
    /// `[Direction]`: what an allowed frame touches.
    pub passed: [PassedLine; 2],
    /// `[Direction][verdict]`: frames dropped (`Verdict::Drop`, index 0)
    /// and, in monitor mode, let through that would have been dropped
    /// (`Verdict::WouldDrop`, index 1).
    pub dropped: [[Counter; 2]; 2],
}

/// A direction's frames let through, and how many of them each of its
/// first [`LINE_RULES`] rules allowed (`hits[rule]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassedLine {
    pub frames: Counter,
    pub hits: [u64; LINE_RULES],
}

impl CounterLine {
    /// The counter of `direction` and `verdict`.
    pub fn counter(&self, direction: Direction, verdict: Verdict) -> &Counter {
        let d = direction as usize;
        match verdict {
            Verdict::Pass => &self.passed[d].frames,
            Verdict::Drop => &self.dropped[d][0],
            Verdict::WouldDrop => &self.dropped[d][1],
        }
    }

    /// Adds `other` (counters and hits wrap, as the program's do).
    pub fn add(&mut self, other: &CounterLine) {
        for (p, o) in self.passed.iter_mut().zip(&other.passed) {
            p.frames.add(&o.frames);
            for (h, o) in p.hits.iter_mut().zip(&o.hits) {
                *h = h.wrapping_add(*o);
            }
        }
        for (d, o) in self.dropped.iter_mut().flatten().zip(other.dropped.iter().flatten()) {
            d.add(o);
        }
    }

    /// As [`CounterLine::counter`], to add to.
    pub fn counter_mut(&mut self, direction: Direction, verdict: Verdict) -> &mut Counter {
        let d = direction as usize;
        match verdict {
            Verdict::Pass => &mut self.passed[d].frames,
            Verdict::Drop => &mut self.dropped[d][0],
            Verdict::WouldDrop => &mut self.dropped[d][1],
        }
    }
}

/// Earlier versions' per-device counters (`maps::LEGACY_DEVICE_COUNTERS`,
/// per CPU, `[slot]`): `lines[Direction][Verdict]`. Read once on upgrade.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub lines: [[Counter; 3]; 2],
}

/// Earlier versions' rule-hit lines (`maps::LEGACY_RULE_HIT_LINES`, per
/// CPU, `[slot]`): the hits of each direction's first four rules,
/// `hits[Direction][rule]`. Read once on upgrade.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleHitLine {
    pub hits: [[u64; 4]; 2],
}

/// Counter value in `COUNTER_LINES` and `GLOBAL_STATS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    /// Adds `other` (counters wrap, as the program's do).
    pub fn add(&mut self, other: &Counter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

/// v4-mapped IPv6 form of an IPv4 address.
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all of these are #[repr(C)], hold only integers and byte
    // arrays, and have no implicit padding (checked by the layout tests).
    unsafe impl aya::Pod for Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for V4Net {}
    // SAFETY: as above.
    unsafe impl aya::Pod for UntaggedIface {}
    // SAFETY: as above.
    unsafe impl aya::Pod for IfaceConf {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DeviceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DeviceInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProtectedKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProtectedNet {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Rule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RuleRange {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PeerSetKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DeviceName {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DropEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RateWindow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MacKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Sighting {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DhcpCapture {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SeenKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RuleHitKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for StatKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DeviceCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RuleHitLine {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CounterLine {}
    // SAFETY: as above.
    unsafe impl aya::Pod for V6Table {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RateState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowTags {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragPorts {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    /// Sum of field sizes equals the struct size: no implicit padding.
    macro_rules! assert_layout {
        ($t:ty, size $size:expr, align $align:expr, $($field:ident @ $off:expr),+) => {{
            assert_eq!(size_of::<$t>(), $size, "size of {}", stringify!($t));
            assert_eq!(align_of::<$t>(), $align, "align of {}", stringify!($t));
            $(assert_eq!(offset_of!($t, $field), $off, "{}.{}", stringify!($t), stringify!($field));)+
        }};
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_layout!(Settings, size 32, align 4,
            flags @ 0, events_per_sec @ 4, epoch @ 8, flow_timeouts @ 12);
        assert_layout!(V4Net, size 16, align 4, net @ 0, mask @ 4, base @ 8, vlan @ 12, flags @ 14);
        assert_layout!(V6Net, size 40, align 8,
            net_hi @ 0, net_lo @ 8, mask_hi @ 16, mask_lo @ 24, vlan @ 32, flags @ 34, _pad @ 36);
        assert_layout!(V6Table, size 328, align 8, flags @ 0, count @ 4, nets @ 8);
        assert_layout!(Config, size 240, align 4, settings @ 0, flags @ 32, v4_count @ 36,
            v4_nets @ 40, iface_count @ 168, _pad @ 172, ifaces @ 176);
        assert_layout!(UntaggedIface, size 8, align 4, ifindex @ 0, vlan @ 4, _pad @ 6);
        assert_layout!(BlockEntry, size 64, align 8, expires_ns @ 0, created_unix @ 8, reason @ 16);
        assert_layout!(FlowKey, size 40, align 8,
            lo @ 0, hi @ 16, lo_port @ 32, hi_port @ 34, proto @ 36, _pad @ 37);
        assert_layout!(FlowValue, size 16, align 8,
            expires_ns @ 0, epoch @ 8, open_port @ 12, lo_opened @ 14, state @ 15);
        assert_layout!(FlowEntry, size 64, align 8, key @ 0, value @ 40, tag @ 56, _pad @ 60);
        assert_layout!(FlowTags, size 32, align 8, tags @ 0);
        assert_layout!(DropEvent, size 72, align 8,
            ktime_ns @ 0, src @ 8, dst @ 24, src_slot @ 40, dst_slot @ 44, ifindex @ 48,
            sport @ 52, dport @ 54, vlan @ 56, proto @ 58, reason @ 59, verdict @ 60,
            src_mac @ 61, _pad @ 67);
        assert_layout!(MacKey, size 12, align 4, generation @ 0, vlan @ 4, mac @ 6);
        assert_layout!(Sighting, size 40, align 8,
            ktime_ns @ 0, src @ 8, ifindex @ 24, vlan @ 28, kind @ 30, _pad @ 31, src_mac @ 32,
            payload_len @ 38);
        assert_layout!(DhcpCapture, size 1064, align 8, head @ 0, payload @ 40);
        assert_layout!(SeenKey, size 24, align 2, addr @ 0, mac @ 16, vlan @ 22);
        assert_layout!(FragKey, size 40, align 8, src @ 0, dst @ 16, id @ 32, proto @ 36, _pad @ 37);
        assert_layout!(FragPorts, size 16, align 8, expires_ns @ 0, sport @ 8, dport @ 10, _pad @ 12);
        assert_layout!(RateWindow, size 16, align 8, start_ns @ 0, sent @ 8, _pad @ 12);
        assert_layout!(RuleHitKey, size 8, align 4, slot @ 0, direction @ 4, rule @ 5, _pad @ 6);
        assert_layout!(IfaceConf, size 4, align 2, untagged_vlan @ 0, _pad @ 2);
        assert_layout!(DeviceKey, size 20, align 4, generation @ 0, addr @ 4);
        assert_layout!(DeviceInfo, size 56, align 4,
            slot @ 0, rules_in @ 4, rules_out @ 20, vlan @ 36, flags @ 38, mac @ 40, _pad @ 46,
            packets_per_sec @ 48, syns_per_sec @ 52);
        assert_layout!(RuleRange, size 8, align 4, first @ 0, count @ 4);
        assert_layout!(Rule, size 32, align 8,
            peer_hi @ 0, peer_lo @ 8, port_lo @ 16, port_hi @ 18, sport_lo @ 20, sport_hi @ 22,
            set @ 24, proto @ 28, peer_len @ 29, flags @ 30, index @ 31);
        assert_layout!(PeerSetKey, size 20, align 4, set @ 0, addr @ 4);
        assert_layout!(RateState, size 24, align 8, second @ 0, packets @ 8, syns @ 16);
        assert_layout!(ProtectedKey, size 20, align 4, generation @ 0, addr @ 4);
        assert_layout!(ProtectedNet, size 4, align 2, vlan @ 0, _pad @ 2);
        assert_layout!(DeviceName, size 64, align 1, bytes @ 0);
        assert_layout!(StatKey, size 8, align 4,
            slot @ 0, direction @ 4, verdict @ 5, reason @ 6, _pad @ 7);
        assert_layout!(Counter, size 16, align 8, packets @ 0, bytes @ 8);
        assert_layout!(DeviceCounters, size 96, align 8, lines @ 0);
        assert_layout!(RuleHitLine, size 64, align 8, hits @ 0);
        // Each of the three parts one cache line of its own.
        assert_layout!(CounterLine, size 192, align 8, passed @ 0, dropped @ 128);
        assert_layout!(PassedLine, size 64, align 8, frames @ 0, hits @ 16);
        // `lines[direction][verdict]`, as the program indexes it: the
        // last counter is out/would-drop.
        let c = DeviceCounters::default();
        let last = &c.lines[Direction::Out as usize][Verdict::WouldDrop as usize];
        assert_eq!(last as *const Counter as usize - &c as *const DeviceCounters as usize, 80);
    }

    /// The kernel keeps 15 bytes of a map's name (`BPF_OBJ_NAME_LEN`): the
    /// loader finds a running program's maps by that name.
    #[test]
    fn map_names_fit_the_kernels_object_name() {
        for name in maps::ALL.iter().chain(&maps::LEGACY) {
            assert!(name.len() <= 15, "{name}: longer than the kernel keeps");
        }
    }

    #[test]
    fn counter_line_parts_by_direction_and_verdict() {
        let mut line = CounterLine::default();
        let mut n = 0;
        for direction in [Direction::In, Direction::Out] {
            for verdict in Verdict::ALL {
                n += 1;
                line.counter_mut(direction, verdict).packets = n;
            }
        }
        assert_eq!(line.passed[Direction::In as usize].frames.packets, 1);
        assert_eq!(
            line.dropped[Direction::In as usize],
            [Counter { packets: 2, bytes: 0 }, Counter { packets: 3, bytes: 0 }]
        );
        assert_eq!(line.passed[Direction::Out as usize].frames.packets, 4);
        assert_eq!(line.counter(Direction::Out, Verdict::WouldDrop).packets, 6);
        line.passed[Direction::Out as usize].hits[5] = u64::MAX;
        let mut sum = line;
        sum.add(&line);
        assert_eq!(sum.counter(Direction::In, Verdict::Drop).packets, 4);
        assert_eq!(sum.counter(Direction::Out, Verdict::WouldDrop).packets, 12);
        assert_eq!(sum.passed[Direction::Out as usize].hits[5], u64::MAX - 1, "wraps");
    }

    #[test]
    fn addresses_read_as_words_and_halves() {
        let a = Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]);
        assert!(a.is_v4_mapped());
        assert_eq!(a.v4(), u32::from_be_bytes([192, 0, 2, 7]));
        assert_eq!(a.halves(), (0, 0x0000_ffff_c000_0207));
        let b = Addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(!b.is_v4_mapped());
        assert_eq!(b.halves(), (0x2001_0db8_0000_0000, 1));
        assert!(a == a && a != b);
        // The flow key's order is numeric: the v4-mapped address is lower.
        let mut k = FlowKey::default();
        assert!(k.set(&a, 9, &b, 1, 6));
        assert!(!k.set(&b, 1, &a, 9, 6));
        assert_eq!((k.lo, k.lo_port, k.hi, k.hi_port), (a.0, 9, b.0, 1));
    }

    #[test]
    fn prefix_bits_match_key_sizes() {
        assert_eq!(PEER_BITS as usize, size_of::<PeerData>() * 8);
        assert_eq!(PROTECTED_KEY_BITS as usize, size_of::<ProtectedKey>() * 8);
        assert_eq!(PEER_SET_KEY_BITS as usize, size_of::<PeerSetKey>() * 8);
        // A device's scan fits its counts and its rule indexes fit a byte.
        assert!(MAX_RULE_SCAN as usize >= MAX_RULES && MAX_RULE_SCAN <= u32::from(u8::MAX));
        assert!(MAX_RULES <= usize::from(u8::MAX));
    }

    /// A tag is found in either lane of a word, and a free way or another
    /// flow's tag is not taken for it.
    #[test]
    fn tag_lanes_finds_a_tag_in_either_lane_and_nothing_else() {
        let word = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        let tags = [1u32, 3, 0x7fff_ffff, 0x8000_0001, 0xffff_ffff, 0x1234_5679];
        for &tag in &tags {
            for &other in tags.iter().chain(&[0u32, 2, 0x8000_0000, tag ^ 0x100]) {
                if other == tag {
                    continue;
                }
                assert_eq!(tag_lanes(word(other, other), tag), 0, "{tag:#x} in {other:#x} x2");
                assert_ne!(tag_lanes(word(tag, other), tag), 0, "{tag:#x} low, {other:#x}");
                assert_ne!(tag_lanes(word(other, tag), tag), 0, "{other:#x}, {tag:#x} high");
                // A free way (tag 0) next to another flow's tag: no match.
                assert_eq!(tag_lanes(word(0, other), tag), 0, "free, {other:#x}");
                assert_eq!(tag_lanes(word(other, 0), tag), 0, "{other:#x}, free");
            }
            assert_ne!(tag_lanes(word(tag, tag), tag), 0);
        }
    }

    /// Flows that differ only a little (sequential clients and ports, as
    /// a busy VLAN has) spread over the buckets about as evenly as random
    /// ones would: at 65,536 flows (2 per bucket on average) hardly any
    /// bucket holds more than its 8 ways, and the seed moves every flow.
    #[test]
    fn flow_hash_spreads_similar_flows() {
        let mut keys = Vec::new();
        for i in 0..65_536u32 {
            let mut k = FlowKey::default();
            let client =
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 30, (i >> 8) as u8, i as u8];
            let device = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 110, 0, (i % 7) as u8];
            k.set(&Addr(client), 40_000 + (i % 1_000) as u16, &Addr(device), 443, 6);
            keys.push(k);
        }
        for seed in [0, 1, 0x5eed_5eed_5eed_5eed] {
            let mut per_bucket = vec![0u32; FLOW_BUCKETS as usize];
            for k in &keys {
                per_bucket[flow_bucket(flow_hash(k, seed)) as usize] += 1;
            }
            let over = per_bucket.iter().filter(|n| **n > FLOW_WAYS).count();
            // A Poisson(2) spread puts about 8 buckets over 8.
            assert!(over <= 40, "seed {seed}: {over} buckets over {FLOW_WAYS} flows");
            assert!(per_bucket.iter().max().copied().unwrap_or(0) <= 14, "seed {seed}");
        }
        let moved = keys.iter().filter(|k| flow_hash(k, 1) != flow_hash(k, 2)).count();
        assert_eq!(moved, keys.len());
        assert!(keys.iter().all(|k| flow_tag(flow_hash(k, 7)) != 0));
    }

    #[test]
    fn reasons_round_trip_and_imply_verdicts() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Reason::from_u8(i as u8), Some(*r));
            assert!((*r as u32) < NUM_REASONS);
        }
        assert_eq!(Reason::from_u8(Reason::ALL.len() as u8), None);
        assert_eq!(Reason::Allowed.verdict(), Verdict::Pass);
        assert_eq!(Reason::Malformed.verdict(), Verdict::Drop);
        assert!(global_stat_index(Verdict::Drop, Reason::Malformed) < GLOBAL_STATS_LEN);
    }
}

/// The test lab's VLAN switch (`filter-ebpf/src/bin/lab_vlan.rs`), which
/// stands in for 802.1Q subinterfaces on kernels without them. Not part of
/// the filter.
pub mod lab {
    pub const PROGRAM_NAME: &str = "lab_vlan";
    pub const MAP: &str = "LAB_VLAN";

    /// Key: the interface a frame arrived on and its VLAN id (0: untagged).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PortKey {
        pub ifindex: u32,
        pub vid: u16,
        pub _pad: u16,
    }

    /// What to do: redirect to the egress of `target`, first popping the tag
    /// (tagged frames) or pushing `push_vid` (untagged frames).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PortAction {
        pub target: u32,
        pub push_vid: u16,
        pub _pad: u16,
    }

    #[cfg(feature = "user")]
    // SAFETY: #[repr(C)], integers only, no implicit padding.
    unsafe impl aya::Pod for PortKey {}
    #[cfg(feature = "user")]
    // SAFETY: as above.
    unsafe impl aya::Pod for PortAction {}
}
