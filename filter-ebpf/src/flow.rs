//! The flow table (ARCHITECTURE §3 step 3): an allowed packet that opens a
//! connection (TCP SYN, UDP, ICMP echo request) records it; later packets
//! of it, replies included, pass without asking the rules, until the flow
//! times out, closes, or a policy change takes away the rule that opened it.
//!
//! A cache in ARRAYs shared by all CPUs (`filter_common::FlowEntry`, see
//! README "Flows"): a flow's key, in canonical order so that
//! both directions find it, hashes with a per-filter seed to one bucket of
//! `FLOW_WAYS` entries whose tags sit in one line of `FLOW_TAGS`. Finding a
//! flow is that line and, on a tag hit, the entry's line; recording one is
//! plain stores. A full bucket gives up the entry closest to expiring.
//!
//! Other CPUs read entries while one is written: a writer clears the
//! entry's tag first and sets it last, and a reader checks the tag before
//! and after comparing the key (a sequence lock; all accesses volatile, so
//! the compiler keeps their order, and x86-64 keeps stores and loads in
//! order).

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use filter_common::{
    FLOW_BUCKETS, FLOW_WAYS, FlowEntry, FlowKey, FlowTags, FlowTimeout, FlowValue, MAX_FLOWS,
    NS_PER_SEC, Settings, flow_bucket, flow_hash, flow_state, flow_stats, flow_tag, icmp, ipproto,
    tag_lanes, tcp_flags,
};

use crate::{
    clock,
    parse::Packet,
    scratch::{self, Slot},
    stats,
};

/// `bucket * FLOW_WAYS + way`: the flows.
#[map]
static FLOW_CACHE: Array<FlowEntry> = Array::with_max_entries(MAX_FLOWS, 0);

/// `[bucket]`: the tags of the bucket's ways (0: free).
#[map]
static FLOW_TAGS: Array<FlowTags> = Array::with_max_entries(FLOW_BUCKETS, 0);

/// `[0]`: the hash seed, set once by user space when the maps are new.
#[map]
static FLOW_SEED: Array<u64> = Array::with_max_entries(1, 0);

/// `filter_common::flow_stats` (per CPU).
#[map]
static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(flow_stats::LEN, 0);

/// No entry holds the flow.
const NO_ENTRY: u32 = u32::MAX;

/// `vlanguard_flow_place`'s answer: the entry's index in the low bits,
/// what it held in the high ones.
const PLACE_INDEX: u32 = (1 << 28) - 1;
const PLACE_FREE: u32 = 0;
const PLACE_SAME: u32 = 1;
const PLACE_EXPIRED: u32 = 2;
const PLACE_EVICTED: u32 = 3;

/// A frame that can belong to a flow: its key, whether its source is the
/// key's `lo` end, and the key's hash.
pub struct Tracked {
    key: &'static FlowKey,
    src_lo: bool,
    hash: u64,
}

/// The frame's flow key, for TCP, UDP and ICMP echo with a readable L4
/// header (not non-first fragments); `None` for everything else.
#[inline(always)]
pub fn key(pkt: &Packet) -> Option<Tracked> {
    let (sport, dport) = match pkt.proto {
        _ if !pkt.l4_known => return None,
        ipproto::TCP | ipproto::UDP => (pkt.sport, pkt.port),
        // Echo request and reply share the key: ports 0.
        _ if is_echo(pkt, true) || is_echo(pkt, false) => (0, 0),
        _ => return None,
    };
    // The key lives in the CPU's scratch space rather than on the stack,
    // which the parse and the rule lookups already fill.
    let slot = scratch::flow_key()?;
    // SAFETY: this CPU's scratch slot (`scratch::Slot`), plain data; the
    // flow functions below read it only through this `Tracked` or a
    // `Slot`, never through another reference.
    let key = unsafe { &mut *slot.ptr() };
    let src_lo = key.set(&pkt.src, sport, &pkt.dst, dport, pkt.proto);
    let seed = match FLOW_SEED.get(0) {
        Some(s) => *s,
        None => 0,
    };
    Some(Tracked { key, src_lo, hash: flow_hash(key, seed) })
}

