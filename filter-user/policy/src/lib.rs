//! vlanguard's policy logic, with no BPF and no I/O beyond files and the
//! system resolver: the policy model and its validation (`policy`), the
//! compiler to map entries (`compile`), diffs between policies (`diff`),
//! edits of the policy file (`edit`), MUD import (`mud`), drop events
//! (`events`) and the rules suggested from them (`suggest`), and what
//! identifies a host from what it sends (`identity`: DHCP, MAC vendors).
//! The controller (`filter-user`) re-exports it; ARCHITECTURE §1 draws the
//! crates.

pub mod addr;
pub mod compile;
pub mod diff;
pub mod edit;
pub mod error;
pub mod events;
pub mod identity;
pub mod mud;
pub mod policy;
pub mod suggest;
pub mod time;

pub use compile::{Compiled, compile};
pub use error::PolicyError;
pub use policy::{Policy, Resolved};

/// Reads and validates a policy file; errors say `file:line:column:` and
/// what to do.
pub fn read_policy(path: &std::path::Path) -> Result<Resolved, error::ReadPolicyError> {
    use error::ReadPolicyError;
    let text = std::fs::read_to_string(path)
        .map_err(|source| ReadPolicyError::Read { path: path.to_owned(), source })?;
    resolve_policy(&text)
        .map_err(|error| ReadPolicyError::Invalid { rendered: error.render(path, &text), error })
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
/// With the parse's arena entirely free, the daemon's `sys::trim_heap` returns it.
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
