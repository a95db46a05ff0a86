//! The process: its heap, waiting on a descriptor.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// Hands freed heap memory back to the kernel. Parsing a policy file
/// allocates several kilobytes per device (the TOML document) and frees
/// them right after, below the long-lived policy; glibc keeps such memory
/// otherwise, so a 100,000-device daemon stayed at the parse's peak.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // touches no memory the program holds.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits until `fd` is readable; `Interrupted` when a signal came first.
pub fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, for the duration of the call; `fd` is
    // borrowed, so open, throughout.
    let ready = unsafe { libc::poll(&raw mut poll, 1, -1) };
    if ready < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
