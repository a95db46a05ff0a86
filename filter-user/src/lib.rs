//! vlanguard's controller library: the policy model, its compiler to BPF
//! map entries, the loader that installs them, and the reference evaluator
//! the kernel program is tested against.

pub mod actions;
pub mod attach;
pub mod compile;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod diff;
pub mod edit;
pub mod error;
pub mod events;
pub mod flows;
pub mod journal;
pub mod loader;
pub mod metrics;
pub mod mud;
pub mod notify;
pub mod offload;
pub mod pins;
pub mod policy;
pub mod privileges;
pub mod program_log;
pub mod reference;
pub mod refusals;
pub mod report;
pub mod scan;
pub mod suggest;
mod sys;

pub use compile::{Compiled, compile};
pub use error::{LoadError, PolicyError};
pub use loader::{BENCH_OBJECT, Filter, PROGRAM_OBJECT};
pub use policy::{Policy, Resolved};

/// Reads and validates a policy file; errors say `file:line:column:` and
/// what to do.
pub fn read_policy(path: &std::path::Path) -> anyhow::Result<Resolved> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    resolve_policy(&text).map_err(|e| anyhow::anyhow!(e.render(path, &text)))
}

/// Policy text validated into a policy, the DNS names its rules use
/// resolved with the system resolver (getaddrinfo: /etc/hosts, then
/// /etc/resolv.conf's servers). A name without an answer fails validation.
///
/// The parse runs on a thread of its own, so in an allocator arena of its
/// own, and the caller keeps a copy made on its thread: the parse allocates
/// several kilobytes per device that it frees at once, and the long-lived
/// policy built in between them would pin those pages (a 100,000-device
/// daemon held ~430 MB after the apply instead of the policy's ~130 MB).
/// With the parse's arena entirely free, `sys::trim_heap` returns it.
pub fn resolve_policy(text: &str) -> Result<Resolved, error::PolicyError> {
    let parsed = std::thread::scope(|s| {
        s.spawn(|| {
            let mut policy = Policy::from_toml(text)?;
            policy.names = lookup_names(&policy.dns_names());
            policy.resolve()
        })
        .join()
    });
    match parsed {
        Ok(Ok(policy)) => Ok(policy.clone()),
        Ok(Err(e)) => Err(e),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The addresses of each name that resolves (port 0: any service).
pub fn lookup_names(names: &[String]) -> std::collections::BTreeMap<String, Vec<std::net::IpAddr>> {
    use std::net::ToSocketAddrs as _;
    names
        .iter()
        .filter_map(|name| {
            let mut addrs: Vec<_> =
                (name.as_str(), 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
            addrs.sort();
            addrs.dedup();
            (!addrs.is_empty()).then(|| (name.clone(), addrs))
        })
        .collect()
}

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