/// What the flow table says about a frame.
pub enum Lookup {
    /// No live flow that this frame continues.
    Miss,
    /// A live flow this frame continues, opened under the policy in force
    /// (`from_opener`: sent by the end that opened it; `now`: the clock as
    /// read for it): pass.
    Current { flow: *mut FlowValue, from_opener: bool, now: u64 },
    /// As `Current`, but opened under an earlier policy: pass only if the
    /// rules still allow the opening packet (destination port `open_port`,
    /// sent by the source of this frame if `from_opener`).
    Stale { flow: *mut FlowValue, at: u32, from_opener: bool, open_port: u16, now: u64 },
}

/// The flows' clock: CLOCK_MONOTONIC at tick resolution (a few ms). The
/// precise clocks read the TSC, which costs ~40 ns a frame under KVM
/// (ARCHITECTURE §3); timeouts of seconds need no better. Fragments'
/// memory uses it too.
#[inline(always)]
pub fn now() -> u64 {
    clock::coarse_ns()
}

/// The clock is read only when there is a flow: a miss needs none.
#[inline(always)]
pub fn lookup(t: &Tracked, pkt: &Packet, settings: &Settings) -> Lookup {
    // A bare SYN answers nothing: the rules decide it (see `decide`).
    let at = if is_syn(pkt) || !may_hold(t.hash) { NO_ENTRY } else { vlanguard_flow_find(t.hash) };
    let Some(entry) = FLOW_CACHE.get_ptr_mut(at) else { return Lookup::Miss };
    let now = now();
    // SAFETY: an entry of the cache, which lives as long as the program;
    // other CPUs may update its value concurrently, which at worst mixes
    // two recent timestamps or states of the same flow.
    let (flow, v) = unsafe { (&raw mut (*entry).value, (*entry).value) };
    if now > v.expires_ns {
        remove(at, flow_tag(t.hash));
        bump(flow_stats::EXPIRED);
        return Lookup::Miss;
    }
    let from_opener = (v.lo_opened != 0) == t.src_lo;
    if !continues(pkt, from_opener) {
        return Lookup::Miss;
    }
    if v.epoch == settings.epoch {
        Lookup::Current { flow, from_opener, now }
    } else {
        Lookup::Stale { flow, at, from_opener, open_port: v.open_port, now }
    }
}

/// Whether any way of the flow's bucket holds its tag: the bucket's tags
/// compared two per word without a branch (`filter_common::tag_lanes`), so
/// that a miss,
/// which is what most lookups are (every frame the rules deny), needs no
/// call to `vlanguard_flow_find`: a BPF function call and its return cost
/// ~8 % of a dropped frame where returns go through the kernel's return
/// thunk, and the search itself inlined took the verifier 280,000 more
/// instructions.
#[inline(always)]
pub fn may_hold(hash: u64) -> bool {
    let Some(tags) = FLOW_TAGS.get_ptr(flow_bucket(hash)) else { return false };
    let tag = flow_tag(hash);
    let words = tags.cast::<u64>();
    let mut found = 0u64;
    let mut i = 0;
    while i < (FLOW_WAYS / 2) as usize {
        // SAFETY: a live, 8-aligned entry of FLOW_TAGS (`FlowTags`), read
        // as FLOW_WAYS / 2 words; `i` < FLOW_WAYS / 2.
        found |= tag_lanes(unsafe { words.add(i).read_volatile() }, tag);
        i += 1;
    }
    found != 0
}

/// The entry holding the flow of this CPU's flow key (hash `hash`), or
/// [`NO_ENTRY`]. A global BPF function (exported, see build.rs): the
/// verifier checks its loop over the ways once.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn vlanguard_flow_find(hash: u64) -> u32 {
    let Some(key) = scratch::flow_key() else { return NO_ENTRY };
    let bucket = flow_bucket(hash);
    let tag = flow_tag(hash);
    let Some(tags) = FLOW_TAGS.get_ptr(bucket) else { return NO_ENTRY };
    // Two ways' tags per load: most lookups (every frame the rules deny)
    // miss in every way.
    let pairs = tags.cast::<u64>();
    let mut pair = 0;
    while pair < FLOW_WAYS / 2 {
        // SAFETY: a live, 8-aligned entry of FLOW_TAGS (`FlowTags`), read
        // as FLOW_WAYS / 2 words; `pair` < FLOW_WAYS / 2.
        let two = unsafe { pairs.add(pair as usize).read_volatile() };
        // Little-endian: the lower half is the even way's tag. Wrapping
        // arithmetic: no overflow check (a panic path) in debug builds.
        let even = bucket.wrapping_mul(FLOW_WAYS).wrapping_add(pair.wrapping_mul(2));
        if two as u32 == tag && holds_at(even, key, tag) {
            return even;
        }
        if (two >> 32) as u32 == tag && holds_at(even.wrapping_add(1), key, tag) {
            return even.wrapping_add(1);
        }
        pair += 1;
    }
    NO_ENTRY
}

