//! Errors of the datapath (loading, pinning, attaching), reported to
//! operators. Policy errors live with the policy (`filter_policy::error`).

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
    #[error("pinning: {0}")]
    Pin(String),
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
