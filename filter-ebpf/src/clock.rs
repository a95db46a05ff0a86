//! The coarse monotonic clock (CLOCK_MONOTONIC at tick resolution), read
//! through jiffies.
//!
//! Why: `bpf_ktime_get_coarse_ns` is a helper call (~5 ns, ARCHITECTURE §3),
//! paid by every denied frame of a flood (the event limiter) and every
//! flow hit. `bpf_jiffies64` is inlined by the verifier into one load, and
//! the coarse clock only moves when jiffies do (both advance in the same
//! tick), so each CPU keeps the last reading with the jiffies it was read
//! at and calls the helper once per tick. A CPU that reads between the two
//! updates of a tick keeps that tick's old time until the next one: an
//! error of at most one tick, the coarse clock's resolution anyway.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::scratch;

/// `Scratch::clock`: the last reading on this CPU.
#[repr(C)]
pub struct Reading {
    jiffies: u64,
    ns: u64,
}

/// The coarse clock, in ns.
#[inline(always)]
pub fn coarse_ns() -> u64 {
    // SAFETY: helpers without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(last) = scratch::clock() else {
        // SAFETY: as above.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    let last = last.ptr();
    // SAFETY: this CPU's scratch slot (`scratch::Slot`).
    unsafe {
        if (*last).jiffies == jiffies && (*last).ns != 0 {
            return (*last).ns;
        }
        let ns = bpf_ktime_get_coarse_ns();
        (*last).jiffies = jiffies;
        (*last).ns = ns;
        ns
    }
}