/// Whether cache entry `at` holds `key` (tag `tag`), checked as a
/// sequence-lock reader: the tag before and after the key, so a key
/// another CPU is writing meanwhile never matches.
#[inline(always)]
fn holds_at(at: u32, key: Slot<FlowKey>, tag: u32) -> bool {
    let Some(e) = FLOW_CACHE.get_ptr(at) else { return false };
    // SAFETY: `e` is a live cache entry and `key` this CPU's scratch slot
    // (`scratch::Slot`), both 8-aligned map values; FlowKey is five words
    // (`FlowKey::words`).
    unsafe {
        if (&raw const (*e).tag).read_volatile() != tag {
            return false;
        }
        let (a, b) = ((&raw const (*e).key).cast::<u64>(), key.ptr().cast::<u64>());
        let mut same = true;
        let mut i = 0;
        while i < 5 {
            same &= a.add(i).read_volatile() == b.add(i).read_volatile();
            i += 1;
        }
        same && (&raw const (*e).tag).read_volatile() == tag
    }
}

/// Frees entry `at` if it still holds a flow of tag `tag`.
#[inline(always)]
fn remove(at: u32, tag: u32) {
    let (Some(e), Some(tags)) = (FLOW_CACHE.get_ptr_mut(at), FLOW_TAGS.get_ptr_mut(at / FLOW_WAYS))
    else {
        return;
    };
    let way = (at % FLOW_WAYS) as usize;
    // SAFETY: live entries of the cache; the bound of `way` is FLOW_WAYS.
    unsafe {
        if (&raw const (*e).tag).read_volatile() == tag {
            (&raw mut (*tags).tags[way]).write_volatile(0);
            (&raw mut (*e).tag).write_volatile(0);
        }
    }
}

/// Whether `pkt` is part of the flow. A bare SYN, which would start a new
/// connection on the same addresses and ports, never gets here (the rules
/// decide it, see `decide`).
#[inline(always)]
fn continues(pkt: &Packet, from_opener: bool) -> bool {
    match pkt.proto {
        ipproto::TCP | ipproto::UDP => true,
        // Requests from the opener, replies from the other end.
        _ => is_echo(pkt, from_opener),
    }
}

/// Refreshes a flow the frame continues: TCP state, timeout, and the
/// epoch (the rules allowed it under the policy in force). Stores only what
/// changed: the clock moves once per tick, so most frames of a busy flow
/// change nothing, and a store would take the entry's line from the other
/// CPUs that read it (replies arrive on other CPUs than their openers).
///
/// # Safety
/// `flow` must be the value of a flow cache entry, as `lookup` hands it out
/// for this frame.
#[inline(always)]
pub unsafe fn touch(
    flow: *mut FlowValue,
    pkt: &Packet,
    from_opener: bool,
    settings: &Settings,
    now: u64,
) {
    // SAFETY: `flow` points into the flow cache (the caller's promise);
    // plain loads and stores of whole fields, as in `lookup`.
    unsafe {
        let old = (*flow).state;
        let mut state = old;
        if pkt.proto == ipproto::TCP {
            if pkt.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
                state = flow_state::CLOSING;
            } else if !from_opener && state == flow_state::OPENING {
                state = flow_state::ESTABLISHED;
            }
        }
        let expires = now.saturating_add(timeout(settings, pkt.proto, state));
        if state != old {
            (*flow).state = state;
        }
        if (*flow).epoch != settings.epoch {
            (*flow).epoch = settings.epoch;
        }
        if (*flow).expires_ns != expires {
            (*flow).expires_ns = expires;
        }
    }
}

