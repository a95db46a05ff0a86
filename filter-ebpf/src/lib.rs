//! The library target holds what every program of this crate shares (the
//! panic handler), and lets filter-user list the crate as a build
//! dependency so cargo rebuilds the programs when it changes.
#![no_std]

/// Unreachable by construction: the verifier rejects any program that still
/// contains a path here. Only for the BPF target; host builds (filter-user's
/// build dependency) use std's.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
