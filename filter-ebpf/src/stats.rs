//! Per-CPU counters: one global entry per (verdict, reason) for every frame,
//! and per device one line by direction and verdict
//! (`filter_common::DeviceCounters`) for frames touching devices.

use aya_ebpf::bindings::BPF_NOEXIST;
use filter_common::{
    Counter, Direction, LINE_RULES, Reason, RuleHitKey, Verdict, global_stat_index,
};

use crate::{
    decide::{Involved, NO_SLOT},
    maps::{DEVICE_COUNTERS, GLOBAL_STATS, RULE_HIT_LINES, RULE_HITS},
};

#[inline(always)]
pub fn count(verdict: Verdict, reason: Reason, devices: &Involved, len: u64) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(global_stat_index(verdict, reason)) {
        // SAFETY: a per-CPU array slot; XDP runs with preemption off on this
        // CPU, so nothing else writes it concurrently.
        unsafe { add(c, len) };
    }
    if devices.src_slot != NO_SLOT {
        count_device(devices.src_slot, Direction::Out, verdict, len);
    }
    if devices.dst_slot != NO_SLOT {
        count_device(devices.dst_slot, Direction::In, verdict, len);
    }
    if devices.src_rule != NO_SLOT {
        count_rule(devices.src_slot, Direction::Out, devices.src_rule);
    }
    if devices.dst_rule != NO_SLOT {
        count_rule(devices.dst_slot, Direction::In, devices.dst_rule);
    }
}

/// The device's line for its first rules, the hash for the rest.
#[inline(always)]
fn count_rule(slot: u32, direction: Direction, rule: u32) {
    // Widened before the bound check, so that the check and the index are
    // one register: checked as 32 bits and widened again for the index, the
    // verifier would not see the bound on the index.
    let at = rule as usize;
    if at < LINE_RULES {
        let Some(line) = RULE_HIT_LINES.get_ptr_mut(slot) else { return };
        // `get` keeps the bounds checks the verifier needs (see
        // `count_device`).
        // SAFETY: this CPU's value of a per-CPU array slot, as above.
        let hits = unsafe { &mut (*line).hits };
        if let Some(c) = hits.get_mut(direction as usize).and_then(|d| d.get_mut(at)) {
            *c = c.wrapping_add(1);
        }
        return;
    }
    let key = RuleHitKey { slot, direction: direction as u8, rule: rule as u8, _pad: 0 };
    match RULE_HITS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU hash entry; XDP runs with
        // preemption off, so nothing else writes it concurrently.
        Some(c) => unsafe { *c = (*c).wrapping_add(1) },
        None => {
            if RULE_HITS.insert(key, 1, u64::from(BPF_NOEXIST)).is_err()
                && let Some(c) = RULE_HITS.get_ptr_mut(key)
            {
                // SAFETY: as above.
                unsafe { *c = (*c).wrapping_add(1) };
            }
        }
    }
}

#[inline(always)]
fn count_device(slot: u32, direction: Direction, verdict: Verdict, len: u64) {
    let Some(line) = DEVICE_COUNTERS.get_ptr_mut(slot) else { return };
    // Both indexes are enum discriminants, below the array lengths; `get`
    // keeps the bounds check in the code anyway, which the verifier needs.
    // SAFETY: this CPU's value of a per-CPU array slot, as above.
    if let Some(c) = unsafe { (*line).lines.get_mut(direction as usize) }
        .and_then(|l| l.get_mut(verdict as usize))
    {
        // SAFETY: as above.
        unsafe { add(c, len) };
    }
}

/// # Safety
/// `c` must point at a live per-CPU counter of this CPU.
#[inline(always)]
unsafe fn add(c: *mut Counter, len: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*c).packets = (*c).packets.wrapping_add(1);
        (*c).bytes = (*c).bytes.wrapping_add(len);
    }
}
