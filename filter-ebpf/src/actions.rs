//! Operators' actions in the fast path (ARCHITECTURE §3 step 2): the dynamic
//! blocklist (addresses and networks, each with an expiry) and quarantined
//! devices (cut off from all but the management networks). Both are checked
//! against the boot-time clock here, so an entry expires on time whether
//! or not a daemon runs. Neither map is per policy generation: an action
//! holds until it expires or is lifted, across policy changes.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_boot_ns,
    macros::map,
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
};
use filter_common::{
    Addr, BlockEntry, MAX_BLOCKS, MAX_DEVICE_SLOTS, MAX_MANAGEMENT_NETS, PEER_BITS,
    PROTECTED_KEY_BITS, PeerData, ProtectedKey, action_counts,
};

/// Blocked prefixes of v4-mapped addresses.
#[map]
static BLOCKS: LpmTrie<PeerData, BlockEntry> =
    LpmTrie::with_max_entries(MAX_BLOCKS, BPF_F_NO_PREALLOC);

/// Quarantined devices by counter slot.
#[map]
static QUARANTINE: HashMap<u32, BlockEntry> =
    HashMap::with_max_entries(MAX_DEVICE_SLOTS, BPF_F_NO_PREALLOC);

/// The management networks of each policy generation: what a quarantined
/// device may still reach.
#[map]
static MANAGEMENT: LpmTrie<ProtectedKey, u8> =
    LpmTrie::with_max_entries(MAX_MANAGEMENT_NETS, BPF_F_NO_PREALLOC);

/// `filter_common::action_counts`: entries in `BLOCKS` and in
/// `QUARANTINE`, kept by user space (expired entries count until it prunes
/// them). Zero skips the lookups, so
/// frames pay nothing while no action is in force.
#[map]
static ACTION_COUNTS: Array<u32> = Array::with_max_entries(action_counts::LEN, 0);

/// Boot time in ns, the clock user space sets expiries in
/// (`filter_user::actions::boot_ns`): entries also expire while the
/// machine is suspended. Read only while an action is in force.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
fn count(i: u32) -> u32 {
    match ACTION_COUNTS.get(i) {
        Some(n) => *n,
        None => 0,
    }
}

#[inline(always)]
pub fn any_blocks() -> bool {
    count(action_counts::BLOCKS) != 0
}

#[inline(always)]
pub fn any_quarantine() -> bool {
    count(action_counts::QUARANTINE) != 0
}

/// Whether `addr` lies in a blocked prefix whose entry has not expired.
#[inline(always)]
pub fn blocked(addr: &Addr, now: u64) -> bool {
    match BLOCKS.get(Key::new(PEER_BITS, addr.0)) {
        Some(e) => e.active(now),
        None => false,
    }
}

/// Whether the device with counter slot `slot` is quarantined now.
#[inline(always)]
pub fn quarantined(slot: u32, now: u64) -> bool {
    // SAFETY: BlockEntry is plain data copied field by field; a concurrent
    // update gives the old or the new entry's values.
    match unsafe { QUARANTINE.get(slot) } {
        Some(e) => e.active(now),
        None => false,
    }
}

/// Whether `addr` is in a management network of `generation`.
#[inline(always)]
pub fn management(generation: u32, addr: &Addr) -> bool {
    let key = Key::new(PROTECTED_KEY_BITS, ProtectedKey { generation, addr: addr.0 });
    MANAGEMENT.get(&key).is_some()
}
