//! Errors the controller reports to operators.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy syntax: {0}")]
    Syntax(String),
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
    #[error(
        "device {device:?}: {count} {direction} rules after merging its profile; \
         the limit is {limit}: merge rules into peer sets or port ranges"
    )]
    TooManyRules { device: String, direction: &'static str, count: usize, limit: usize },
}

impl PolicyError {
    pub fn invalid(what: impl Into<String>, problem: String) -> PolicyError {
        PolicyError::Invalid { what: what.into(), problem }
    }
}

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
    #[error("bpf: {0}")]
    Syscall(std::io::Error),
    #[error("policy does not fit the maps: {0}")]
    Capacity(String),
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        LoadError::Syscall(e)
    }
}
