//! Counters: one global per-CPU entry per (verdict, reason) for every
//! frame, and for frames touching devices each device's own line on this
//! CPU (`filter_common::CounterLine`): its counters by direction and
//! verdict, and the hits of its first rules. [`bump`] is the one increment
//! of the other modules' per-CPU statistics (flows, events).
//!
//! Every counter here is this CPU's own: XDP runs with preemption off, so
//! nothing else writes it while the program does, and plain adds need no
//! atomics.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_smp_processor_id, maps::PerCpuArray};
use filter_common::{
    Counter, CounterLine, Direction, LINE_RULES, Reason, RuleHitKey, Verdict, global_stat_index,
};

use crate::{
    decide::{Involved, NO_SLOT},
    maps::{COUNTER_LINES, GLOBAL_STATS, RULE_HITS, VLANGUARD_CPUS},
};

#[inline(always)]
pub fn count(verdict: Verdict, reason: Reason, devices: &Involved, len: u64) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(global_stat_index(verdict, reason)) {
        // SAFETY: this CPU's value of a per-CPU array (see the module).
        add(unsafe { &mut *c }, len);
    }
    if devices.src_slot != NO_SLOT {
        count_device(devices.src_slot, Direction::Out, verdict, devices.src_rule, len);
    }
    if devices.dst_slot != NO_SLOT {
        count_device(devices.dst_slot, Direction::In, verdict, devices.dst_rule, len);
    }
}

/// Counts a frame in the line of the device in `slot` on this CPU: its
/// counter of `direction` and `verdict`, and the hit of `rule` (the rule of
/// its list that let the frame through, `NO_SLOT` for none) — the line for
/// the first rules, the hash for the rest.
#[inline(always)]
fn count_device(slot: u32, direction: Direction, verdict: Verdict, rule: u32, len: u64) {
    let Some(line) = own_line(slot) else { return };
    // Indexes are enum discriminants and `rule` is checked against the
    // line; `get_mut` keeps the bounds checks in the code anyway, which the
    // verifier needs.
    // SAFETY: this CPU's line (`own_line`); only this CPU writes it (see
    // the module).
    let line = unsafe { &mut *line };
    if rule != NO_SLOT {
        // Widened once, opaquely, before the bound check: left to the
        // compiler, it checked one zero-extended copy of `rule` and indexed
        // with another, and the verifier saw no bound on the index.
        let at = core::hint::black_box(rule as usize);
        if at < LINE_RULES {
            if let Some(c) =
                line.passed.get_mut(direction as usize).and_then(|p| p.hits.get_mut(at))
            {
                *c = c.wrapping_add(1);
            }
        } else {
            count_later_rule(slot, direction, rule);
        }
    }
    let counter = match verdict {
        Verdict::Pass => line.passed.get_mut(direction as usize).map(|p| &mut p.frames),
        Verdict::Drop => line.dropped.get_mut(direction as usize).and_then(|d| d.get_mut(0)),
        Verdict::WouldDrop => line.dropped.get_mut(direction as usize).and_then(|d| d.get_mut(1)),
    };
    if let Some(c) = counter {
        add(c, len);
    }
}

/// The hit of a rule past the line's, in the `RULE_HITS` hash.
#[inline(always)]
fn count_later_rule(slot: u32, direction: Direction, rule: u32) {
    let key = RuleHitKey { slot, direction: direction as u8, rule: rule as u8, _pad: 0 };
    let c = match RULE_HITS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            // The rule's first hit: a new entry, unless another CPU made it
            // meanwhile.
            if RULE_HITS.insert(key, 1, u64::from(BPF_NOEXIST)).is_ok() {
                return;
            }
            let Some(c) = RULE_HITS.get_ptr_mut(key) else { return };
            c
        }
    };
    // SAFETY: this CPU's value of a per-CPU hash entry (see the module).
    unsafe { *c = (*c).wrapping_add(1) };
}

/// Adds one to this CPU's counter `index` of `map`.
#[inline(always)]
pub fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's value of a per-CPU array (see the module).
        unsafe { *c = (*c).wrapping_add(1) };
    }
}

/// This CPU's line of the device in `slot`: `COUNTER_LINES[slot * cpus +
/// cpu]`. `None` past the array (a slot beyond the capacity is refused
/// when assigned) or on a CPU the loader did not count (none: it counts
/// the possible CPUs).
#[inline(always)]
fn own_line(slot: u32) -> Option<*mut CounterLine> {
    let cpus = VLANGUARD_CPUS.load();
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if cpu >= cpus {
        return None;
    }
    COUNTER_LINES.get_ptr_mut(slot.checked_mul(cpus)?.checked_add(cpu)?)
}

/// Counts a frame of `len` bytes.
#[inline(always)]
fn add(c: &mut Counter, len: u64) {
    c.packets = c.packets.wrapping_add(1);
    c.bytes = c.bytes.wrapping_add(len);
}
