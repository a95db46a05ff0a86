//! Support for vlanguard's privileged tests: a frame builder, a harness
//! that runs the real XDP program on frames with BPF_PROG_TEST_RUN, and the
//! root check.

pub mod differential;
pub mod dns;
pub mod etcd;
pub mod fleet;
pub mod frame;
pub mod harness;
pub mod lab;
pub mod policies;
pub mod random;
pub mod reference;
pub mod scale;
pub mod xdp_filter;

/// Seconds of CLOCK_MONOTONIC: the program's `bpf_ktime_get_ns`, whose
/// whole seconds are the rate limits' windows.
pub fn monotonic_second() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec
}

/// The sum of the samples of metric `name` whose lines contain all of
/// `parts` (labels), in a Prometheus text exposition.
pub fn sample(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

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

/// Pins thread `tid` (0: the calling thread) to `cpu`, for the benchmarks'
/// flood sender and receiver.
pub fn pin_to_cpu(tid: u32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch the set we own.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid as i32, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
