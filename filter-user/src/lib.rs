//! vlanguard's controller library: the loader that installs compiled
//! policies in the kernel, the daemon, its control socket and metrics. The
//! policy logic is the `filter-policy` crate, re-exported here under the
//! same names (`filter_user::policy`, `filter_user::compile`, ...).

pub mod control;
pub mod daemon;
pub mod datapath;
pub mod error;
pub mod failpoints;
pub mod fleet;
pub mod inventory;
pub mod journal;
pub mod learning;
pub mod metrics;
pub mod notify;
pub mod privileges;
pub mod refusals;
pub mod report;
pub mod scan;
pub mod sys;
#[cfg(feature = "lab")]
pub mod test_objects;

pub use datapath::{Filter, PROGRAM_OBJECT};
pub use error::{LoadError, PolicyError};
pub use filter_policy::{
    Compiled, Policy, Resolved, addr, compile, diff, edit, events, identity, lookup_names, mud,
    policy, read_policy, resolve_policy, suggest, time,
};
