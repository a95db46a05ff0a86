//! A device's rules for one direction, matched by comparison (ARCHITECTURE §3
//! step 4). The rules are consecutive 32-byte entries of `RULES`, in the
//! order of the device's list; the first that matches gives the rule index
//! credited with the hit. A scan of a few entries costs about a nanosecond
//! each and touches one cache line per two rules (ARCHITECTURE §3), where
//! a trie walk per frame cost 12–26 ns and more cold lines. Only a rule
//! whose peer is many networks asks a trie, and only after its protocol and
//! ports matched.

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    Addr, GENERATION_MASK, MAX_RULE_ENTRIES, MAX_RULE_SCAN, PEER_SET_KEY_BITS, PeerSetKey, Rule,
    RuleRange, rule,
};

use crate::{
    maps::{PEER_NETS, RULES},
    scratch::{self, Slot},
};

/// No rule matched.
pub const NO_MATCH: u32 = u32::MAX;

/// What a device's rules are asked: the peer (the other end of the frame),
/// the protocol and the ports as the frame carries them.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub peer: &'a Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub l4_known: bool,
}

/// A [`Query`] as the scan reads it, staged in the CPU's scratch space
/// (`scratch`): the peer as two big-endian halves.
///
/// Why map memory and not the stack: the scan compares the query with
/// every rule, and on the stack the verifier would keep what each compare
/// taught it about the query's values, a different state for every way
/// through the rules before, and walk each of them. Read back from map
/// memory the values are plain unknowns every time, so the loop's states
/// meet (see `parse::slot`).
#[repr(C)]
pub struct QueryStage {
    peer_hi: u64,
    peer_lo: u64,
    sport: u16,
    dport: u16,
    proto: u8,
    l4_known: u8,
    /// The peer is an IPv4 address (v4-mapped).
    v4: u8,
    _pad: u8,
    /// The `PEER_NETS` key, written by a rule with a set when it gets that
    /// far (most scans never need it). In the slot rather than on the
    /// stack, where the scan has little room (a global function's frame
    /// adds to the program's).
    key: Key<PeerSetKey>,
    /// The scan's answer, read back so that every way out of the loop
    /// leaves the same state behind.
    found: u32,
    _pad2: u32,
}

/// The index of the first rule of `parts` (a device's rules for one
/// direction, of `generation`) that matches `q`, or [`NO_MATCH`].
#[inline(always)]
pub fn first_match(generation: u32, parts: &[RuleRange; 2], q: Query) -> u32 {
    let Some(stage) = scratch::query() else { return NO_MATCH };
    let slot = stage.ptr();
    let (peer_hi, peer_lo) = q.peer.halves();
    // SAFETY: this CPU's scratch slot (`scratch::Slot`).
    unsafe {
        // Field by field: the set key is left as it is (see `QueryStage::key`).
        (*slot).peer_hi = peer_hi;
        (*slot).peer_lo = peer_lo;
        (*slot).sport = q.sport;
        (*slot).dport = q.dport;
        (*slot).proto = q.proto;
        (*slot).l4_known = u8::from(q.l4_known);
        // ::ffff:0:0/96: high half zero, then 0x0000ffff.
        (*slot).v4 = u8::from(peer_hi == 0 && peer_lo >> 32 == 0xffff);
        (*slot).found = NO_MATCH;
    }
    let [profile, own] = parts;
    vlanguard_scan(generation, profile.first, profile.count, own.first, own.count)
}

/// The scan itself: a global BPF function (exported by the linker, see
/// build.rs), which the verifier checks once on its own, for any
/// arguments, instead of once for every state the decision reaches it in
/// (64 rules times each way there). Scans the profile's part, then the
/// device's own.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn vlanguard_scan(
    generation: u32,
    first: u32,
    count: u32,
    own_first: u32,
    own_count: u32,
) -> u32 {
    let Some(slot) = scratch::query() else { return NO_MATCH };
    let generation = generation & GENERATION_MASK;
    let _ = scan_part(slot, generation, first, count)
        || scan_part(slot, generation, own_first, own_count);
    // SAFETY: this CPU's slot; volatile, so the verifier sees a plain
    // unknown however the scan ended.
    unsafe { (&raw const (*slot.ptr()).found).read_volatile() }
}

