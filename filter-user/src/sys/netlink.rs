//! The kernel's link notifications (rtnetlink, `RTMGRP_LINK`): a socket that
//! becomes readable when an interface is added, deleted, renamed or changes
//! state. The daemon does not parse them: any of them makes it check its
//! interfaces again (`daemon/interfaces.rs`), which also covers messages
//! lost to a full socket buffer.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
};

const RTMGRP_LINK: u32 = 1;

/// A non-blocking rtnetlink socket subscribed to link notifications.
#[derive(Debug)]
pub struct LinkEvents(OwnedFd);

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid (the kernel picks the port).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: `addr` is a sockaddr_nl of the size passed, alive across the call.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkEvents(fd))
    }

    /// Reads every pending notification (bounded); returns how many reads
    /// returned data. A full buffer (ENOBUFS: notifications were lost)
    /// counts as one: something changed.
    pub fn drain(&self) -> usize {
        let mut buf = [0u8; 8192];
        let mut reads = 0;
        for _ in 0..1024 {
            // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                reads += 1;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                reads += 1;
                continue;
            }
            break;
        }
        reads
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
