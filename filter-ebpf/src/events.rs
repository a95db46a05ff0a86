//! Drop events to user space, at most `events_per_sec` per CPU per second;
//! the rest are counted as suppressed, so a flood of dropped frames costs
//! user space nothing.

use aya_ebpf::maps::PerCpuArray;
use filter_common::{DropEvent, NS_PER_SEC, RateWindow, Reason, Verdict, event_stats};

use crate::{
    clock,
    decide::Involved,
    maps::{EVENT_RATE, EVENT_STATS, EVENTS},
    parse::Packet,
    stats,
};

/// 0 in every build but the upgrade test's second one
/// (`VLANGUARD_EBPF_VARIANT=1`), which must differ in its instructions and
/// nothing else: it marks the events' padding, which user space ignores.
const VARIANT: u8 = match option_env!("VLANGUARD_EBPF_VARIANT") {
    Some(v) if !v.is_empty() => v.as_bytes()[0].wrapping_sub(b'0'),
    _ => 0,
};

#[inline(always)]
pub fn emit(
    pkt: &Packet,
    reason: Reason,
    verdict: Verdict,
    devices: &Involved,
    ifindex: u32,
    rate: u32,
) {
    // The coarse clock: it runs for every denied frame of a flood, and the
    // precise one costs a TSC read each time (measured at ~10 % of the drop
    // path); read through jiffies, a helper call once per tick (`clock`).
    let now = clock::coarse_ns();
    if !within_rate(&EVENT_RATE, now, rate) {
        bump(event_stats::SUPPRESSED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        bump(event_stats::LOST);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, 8-byte aligned ring buffer slot of
    // size_of::<DropEvent>() bytes; every field is written before submit.
    unsafe {
        (*e).ktime_ns = now;
        (*e).src = pkt.src.0;
        (*e).dst = pkt.dst.0;
        (*e).src_slot = devices.src_slot;
        (*e).dst_slot = devices.dst_slot;
        (*e).ifindex = ifindex;
        (*e).sport = pkt.sport;
        (*e).dport = pkt.port;
        (*e).vlan = pkt.vlan;
        (*e).proto = pkt.proto;
        (*e).reason = reason as u8;
        (*e).verdict = verdict as u8;
        (*e).src_mac = pkt.src_mac;
        (*e)._pad = [VARIANT, 0, 0, 0, 0];
    }
    entry.submit(0);
    bump(event_stats::SENT);
}

/// Whether one more report fits this CPU's budget of `rate` a second,
/// counted in `window` (a window of one second from its first report, so
/// no division per frame).
#[inline(always)]
pub fn within_rate(window: &PerCpuArray<RateWindow>, now: u64, rate: u32) -> bool {
    let Some(w) = window.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's slot of a per-CPU array; XDP runs with preemption
    // off, so nothing else touches it meanwhile.
    unsafe {
        if now.wrapping_sub((*w).start_ns) >= NS_PER_SEC {
            (*w).start_ns = now;
            (*w).sent = 0;
        }
        if (*w).sent < rate {
            (*w).sent += 1;
            true
        } else {
            false
        }
    }
}

#[inline(always)]
fn bump(index: u32) {
    stats::bump(&EVENT_STATS, index);
}
