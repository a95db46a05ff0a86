//! The program's maps. Types and names come from `filter-common`; user space
//! fills the policy maps and reads the stats maps.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{self, ArrayOfMaps},
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, RingBuf},
};
use filter_common::{
    Counter, DeviceInfo, DeviceKey, GENERATIONS, GLOBAL_STATS_LEN, IfaceConf, MAX_DEVICE_ADDRS,
    MAX_DEVICE_STATS, MAX_IFACES, MAX_PROTECTED_NETS, MAX_SET_PREFIXES, PeerData, PortData,
    ProtectedKey, ProtectedNet, RULE_SET_SLOTS, RuleBits, Settings, StatKey, VLAN_IDS,
};

/// `[0]`: the active policy generation (0 or 1). Flipping it is the atomic
/// policy switch.
#[map]
pub static GENERATION: Array<u32> = Array::with_max_entries(1, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(GENERATIONS, 0);

/// Keyed by ifindex: interfaces whose untagged frames belong to one VLAN.
#[map]
pub static IFACES: HashMap<u32, IfaceConf> = HashMap::with_max_entries(MAX_IFACES, 0);

/// `[generation * VLAN_IDS + vid]`: VLAN flags.
#[map]
pub static VLAN_FLAGS: Array<u32> = Array::with_max_entries(GENERATIONS * VLAN_IDS, 0);

#[map]
pub static DEVICES: HashMap<DeviceKey, DeviceInfo> =
    HashMap::with_max_entries(MAX_DEVICE_ADDRS, BPF_F_NO_PREALLOC);

#[map]
pub static PROTECTED: LpmTrie<ProtectedKey, ProtectedNet> =
    LpmTrie::with_max_entries(MAX_PROTECTED_NETS, 0);

/// One small trie per rule set (slot = generation and rule set id) keyed
/// by peer address. Separate tries keep the lookup depth that of one rule
/// set's prefixes, however many devices and rule sets there are; one trie
/// keyed by (rule set, address) grows deeper with every rule set. User space
/// builds each inner trie once and never changes it after publishing it.
#[btf_map]
pub static PEER_SETS: ArrayOfMaps<
    btf_maps::LpmTrie<PeerData, RuleBits, { MAX_SET_PREFIXES as usize }>,
    { RULE_SET_SLOTS as usize },
> = ArrayOfMaps::new();

/// Like `PEER_SETS`, keyed by protocol and port.
#[btf_map]
pub static PORT_SETS: ArrayOfMaps<
    btf_maps::LpmTrie<PortData, RuleBits, { MAX_SET_PREFIXES as usize }>,
    { RULE_SET_SLOTS as usize },
> = ArrayOfMaps::new();

#[map]
pub static DEVICE_STATS: PerCpuHashMap<StatKey, Counter> =
    PerCpuHashMap::with_max_entries(MAX_DEVICE_STATS, BPF_F_NO_PREALLOC);

/// Frames each device rule let through (per CPU).
#[map]
pub static RULE_HITS: PerCpuHashMap<filter_common::RuleHitKey, u64> =
    PerCpuHashMap::with_max_entries(filter_common::MAX_RULE_HITS, BPF_F_NO_PREALLOC);

/// Drop events for the daemon (rate-limited per CPU).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(filter_common::EVENTS_RING_BYTES, 0);

/// `filter_common::event_stats`: events sent, suppressed, lost.
#[map]
pub static EVENT_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(filter_common::event_stats::LEN, 0);

/// The per-CPU rate limiter's window.
#[map]
pub static EVENT_RATE: PerCpuArray<filter_common::RateWindow> = PerCpuArray::with_max_entries(1, 0);

/// Device name -> counter slot, kept by the controller with the pins.
#[map]
pub static DEVICE_SLOTS: HashMap<filter_common::DeviceName, u32> =
    HashMap::with_max_entries(filter_common::MAX_DEVICE_SLOTS, BPF_F_NO_PREALLOC);

/// Controller bookkeeping that lives with the pins (`filter_common::meta`).
#[map]
pub static META: Array<u64> = Array::with_max_entries(filter_common::meta::LEN, 0);

/// `[verdict * NUM_REASONS + reason]`: every frame, counted once.
#[map]
pub static GLOBAL_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(GLOBAL_STATS_LEN, 0);
