//! The program's clocks, read from user space: CLOCK_BOOTTIME
//! (`bpf_ktime_get_boot_ns`, blocklist expiries) and CLOCK_MONOTONIC
//! (`bpf_ktime_get_ns`, drop events' times).

use std::time::{Duration, SystemTime};

use filter_common::NS_PER_SEC;

/// Nanoseconds of CLOCK_BOOTTIME: the program's `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

/// When CLOCK_MONOTONIC (the program's `bpf_ktime_get_ns`) was zero.
pub fn boot_time() -> SystemTime {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    let since_boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    SystemTime::now() - since_boot
}
