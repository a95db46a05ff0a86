//! vlanguard's controller library: the policy model, its compiler to BPF
//! map entries, the loader that installs them, and the reference evaluator
//! the kernel program is tested against.

pub mod actions;
pub mod attach;
pub mod compile;
pub mod control;
pub mod daemon;
pub mod diff;
pub mod edit;
pub mod error;
pub mod events;
pub mod loader;
pub mod metrics;
pub mod pins;
pub mod policy;
pub mod program_log;
pub mod reference;
pub mod report;
pub mod scan;
pub mod suggest;
mod sys;
pub mod top;

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
    Policy::from_toml(&text)
        .and_then(|p| p.resolve())
        .map_err(|e| anyhow::anyhow!(e.render(path, &text)))
}
