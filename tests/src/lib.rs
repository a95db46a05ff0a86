//! Support for vlanguard's privileged tests: a frame builder, a harness
//! that runs the real XDP program on frames with BPF_PROG_TEST_RUN, and the
//! root check.

pub mod differential;
pub mod frame;
pub mod harness;
pub mod lab;
pub mod policies;
pub mod random;
pub mod scale;

/// Whether the tests may touch the kernel. Kernel tests need root; outside
/// CI they are skipped with a message when it is missing, under `CI=true`
/// a missing privilege fails the test.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kernel tests need root (CAP_BPF, CAP_NET_ADMIN); CI=true makes that a failure"
        );
        eprintln!("skipped: kernel tests need root");
    }
    root
}