/// The flow in entry `at` of a frame the rules allowed is no longer
/// allowed: forget it.
#[inline(always)]
pub fn revoke(t: &Tracked, at: u32) {
    remove(at, flow_tag(t.hash));
    bump(flow_stats::REVOKED);
}

/// Records the flow an allowed frame opens, if it opens one.
#[inline(always)]
pub fn open(t: &Tracked, pkt: &Packet, settings: &Settings) {
    // A later fragment with its first fragment's ports continues what
    // that one opened; it opens nothing.
    if pkt.frag == crate::parse::frag::RECALLED {
        return;
    }
    let state = match pkt.proto {
        ipproto::TCP
            if pkt.tcp_flags
                & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN)
                == tcp_flags::SYN =>
        {
            flow_state::OPENING
        }
        ipproto::UDP => flow_state::ESTABLISHED,
        ipproto::ICMP | ipproto::ICMPV6 if is_echo(pkt, true) => flow_state::ESTABLISHED,
        _ => return,
    };
    let now = now();
    let value = FlowValue {
        expires_ns: now.saturating_add(timeout(settings, pkt.proto, state)),
        epoch: settings.epoch,
        open_port: pkt.port,
        lo_opened: u8::from(t.src_lo),
        state,
    };
    let placed = vlanguard_flow_place(t.hash, now);
    let at = placed & PLACE_INDEX;
    let way = (at % FLOW_WAYS) as usize;
    let (Some(e), Some(tags)) = (FLOW_CACHE.get_ptr_mut(at), FLOW_TAGS.get_ptr_mut(at / FLOW_WAYS))
    else {
        return;
    };
    let tag = flow_tag(t.hash);
    let mut expired_same = false;
    if placed >> 28 == PLACE_SAME {
        // SAFETY: a live entry of the cache; a value another CPU writes
        // meanwhile gives this frame an older or newer view of the flow.
        let (expires, state, lo) = unsafe {
            (
                (&raw const (*e).value.expires_ns).read_volatile(),
                (&raw const (*e).value.state).read_volatile(),
                (&raw const (*e).value.lo_opened).read_volatile(),
            )
        };
        let live = now <= expires;
        if live
            && pkt.proto == ipproto::TCP
            && state != flow_state::CLOSING
            && lo == u8::from(t.src_lo)
        {
            // A retransmitted SYN of the connection the flow holds: the
            // flow stays as it is (rewriting it would reset its state and
            // hide it from the other CPUs meanwhile).
            return;
        }
        expired_same = !live;
    }
    // SAFETY: live entries of the cache (`way` < FLOW_WAYS), and this
    // CPU's key slot, 8-aligned five words. The order is the writer's half
    // of the sequence lock (see the module's doc): tags cleared, key and
    // value written, tags set.
    unsafe {
        (&raw mut (*tags).tags[way]).write_volatile(0);
        (&raw mut (*e).tag).write_volatile(0);
        let (to, from) =
            ((&raw mut (*e).key).cast::<u64>(), (t.key as *const FlowKey).cast::<u64>());
        let mut i = 0;
        while i < 5 {
            to.add(i).write_volatile(from.add(i).read_volatile());
            i += 1;
        }
        (&raw mut (*e).value).write_volatile(value);
        (&raw mut (*e).tag).write_volatile(tag);
        (&raw mut (*tags).tags[way]).write_volatile(tag);
    }
    match placed >> 28 {
        // An entry this frame did not continue (a new connection on the
        // same ports after a close, or one past its timeout that no frame
        // had found yet): this one replaces it.
        PLACE_SAME => {
            if expired_same {
                bump(flow_stats::EXPIRED);
                bump(flow_stats::CREATED);
            }
        }
        PLACE_EXPIRED => {
            bump(flow_stats::EXPIRED);
            bump(flow_stats::CREATED);
        }
        PLACE_EVICTED => {
            bump(flow_stats::EVICTED);
            bump(flow_stats::CREATED);
        }
        _ => bump(flow_stats::CREATED),
    }
}

