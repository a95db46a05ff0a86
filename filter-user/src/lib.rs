//! vlanguard's controller library: the policy model, its compiler to BPF
//! map entries, the loader that installs them, and the reference evaluator
//! the kernel program is tested against.

pub mod attach;
pub mod compile;
pub mod error;
pub mod loader;
pub mod policy;
pub mod reference;
pub mod report;
mod sys;

pub use compile::{Compiled, compile};
pub use error::{LoadError, PolicyError};
pub use loader::{Filter, PASS_FLOOR_OBJECT, PROGRAM_OBJECT};
pub use policy::{Policy, Resolved};

/// Reads and validates a policy file; errors name the file.
pub fn read_policy(path: &std::path::Path) -> anyhow::Result<Resolved> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let policy = Policy::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
    policy.resolve().with_context(|| format!("in {}", path.display()))
}
