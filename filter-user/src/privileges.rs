//! Capabilities: `vlanguard run` checks at start that it has what loading,
//! attaching and updating the filter take, naming what is missing, and once
//! the filter is attached gives up everything else (also when started as
//! root), so a compromised daemon holds no more than it needs.

use crate::sys::caps;

/// Capability numbers (linux/capability.h).
const CAP_SETPCAP: u32 = 8;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_LAST: u32 = 40;

/// What the daemon cannot run without: loading the program and creating
/// maps (CAP_BPF, CAP_PERFMON for the verifier's pointer checks), attaching
/// XDP (CAP_NET_ADMIN).
pub const NEEDED: [(u32, &str); 3] =
    [(CAP_BPF, "CAP_BPF"), (CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_PERFMON, "CAP_PERFMON")];

/// Kept when present: memlock accounting on kernels before 5.11 needs it.
const OPTIONAL: [u32; 1] = [CAP_SYS_RESOURCE];

/// Checks the capabilities `vlanguard run` needs; the error names each
/// one that is missing and how to grant them.
pub fn check() -> Result<(), String> {
    let (effective, _) = caps::current().map_err(|e| format!("reading capabilities: {e}"))?;
    let missing: Vec<&str> =
        NEEDED.iter().filter(|(cap, _)| effective & (1 << cap) == 0).map(|(_, n)| *n).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing capability {}: `vlanguard run` needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
         (run it as root, or grant them, e.g. AmbientCapabilities= in the systemd unit)",
        missing.join(", ")
    ))
}

/// Gives up every capability but the needed and optional ones, on this
/// thread (threads started later inherit it): from the bounding set (when
/// allowed), the inheritable and ambient sets, then the effective and
/// permitted ones; and sets no_new_privs, so nothing executed regains any.
pub fn drop_unneeded() -> std::io::Result<()> {
    let keep: u64 =
        NEEDED.iter().map(|(c, _)| 1u64 << c).chain(OPTIONAL.iter().map(|c| 1 << c)).sum();
    let (effective, permitted) = caps::current()?;
    caps::set_no_new_privs()?;
    if (effective | permitted) & !keep == 0 {
        // Started with no more than it needs (the systemd unit): nothing to
        // give up, and capset may be outside the syscall filter.
        return Ok(());
    }
    if effective & (1 << CAP_SETPCAP) != 0 {
        for cap in 0..=CAP_LAST {
            if keep & (1 << cap) == 0 {
                // EINVAL for numbers this kernel does not know is fine.
                let _ = caps::drop_bounding(cap);
            }
        }
    }
    caps::clear_ambient();
    caps::set(effective & keep, permitted & keep)
}

/// This thread's effective capabilities among those the daemon uses, by
/// name, for `status`.
pub fn effective_names() -> Vec<&'static str> {
    let Ok((effective, _)) = caps::current() else { return Vec::new() };
    NEEDED
        .iter()
        .copied()
        .chain([(CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE")])
        .filter(|(c, _)| effective & (1 << c) != 0)
        .map(|(_, n)| n)
        .collect()
}
