//! The debug log (`[settings] debug_log = true`): one aya-log line per
//! decided frame, for troubleshooting a policy on a quiet link. Off by
//! default; when off the hot path pays one bit test.
//!
//! The lines are written by a second program, `vlanguard_log`, which the
//! filter tail-calls after deciding. It runs on a fresh 512-byte stack (the
//! filter's own frame leaves too little for aya-log's record builder) and is
//! verified on its own, so logging adds nothing to the verifier's work on
//! the filter: called in place, the logging code was re-verified for every
//! path through the parser, eight times the instructions.

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use filter_common::{Reason, Verdict};

use crate::parse::{Kind, Packet};

/// What one log line is made from, handed from the filter to the logger.
pub struct Staged {
    pkt: Packet,
    #[cfg_attr(debug_assertions, expect(dead_code, reason = "read by the log lines only"))]
    reason: Reason,
    verdict: Verdict,
    #[cfg_attr(debug_assertions, expect(dead_code, reason = "read by the log lines only"))]
    ifindex: u32,
}

/// One slot per CPU. XDP runs with preemption off, so the slot belongs to
/// this frame from the filter's write to the logger's read.
#[map]
static DEBUG_STAGE: PerCpuArray<Staged> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the logger (filled by the controller).
#[map]
static DEBUG_PROGS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Stages the frame and tail-calls the logger, which returns the verdict
/// for the filter. Returns only if the logger is not installed; the caller
/// then returns the verdict itself.
#[inline(always)]
pub fn log_decision(
    ctx: &XdpContext,
    pkt: &Packet,
    reason: Reason,
    verdict: Verdict,
    ifindex: u32,
) {
    let Some(slot) = DEBUG_STAGE.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot, see DEBUG_STAGE; `write` because the slot
    // starts zeroed, which is no valid `Staged`.
    unsafe { slot.write(Staged { pkt: *pkt, reason, verdict, ifindex }) };
    // SAFETY: on success control never comes back here; the logger reads
    // only DEBUG_STAGE and returns the staged reason's verdict.
    unsafe { DEBUG_PROGS.tail_call(ctx, 0) };
}

/// The logger program's body: log the staged frame, return its verdict.
#[inline(always)]
pub fn log_staged() -> u32 {
    let Some(s) = staged() else { return xdp_action::XDP_PASS };
    match s.pkt.kind {
        Kind::Ip if s.pkt.src.is_v4_mapped() => lines::log_v4(),
        Kind::Ip => lines::log_v6(),
        Kind::Arp => lines::log_arp(),
        Kind::Other => lines::log_other(),
    }
    if s.verdict.passes() { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
}

/// This CPU's staged frame, written by `log_decision` just before.
#[inline(always)]
fn staged() -> Option<&'static Staged> {
    // SAFETY: see DEBUG_STAGE; only this frame's programs touch the slot,
    // and the filter wrote a valid `Staged` before tail-calling.
    DEBUG_STAGE.get_ptr(0).map(|p| unsafe { &*p })
}

// Each line is its own out-of-line function, so only one record builder is
// on the stack at a time. aya-log's macros want a context expression but do
// not use it; `()` is it.
//
// The `bpf-debug` build (overflow checks on, for the verifier tests) leaves
// the record building out: aya-log's macro sums field lengths with `+=`,
// which there becomes a call to the overflow panic that the verifier
// refuses. Staging, the tail call and the returned verdict stay in, and are
// what those tests check.
#[cfg(not(debug_assertions))]
mod lines {
    use aya_log_ebpf::info;
    use filter_common::{Reason, Verdict};

    use super::{Staged, staged};

    #[inline(never)]
    pub fn log_v4() {
        let Some(Staged { pkt, reason, verdict, ifindex }) = staged() else { return };
        info!(
            (),
            "{}: if {} vlan {} proto {} {:i}:{} -> {:i}:{}",
            label(*reason, *verdict),
            *ifindex,
            pkt.vlan,
            pkt.proto,
            v4(&pkt.src),
            pkt.sport,
            v4(&pkt.dst),
            pkt.port
        );
    }

    #[inline(never)]
    pub fn log_v6() {
        let Some(Staged { pkt, reason, verdict, ifindex }) = staged() else { return };
        info!(
            (),
            "{}: if {} vlan {} proto {} [{:i}]:{} -> [{:i}]:{}",
            label(*reason, *verdict),
            *ifindex,
            pkt.vlan,
            pkt.proto,
            pkt.src.0,
            pkt.sport,
            pkt.dst.0,
            pkt.port
        );
    }

    #[inline(never)]
    pub fn log_arp() {
        let Some(Staged { pkt, reason, verdict, ifindex }) = staged() else { return };
        info!(
            (),
            "{}: if {} vlan {} arp {:i} -> {:i}",
            label(*reason, *verdict),
            *ifindex,
            pkt.vlan,
            v4(&pkt.src),
            v4(&pkt.dst)
        );
    }

    #[inline(never)]
    pub fn log_other() {
        let Some(Staged { pkt, reason, verdict, ifindex }) = staged() else { return };
        info!((), "{}: if {} vlan {}", label(*reason, *verdict), *ifindex, pkt.vlan);
    }

    /// Verdict and reason as one argument (each argument costs the record
    /// builder stack).
    #[inline(always)]
    fn label(reason: Reason, verdict: Verdict) -> &'static str {
        if verdict == Verdict::WouldDrop {
            return match reason {
                Reason::NotAllowed => "would-drop not-allowed",
                Reason::UnknownDevice => "would-drop unknown-device",
                Reason::SpoofedMac => "would-drop spoofed-mac",
                Reason::WrongVlan => "would-drop wrong-vlan",
                Reason::RateLimited => "would-drop rate-limited",
                Reason::Learning => "would-drop learning",
                _ => "would-drop malformed",
            };
        }
        match reason {
            Reason::Unmatched => "pass unmatched",
            Reason::Allowed => "pass allowed",
            Reason::Infra => "pass infra",
            Reason::NotAllowed => "drop not-allowed",
            Reason::UnknownDevice => "drop unknown-device",
            Reason::SpoofedMac => "drop spoofed-mac",
            Reason::WrongVlan => "drop wrong-vlan",
            Reason::Malformed => "drop malformed",
            Reason::Established => "pass established",
            Reason::Blocked => "drop blocked",
            Reason::Quarantined => "drop quarantined",
            Reason::RateLimited => "drop rate-limited",
            Reason::Learning => "drop learning",
        }
    }

    #[inline(always)]
    fn v4(a: &filter_common::Addr) -> [u8; 4] {
        a.v4().to_be_bytes()
    }
}

#[cfg(debug_assertions)]
mod lines {
    pub fn log_v4() {}
    pub fn log_v6() {}
    pub fn log_arp() {}
    pub fn log_other() {}
}