/// Where a new flow of this CPU's flow key (hash `hash`) goes, as
/// `index | what << 28`: the entry already holding the key
/// ([`PLACE_SAME`]), else a free one, else one past its timeout, else the
/// one closest to it (evicted). A global BPF function, as the find.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn vlanguard_flow_place(hash: u64, now: u64) -> u32 {
    let bucket = flow_bucket(hash);
    let tag = flow_tag(hash);
    let base = bucket * FLOW_WAYS;
    let (Some(key), Some(tags)) = (scratch::flow_key(), FLOW_TAGS.get_ptr(bucket)) else {
        return base;
    };
    // First the tags alone: the key's own entry, else a free way. Other
    // flows' entries are read only when the bucket is full: each is a
    // cache line of its own, cold for a new connection.
    let mut free = NO_ENTRY;
    let mut way = 0;
    while way < FLOW_WAYS {
        let at = base + way;
        // SAFETY: a live entry of FLOW_TAGS; `way` < FLOW_WAYS.
        let t = unsafe { (&raw const (*tags).tags[way as usize]).read_volatile() };
        if t == 0 {
            if free == NO_ENTRY {
                free = at;
            }
        } else if t == tag && holds_at(at, key, tag) {
            return at | PLACE_SAME << 28;
        }
        way += 1;
    }
    if free != NO_ENTRY {
        return free | PLACE_FREE << 28;
    }
    let mut soonest = base;
    let mut soonest_expiry = u64::MAX;
    let mut way = 0;
    while way < FLOW_WAYS {
        let at = base + way;
        if let Some(e) = FLOW_CACHE.get_ptr(at) {
            // SAFETY: a live entry; a value another CPU writes meanwhile
            // only makes the choice of the way less apt.
            let expires = unsafe { (&raw const (*e).value.expires_ns).read_volatile() };
            if expires < soonest_expiry {
                soonest_expiry = expires;
                soonest = at;
            }
        }
        way += 1;
    }
    if now > soonest_expiry { soonest | PLACE_EXPIRED << 28 } else { soonest | PLACE_EVICTED << 28 }
}

#[inline(always)]
fn timeout(settings: &Settings, proto: u8, state: u8) -> u64 {
    let which = match (proto, state) {
        (ipproto::TCP, flow_state::OPENING) => FlowTimeout::TcpOpening,
        (ipproto::TCP, flow_state::CLOSING) => FlowTimeout::TcpClosing,
        (ipproto::TCP, _) => FlowTimeout::TcpEstablished,
        (ipproto::UDP, _) => FlowTimeout::Udp,
        _ => FlowTimeout::Icmp,
    };
    let secs = match settings.flow_timeouts.get(which as usize) {
        Some(s) => *s,
        None => 0,
    };
    u64::from(secs) * NS_PER_SEC
}

/// A TCP segment opening a connection: SYN without ACK.
#[inline(always)]
pub fn is_syn(pkt: &Packet) -> bool {
    pkt.proto == ipproto::TCP
        && pkt.l4_known
        && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// Whether the rules decide the frame before the flow table is asked (see
/// `decide`): a TCP segment that neither opens nor closes a connection (no
/// SYN, FIN or RST; a later fragment with its first fragment's ports
/// carries no flags and counts as one) sent from a port not below its
/// destination port, as a client's segments to a server's port are. A
/// server's answers come from the lower port and ask the flow table first,
/// which passes them without a rule scan.
#[inline(always)]
pub fn rules_first(pkt: &Packet) -> bool {
    pkt.proto == ipproto::TCP
        && pkt.l4_known
        && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0
        && pkt.sport >= pkt.port
}

/// An ICMP or ICMPv6 echo request (`request`) or reply.
#[inline(always)]
fn is_echo(pkt: &Packet, request: bool) -> bool {
    let want = match (pkt.proto, request) {
        (ipproto::ICMP, true) => icmp::ECHO_REQUEST,
        (ipproto::ICMP, false) => icmp::ECHO_REPLY,
        (ipproto::ICMPV6, true) => icmp::V6_ECHO_REQUEST,
        (ipproto::ICMPV6, false) => icmp::V6_ECHO_REPLY,
        _ => return false,
    };
    pkt.l4_known && pkt.port == want
}

#[inline(always)]
fn bump(index: u32) {
    stats::bump(&FLOW_STATS, index);
}
