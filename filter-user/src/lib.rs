//! vlanguard's controller library: the loader that installs compiled
//! policies in the kernel, the daemon, its control socket and metrics. The
//! policy logic is the `filter-policy` crate, re-exported here under the
//! same names (`filter_user::policy`, `filter_user::compile`, ...).

pub mod control;
pub mod daemon;
pub mod datapath;
pub mod error;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod privileges;
pub mod refusals;
pub mod report;
pub mod scan;
#[cfg(feature = "lab")]
pub mod test_objects;
pub mod top;

pub use datapath::{Filter, PROGRAM_OBJECT};
pub use error::{LoadError, PolicyError};
pub use filter_policy::{
    Compiled, Policy, Resolved, addr, compile, diff, edit, events, lookup_names, mud, policy,
    read_policy, resolve_policy, suggest, time,
};

/// Raises the open-file limit as far as allowed: the filter keeps one
/// descriptor per distinct rule-set trie (tens of thousands for large
/// policies). With CAP_SYS_RESOURCE both limits go to the kernel's
/// `fs.nr_open`; without, the soft limit goes to the hard one.
pub fn raise_open_file_limit() {
    let nr_open: libc::rlim_t = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: getrlimit/setrlimit with a properly sized struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) != 0 {
            return;
        }
        let want = libc::rlimit { rlim_cur: nr_open, rlim_max: nr_open };
        if nr_open > lim.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raw const want) == 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}
