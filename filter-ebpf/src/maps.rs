//! The program's maps. Types and names come from `filter-common`; user space
//! fills the policy maps and reads the stats maps.

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    btf_maps::{self, ArrayOfMaps},
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use filter_common::{
    COUNTER_SLOTS, Config, Counter, CounterLine, DeviceInfo, DeviceKey, GENERATIONS,
    GLOBAL_STATS_LEN, IfaceConf, MAX_DEVICE_ADDRS, MAX_DEVICE_LINES, MAX_IFACES, MAX_MAC_DEVICES,
    MAX_PEER_NETS, MAX_PROTECTED_NETS, MAX_RULE_ENTRIES, MacKey, PeerSetKey, ProtectedKey,
    ProtectedNet, RateWindow, Rule, SeenKey, V4_INDEX_ENTRIES, VLAN_IDS, identity,
};

/// `[0]`: the active policy generation (0 or 1). Flipping it is the atomic
/// policy switch.
#[map]
pub static GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// `[generation]`: the policy's settings and the VLANs' IPv4 subnets, what
/// every frame reads (one lookup, see `filter_common::Config`).
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(GENERATIONS, 0);

/// Keyed by ifindex: interfaces whose untagged frames belong to one VLAN.
#[map]
pub static IFACES: HashMap<u32, IfaceConf> = HashMap::with_max_entries(MAX_IFACES, 0);

/// `[generation * VLAN_IDS + vid]`: VLAN flags.
#[map]
pub static VLAN_FLAGS: Array<u32> = Array::with_max_entries(GENERATIONS * VLAN_IDS, 0);

/// Device addresses not found by direct index -> the device's line.
#[map]
pub static DEVICES: HashMap<DeviceKey, u32> =
    HashMap::with_max_entries(MAX_DEVICE_ADDRS, BPF_F_NO_PREALLOC);

/// Both generations' devices, `generation * MAX_DEVICE_LINES + line`.
#[map]
pub static DEVICE_LINES: Array<DeviceInfo> =
    Array::with_max_entries(GENERATIONS * MAX_DEVICE_LINES, 0);

/// Both generations' direct index of devices by IPv4 address within their
/// VLAN's subnet (`filter_common::v4net::INDEXED`): line + 1, 0 for none.
#[map]
pub static V4_INDEX: Array<u32> = Array::with_max_entries(GENERATIONS * V4_INDEX_ENTRIES, 0);

/// `[generation]`: the VLANs' IPv6 subnets (`filter_common::V6Table`).
#[map]
pub static V6_NETS: Array<filter_common::V6Table> = Array::with_max_entries(GENERATIONS, 0);

#[map]
pub static PROTECTED: LpmTrie<ProtectedKey, ProtectedNet> =
    LpmTrie::with_max_entries(MAX_PROTECTED_NETS, 0);

/// Every device's rules, both generations (`filter_common::Rule`): a
/// device's rules for one direction are consecutive entries, scanned in
/// order and matched by comparison. Devices with equal rule lists point at
/// the same entries. An ARRAY lookup is inlined by the verifier and costs
/// nothing beyond the cache line it reads.
#[map]
pub static RULES: Array<Rule> = Array::with_max_entries(GENERATIONS * MAX_RULE_ENTRIES, 0);

/// `[generation]`: one trie with the networks of every rule peer that has
/// more of them than are worth scanning, keyed by (set, address). User space
/// builds a new inner trie for each generation it writes and never changes
/// one in force; publishing it (a map-of-maps update) also waits out the
/// program runs that still read the old one.
#[btf_map]
pub static PEER_NETS: ArrayOfMaps<
    btf_maps::LpmTrie<PeerSetKey, u8, { MAX_PEER_NETS as usize }>,
    { GENERATIONS as usize },
> = ArrayOfMaps::new();

/// `[slot * VLANGUARD_CPUS + cpu]`: each device's counters and first rule
/// hits as CPU `cpu` counted them (`filter_common::CounterLine`). Sized by
/// user space at load, as `VLANGUARD_CPUS` is set; mmapable so that each
/// value starts on a cache line.
#[map]
pub static COUNTER_LINES: Array<CounterLine> =
    Array::with_max_entries(COUNTER_SLOTS, BPF_F_MMAPABLE);

/// The machine's possible CPUs, set at load (`filter_common::CPUS_GLOBAL`):
/// the stride of `COUNTER_LINES`.
#[unsafe(no_mangle)]
pub static VLANGUARD_CPUS: Global<u32> = Global::new(1);

/// Frames each later device rule let through (per CPU).
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

/// Devices declared by MAC without addresses, both generations: `MacKey`
/// -> the device's line. Asked only for a frame that would be dropped as
/// `unknown-device` (and only when `config::MAC_DEVICES` says there are
/// any), to drop it as `learning` instead and tell the daemon.
#[map]
pub static MAC_DEVICES: HashMap<MacKey, u32> =
    HashMap::with_max_entries(MAX_MAC_DEVICES, BPF_F_NO_PREALLOC);

/// Identity reports for the inventory (`identity`).
#[map]
pub static IDENTITY: RingBuf = RingBuf::with_byte_size(identity::RING_BYTES, 0);

/// Their per-CPU rate window.
#[map]
pub static IDENTITY_RATE: PerCpuArray<RateWindow> = PerCpuArray::with_max_entries(1, 0);

/// `identity::{SENT, SUPPRESSED, LOST, REPEATED}`.
#[map]
pub static IDENTITY_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(identity::STATS_LEN, 0);

/// (VLAN, MAC, address) -> when last reported (coarse ns).
#[map]
pub static IDENTITY_SEEN: LruHashMap<SeenKey, u64> =
    LruHashMap::with_max_entries(identity::SEEN_ENTRIES, 0);
