//! Errors of the datapath (loading, pinning, attaching), reported to
//! operators. Policy errors live with the policy (`filter_policy::error`).

use std::path::{Path, PathBuf};

pub use filter_policy::error::{PolicyError, UnknownDevice};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("BPF: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error("BPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("BPF program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoSuchInterface(String),
    #[error("cannot attach to {iface}: {reason}")]
    Attach { iface: String, reason: String },
    /// A file under the pin directory could not be made, read, moved or
    /// removed (`doing` says which, with the path).
    #[error("{doing}")]
    Pin {
        doing: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The pin directory is not on a BPF filesystem.
    #[error(
        "{} is not on a BPF filesystem; mount one first: mount -t bpf bpf {}",
        dir.display(),
        parent.display()
    )]
    NotBpffs { dir: PathBuf, parent: PathBuf },
    /// The system could not give what the loader needs (a CPU count,
    /// random bytes, a map's entry).
    #[error("{what}")]
    System {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "another vlanguard daemon is running on pin directory {0}; stop it first (or use its socket)"
    )]
    Locked(String),
    #[error("bpf: {0}")]
    Syscall(std::io::Error),
    #[error("policy does not fit the maps: {0}")]
    Capacity(String),
    #[error("{0}")]
    Refused(String),
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        LoadError::Syscall(e)
    }
}

impl LoadError {
    /// `source` while working on the pin at `path`, `doing` what (creating,
    /// removing, ...; empty: pinning or opening it).
    pub fn pin(
        doing: &str,
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> LoadError {
        let doing = if doing.is_empty() {
            path.display().to_string()
        } else {
            format!("{doing} {}", path.display())
        };
        LoadError::Pin { doing, source: source.into() }
    }

    /// `source` while doing `what`, outside the pin directory.
    pub fn system(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> LoadError {
        LoadError::System { what: what.into(), source: source.into() }
    }
}
