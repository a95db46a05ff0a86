//! Every raw system call and libc call the controller makes, each in a
//! small safe function with its SAFETY note beside the call (as aya's
//! `sys/`): callers elsewhere write no `unsafe`.

pub mod bpf;
pub mod caps;
pub mod clock;
pub mod fs;
pub mod net;
pub mod netlink;
pub mod process;
pub mod users;