/// Scans `count` entries from `first`; on a match, records its index in
/// the slot and says so.
#[inline(always)]
fn scan_part(slot: Slot<QueryStage>, generation: u32, first: u32, count: u32) -> bool {
    let base = (generation * MAX_RULE_ENTRIES).wrapping_add(first);
    // The loader never writes more; the bound is what the verifier sees.
    let count = if count > MAX_RULE_SCAN { MAX_RULE_SCAN } else { count };
    let mut i = 0;
    while i < count {
        if let Some(r) = RULES.get(base.wrapping_add(i))
            && matches(generation, r, slot)
        {
            // SAFETY: this CPU's scratch slot (`scratch::Slot`).
            unsafe { (*slot.ptr()).found = u32::from(r.index) };
            return true;
        }
        i += 1;
    }
    false
}

/// Reads one field of the staged query from map memory, afresh.
macro_rules! staged {
    ($q:expr, $field:ident) => {
        // SAFETY: `$q` is this CPU's scratch slot (`scratch::Slot`);
        // volatile, so the value is loaded here and not carried from an
        // earlier rule.
        unsafe { (&raw const (*$q.ptr()).$field).read_volatile() }
    };
}

#[inline(always)]
fn matches(generation: u32, r: &Rule, q: Slot<QueryStage>) -> bool {
    if r.flags & rule::ANY_PROTO == 0 && r.proto != staged!(q, proto) {
        return false;
    }
    if r.flags & rule::L4 != 0 {
        let (dport, sport) = (staged!(q, dport), staged!(q, sport));
        if staged!(q, l4_known) == 0
            || dport < r.port_lo
            || dport > r.port_hi
            || sport < r.sport_lo
            || sport > r.sport_hi
        {
            return false;
        }
    }
    if r.flags & rule::PEER_SET != 0 {
        return in_set(generation, r.set, q);
    }
    if r.flags & rule::NOT_V4 != 0 && staged!(q, v4) != 0 {
        return false;
    }
    let (mask_hi, mask_lo) = masks(r.peer_len);
    staged!(q, peer_hi) & mask_hi == r.peer_hi && staged!(q, peer_lo) & mask_lo == r.peer_lo
}

/// The masks of a prefix of `len` bits over the two halves of an address.
/// `wrapping_shl` takes the shift modulo 64; every shift here is 1..=63.
#[inline(always)]
fn masks(len: u8) -> (u64, u64) {
    let len = u32::from(len);
    let hi = if len == 0 {
        0
    } else if len >= 64 {
        u64::MAX
    } else {
        u64::MAX.wrapping_shl(64 - len)
    };
    let lo = if len <= 64 {
        0
    } else if len >= 128 {
        u64::MAX
    } else {
        u64::MAX.wrapping_shl(128 - len)
    };
    (hi, lo)
}

/// Whether the query's peer is in one of the networks of peer set `set`.
#[inline(always)]
fn in_set(generation: u32, set: u32, q: Slot<QueryStage>) -> bool {
    let (hi, lo) = (staged!(q, peer_hi), staged!(q, peer_lo));
    let [a0, a1, a2, a3, a4, a5, a6, a7] = hi.to_be_bytes();
    let [b0, b1, b2, b3, b4, b5, b6, b7] = lo.to_be_bytes();
    let addr = [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7];
    // SAFETY: `q` is this CPU's scratch slot (`scratch::Slot`).
    let key = unsafe {
        let q = q.ptr();
        (*q).key = Key::new(PEER_SET_KEY_BITS, PeerSetKey { set, addr });
        &(*q).key
    };
    PEER_NETS.get_value_ptr_mut(generation, key).is_some()
}
