//! Per-device rate limits (`rate_limit` in the policy): frames per second
//! and new TCP connections per second towards a device, counted in
//! one-second windows shared by all CPUs.
//!
//! The counters are read, compared and then added to atomically (a plain
//! XADD, no compare-and-swap): CPUs racing at the limit can let a frame or
//! two past it per window, and a window restart racing with an add can lose
//! that add. Both err by a few frames per second, not by a factor of the
//! CPU count as per-CPU windows would.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::HashMap,
};
use filter_common::{DeviceInfo, MAX_DEVICE_SLOTS, NS_PER_SEC, RateState};

#[map]
static RATE_STATE: HashMap<u32, RateState> =
    HashMap::with_max_entries(MAX_DEVICE_SLOTS, BPF_F_NO_PREALLOC);

/// Counts a frame towards `dev` (a new TCP connection if `syn`) and says
/// whether it is over the device's limits for this second.
#[inline(always)]
pub fn over(dev: &DeviceInfo, syn: bool) -> bool {
    let (pps, syns) = (dev.packets_per_sec, dev.syns_per_sec);
    if pps == 0 && (syns == 0 || !syn) {
        return false;
    }
    // SAFETY: a helper without arguments.
    let second = unsafe { bpf_ktime_get_ns() } / NS_PER_SEC;
    let state = match RATE_STATE.get_ptr_mut(dev.slot) {
        Some(s) => s,
        None => {
            let fresh = RateState { second, packets: 0, syns: 0 };
            let _ = RATE_STATE.insert(dev.slot, fresh, u64::from(BPF_NOEXIST));
            match RATE_STATE.get_ptr_mut(dev.slot) {
                Some(s) => s,
                None => return false,
            }
        }
    };
    // SAFETY: `state` points at a live entry (RCU keeps it for this run);
    // other CPUs update it concurrently, through atomic adds for the
    // counters and whole-field stores for a new window (see the module).
    unsafe {
        if (*state).second != second {
            (*state).second = second;
            (*state).packets = 0;
            (*state).syns = 0;
        }
        if pps != 0 {
            if (*state).packets >= u64::from(pps) {
                return true;
            }
            atomic_add(&raw mut (*state).packets, 1);
        }
        if syn && syns != 0 {
            if (*state).syns >= u64::from(syns) {
                return true;
            }
            atomic_add(&raw mut (*state).syns, 1);
        }
    }
    false
}

/// `*dst += n` as one atomic instruction (BPF `lock xadd`). The BPF target
/// has no compare-and-swap in core's atomic types, so `AtomicU64::fetch_add`
/// does not exist there; the intrinsic with its result unused compiles to
/// the plain atomic add every kernel supports.
///
/// # Safety
/// `dst` must be valid for reads and writes and 8-byte aligned.
#[inline(always)]
unsafe fn atomic_add(dst: *mut u64, n: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            dst, n,
        )
    };
}
