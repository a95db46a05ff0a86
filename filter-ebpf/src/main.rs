//! vlanguard's XDP program: decides every frame to and from device VLANs
//! against the compiled allowlist (DESIGN §3) and counts each decision.
#![no_std]
#![no_main]
// One atomic add (see `rate::atomic_add`); the BPF target's core has no
// atomic read-modify-write types.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, for the BPF atomic add")]

// The panic handler.
use filter_ebpf as _;

mod actions;
mod debug;
mod decide;
mod devices;
mod events;
mod flow;
mod frags;
mod maps;
mod parse;
mod ptr;
mod rate;
mod rules;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use filter_common::{Reason, Verdict, settings};

#[xdp]
pub fn vlanguard(ctx: XdpContext) -> u32 {
    // data_end >= data always; wrapping keeps an overflow check (and a
    // panic path the verifier refuses) out of debug builds.
    let len = ctx.data_end().wrapping_sub(ctx.data()) as u32;
    let Some(pkt) = parse::slot(len) else { return xdp_action::XDP_PASS };
    let active = decide::active();
    // One exit: every frame is decided and counted exactly once.
    let (reason, devices) = if parse::parse(&ctx, pkt).is_ok() {
        if pkt.frag == parse::frag::LATER {
            frags::recall(pkt);
        }
        decide::decide(&ctx, pkt, &active)
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
    let ifindex = ctx.ingress_ifindex() as u32;
    if verdict != Verdict::Pass {
        events::emit(pkt, reason, verdict, &devices, ifindex, active.settings.events_per_sec);
    }
    if active.settings.flags & settings::DEBUG_LOG != 0 {
        debug::log_decision(&ctx, pkt, reason, verdict, ifindex);
    }
    action(verdict)
}

#[inline(always)]
fn action(verdict: Verdict) -> u32 {
    if verdict.passes() { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
}

/// The debug log, tail-called by `vlanguard` (see `debug`).
#[xdp]
pub fn vlanguard_log(_ctx: XdpContext) -> u32 {
    debug::log_staged()
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
