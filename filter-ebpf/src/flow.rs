//! The flow table (DESIGN §3 step 3): an allowed packet that opens a
//! connection (TCP SYN, UDP, ICMP echo request) records it; later packets
//! of it, replies included, pass without asking the rules, until the flow
//! times out, closes, or a policy change takes away the rule that opened it.
//!
//! One LRU hash keyed by the connection in canonical order, so both
//! directions find the entry with one lookup; a full table forgets the
//! least recently used flow.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use filter_common::{FlowKey, FlowTimeout, FlowValue, MAX_FLOWS, Settings, flow_state, flow_stats};

use crate::parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Packet};

#[map]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// `filter_common::flow_stats` (per CPU).
#[map]
static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(flow_stats::LEN, 0);

/// This frame's key. A per-CPU slot instead of the stack, which the parse
/// and the rule lookups already fill; XDP runs with preemption off, so the
/// slot is this frame's until the program returns.
#[map]
static FLOW_KEY: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const ICMP_ECHO_REQUEST: u16 = 8;
const ICMP_ECHO_REPLY: u16 = 0;
const ICMPV6_ECHO_REQUEST: u16 = 128;
const ICMPV6_ECHO_REPLY: u16 = 129;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A frame that can belong to a flow: its key, and whether its source is
/// the key's `lo` end.
pub struct Tracked {
    key: &'static FlowKey,
    src_lo: bool,
}

/// The frame's flow key, for TCP, UDP and ICMP echo with a readable L4
/// header (not non-first fragments); `None` for everything else.
#[inline(always)]
pub fn key(pkt: &Packet) -> Option<Tracked> {
    let (sport, dport) = match pkt.proto {
        _ if !pkt.l4_known => return None,
        IPPROTO_TCP | IPPROTO_UDP => (pkt.sport, pkt.port),
        // Echo request and reply share the key: ports 0.
        _ if is_echo(pkt, true) || is_echo(pkt, false) => (0, 0),
        _ => return None,
    };
    let slot = FLOW_KEY.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot (see FLOW_KEY), plain data.
    let key = unsafe { &mut *slot };
    let src_lo = key.set(&pkt.src, sport, &pkt.dst, dport, pkt.proto);
    Some(Tracked { key, src_lo })
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
    Stale { flow: *mut FlowValue, from_opener: bool, open_port: u16, now: u64 },
}

/// The flows' clock: CLOCK_MONOTONIC at tick resolution (a few ms). The
/// precise clocks read the TSC, which costs ~40 ns a frame under KVM
/// (perf/FASTPATH.md); timeouts of seconds need no better. Fragments'
/// memory uses it too.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The clock is read only when there is a flow: a miss needs none.
#[inline(always)]
pub fn lookup(t: &Tracked, pkt: &Packet, settings: &Settings) -> Lookup {
    let Some(flow) = FLOWS.get_ptr_mut(t.key) else { return Lookup::Miss };
    let now = now();
    // SAFETY: the entry stays valid for this run of the program (RCU);
    // other CPUs may update it concurrently, which at worst mixes two
    // recent timestamps or states of the same flow.
    let v = unsafe { *flow };
    if now > v.expires_ns {
        let _ = FLOWS.remove(t.key);
        bump(flow_stats::EXPIRED);
        return Lookup::Miss;
    }
    let from_opener = (v.lo_opened != 0) == t.src_lo;
    if !continues(&v, pkt, from_opener) {
        return Lookup::Miss;
    }
    if v.epoch == settings.epoch {
        Lookup::Current { flow, from_opener, now }
    } else {
        Lookup::Stale { flow, from_opener, open_port: v.open_port, now }
    }
}

/// Whether `pkt` is part of the flow rather than the start of a new
/// connection on the same addresses and ports.
#[inline(always)]
fn continues(v: &FlowValue, pkt: &Packet, from_opener: bool) -> bool {
    match pkt.proto {
        IPPROTO_TCP => {
            let bare_syn = pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
            // A bare SYN opens a connection: from the responder it is not a
            // reply, and after a close it is a new connection for the rules.
            !(bare_syn && (!from_opener || v.state == flow_state::CLOSING))
        }
        IPPROTO_UDP => true,
        // Requests from the opener, replies from the other end.
        _ => is_echo(pkt, from_opener),
    }
}

/// Refreshes a flow the frame continues: TCP state, timeout, and the
/// epoch (the rules allowed it under the policy in force).
#[inline(always)]
pub fn touch(flow: *mut FlowValue, pkt: &Packet, from_opener: bool, settings: &Settings, now: u64) {
    // SAFETY: as in `lookup`; plain stores of whole fields.
    unsafe {
        let mut state = (*flow).state;
        if pkt.proto == IPPROTO_TCP {
            if pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                state = flow_state::CLOSING;
            } else if !from_opener && state == flow_state::OPENING {
                state = flow_state::ESTABLISHED;
            }
        }
        (*flow).state = state;
        (*flow).epoch = settings.epoch;
        (*flow).expires_ns = now.saturating_add(timeout(settings, pkt.proto, state));
    }
}

/// The flow of a frame the rules allowed is no longer allowed: forget it.
#[inline(always)]
pub fn revoke(t: &Tracked) {
    let _ = FLOWS.remove(t.key);
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
        IPPROTO_TCP if pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN => {
            flow_state::OPENING
        }
        IPPROTO_UDP => flow_state::ESTABLISHED,
        IPPROTO_ICMP | IPPROTO_ICMPV6 if is_echo(pkt, true) => flow_state::ESTABLISHED,
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
    if FLOWS.insert(t.key, value, u64::from(BPF_NOEXIST)).is_ok() {
        bump(flow_stats::CREATED);
    } else {
        // An entry this frame did not continue (a new connection on the
        // same ports after a close): this one replaces it.
        let _ = FLOWS.insert(t.key, value, u64::from(BPF_ANY));
    }
}

#[inline(always)]
fn timeout(settings: &Settings, proto: u8, state: u8) -> u64 {
    let which = match (proto, state) {
        (IPPROTO_TCP, flow_state::OPENING) => FlowTimeout::TcpOpening,
        (IPPROTO_TCP, flow_state::CLOSING) => FlowTimeout::TcpClosing,
        (IPPROTO_TCP, _) => FlowTimeout::TcpEstablished,
        (IPPROTO_UDP, _) => FlowTimeout::Udp,
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
    pkt.proto == IPPROTO_TCP && pkt.l4_known && pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// An ICMP or ICMPv6 echo request (`request`) or reply.
#[inline(always)]
fn is_echo(pkt: &Packet, request: bool) -> bool {
    let want = match (pkt.proto, request) {
        (IPPROTO_ICMP, true) => ICMP_ECHO_REQUEST,
        (IPPROTO_ICMP, false) => ICMP_ECHO_REPLY,
        (IPPROTO_ICMPV6, true) => ICMPV6_ECHO_REQUEST,
        (IPPROTO_ICMPV6, false) => ICMPV6_ECHO_REPLY,
        _ => return false,
    };
    pkt.l4_known && pkt.port == want
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(c) = FLOW_STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's counter; XDP runs with preemption off.
        unsafe { *c = (*c).wrapping_add(1) };
    }
}
