//! vlanguard's XDP program: decides every frame to and from device VLANs
//! against the compiled allowlist (ARCHITECTURE §3) and counts each decision.
#![no_std]
#![no_main]
// One atomic add (see `rate::atomic_add`); the BPF target's core has no
// atomic read-modify-write types.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, for the BPF atomic add")]

// The panic handler.
use filter_ebpf as _;

mod actions;
mod clock;
mod debug;
mod decide;
mod devices;
mod events;
mod flow;
mod frags;
mod frame;
mod identity;
mod maps;
mod parse;
mod ptr;
mod rate;
mod rules;
mod scratch;
mod stats;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::{MAX_HEADER_START, Reason, Verdict, settings};

use crate::frame::Frame;

/// The filter, in the driver, before the kernel allocates anything. Takes
/// multi-buffer (jumbo) frames: every header it reads lies in the first
/// buffer.
#[xdp(frags)]
pub fn vlanguard(ctx: XdpContext) -> u32 {
    if filter(&ctx).passes() { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
}

/// The same filter at TC ingress, for ports whose NIC takes the 802.1Q tag
/// out of the frame (VLAN offload): the kernel hands the tag over with the
/// packet there (README "VLAN offload").
#[classifier]
pub fn vlanguard_tc(ctx: TcContext) -> i32 {
    // The headers must be in the linear part the program can read; the
    // kernel pulls them when they are not (rare: GRO and some drivers).
    let want = ctx.len().min(HEADROOM);
    // data_end >= data always; wrapping keeps a panic path out of debug builds.
    if ctx.data_end().wrapping_sub(ctx.data()) < want as usize {
        let _ = ctx.pull_data(want);
    }
    // A pass is "next": the interface's other TC programs and filters
    // still run (TC_ACT_OK would end TC there and skip them).
    if filter(&ctx).passes() { TC_ACT_UNSPEC } else { TC_ACT_SHOT }
}

/// The most of a frame the parser reads.
const HEADROOM: u32 = MAX_HEADER_START as u32 + 64;

/// Decides a frame and counts the decision: the whole program, for either
/// entry point.
#[inline(always)]
fn filter(ctx: &impl Frame) -> Verdict {
    let len = ctx.len();
    let Some(pkt) = parse::slot(len) else { return Verdict::Pass };
    let active = decide::active();
    // One exit: every frame is decided and counted exactly once.
    let (reason, devices) = if parse::parse(ctx, pkt).is_ok() {
        if pkt.frag == parse::frag::LATER {
            frags::recall(pkt);
        }
        decide::decide(ctx, pkt, &active)
    } else {
        (Reason::Malformed, decide::Involved::NONE)
    };
    let (reason, devices) = decide::settle(reason, devices);
    if pkt.frag == parse::frag::FIRST && matches!(reason, Reason::Allowed | Reason::Established) {
        frags::remember(pkt);
    }
    let mut verdict = reason.verdict();
    if verdict == Verdict::Drop
        && !reason.is_operator_action()
        && devices.monitored(active.settings)
    {
        verdict = Verdict::WouldDrop;
    }
    stats::count(verdict, reason, &devices, u64::from(len));
    identity::observe(ctx, pkt, active.generation);
    let ifindex = ctx.arrived_on();
    if verdict != Verdict::Pass {
        events::emit(pkt, reason, verdict, &devices, ifindex, active.settings.events_per_sec);
    }
    if active.settings.flags & settings::DEBUG_LOG != 0 {
        ctx.log(pkt, reason, verdict, ifindex);
    }
    verdict
}

/// The debug log, tail-called by `vlanguard` (see `debug`). Takes
/// multi-buffer frames as the filter does: a tail call needs both alike.
#[xdp(frags)]
pub fn vlanguard_log(_ctx: XdpContext) -> u32 {
    debug::log_staged()
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
