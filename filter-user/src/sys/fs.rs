//! Files: the pin directory's lock, whether a path is on a BPF
//! filesystem, room reserved in a file.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    path::Path,
};

/// `statfs` magic of a BPF filesystem (linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Takes an exclusive lock on `fd` (flock), without waiting: held until the
/// descriptor is closed; an error if another process holds it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: flock on a descriptor borrowed for the call; no memory is
    // involved.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated and `buf` is a properly sized statfs.
    unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &raw mut buf) == 0 && buf.f_type == BPF_FS_MAGIC
    }
}

/// Allocates `len` bytes of `file` from `offset` without changing its size
/// (`fallocate` with `FALLOC_FL_KEEP_SIZE`): later writes there cannot fail
/// for want of space. `Ok(false)` where the filesystem cannot do it.
pub fn reserve(file: &std::fs::File, offset: u64, len: u64) -> io::Result<bool> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate on a descriptor `file` keeps open for the call; no
    // memory is involved.
    if unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS) => Ok(false),
        _ => Err(err),
    }
}
