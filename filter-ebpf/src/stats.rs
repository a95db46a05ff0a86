//! Per-CPU counters: one global entry per (verdict, reason) for every frame,
//! and per device, direction, verdict and reason for frames touching devices.

use aya_ebpf::bindings::BPF_NOEXIST;
use filter_common::{Counter, Direction, Reason, RuleHitKey, StatKey, Verdict, global_stat_index};

use crate::{
    decide::{Involved, NO_SLOT},
    maps::{DEVICE_STATS, GLOBAL_STATS, RULE_HITS},
};

#[inline(always)]
pub fn count(verdict: Verdict, reason: Reason, devices: &Involved, len: u64) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(global_stat_index(verdict, reason)) {
        // SAFETY: a per-CPU array slot; XDP runs with preemption off on this
        // CPU, so nothing else writes it concurrently.
        unsafe { add(c, len) };
    }
    if devices.src_slot != NO_SLOT {
        count_device(devices.src_slot, Direction::Out, verdict, reason, len);
    }
    if devices.dst_slot != NO_SLOT {
        count_device(devices.dst_slot, Direction::In, verdict, reason, len);
    }
    if devices.src_rule != NO_SLOT {
        count_rule(devices.src_slot, Direction::Out, devices.src_rule);
    }
    if devices.dst_rule != NO_SLOT {
        count_rule(devices.dst_slot, Direction::In, devices.dst_rule);
    }
}

#[inline(always)]
fn count_rule(slot: u32, direction: Direction, rule: u32) {
    let key = RuleHitKey { slot, direction: direction as u8, rule: rule as u8, _pad: 0 };
    match RULE_HITS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU hash entry, as for devices.
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
fn count_device(slot: u32, direction: Direction, verdict: Verdict, reason: Reason, len: u64) {
    let key = StatKey {
        slot,
        direction: direction as u8,
        verdict: verdict as u8,
        reason: reason as u8,
        _pad: 0,
    };
    match DEVICE_STATS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU hash entry, as above.
        Some(c) => unsafe { add(c, len) },
        None => {
            // First frame with this key on any CPU: create the entry. If
            // another CPU created it meanwhile (NOEXIST fails), add to ours.
            let first = Counter { packets: 1, bytes: len };
            if DEVICE_STATS.insert(key, first, u64::from(BPF_NOEXIST)).is_err()
                && let Some(c) = DEVICE_STATS.get_ptr_mut(key)
            {
                // SAFETY: as above.
                unsafe { add(c, len) };
            }
        }
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
