//! This thread's capabilities (capget/capset, prctl): what
//! `privileges` decides with.

use std::io;

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This thread's capability sets as (effective, permitted) bit masks.
pub fn current() -> io::Result<(u64, u64)> {
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a version-3 header and the two data structs that
    // version takes, both ours.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((join(data[0].effective, data[1].effective), join(data[0].permitted, data[1].permitted)))
}

/// Sets this thread's effective and permitted sets (bit masks); the
/// inheritable set is emptied.
pub fn set(effective: u64, permitted: u64) -> io::Result<()> {
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e, p) = (split(effective), split(permitted));
    let mut header = Header { version: VERSION_3, pid: 0 };
    let data = [
        Data { effective: e.0, permitted: p.0, inheritable: 0 },
        Data { effective: e.1, permitted: p.1, inheritable: 0 },
    ];
    // SAFETY: capset with a version-3 header and its two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// no_new_privs: nothing this process executes gains privileges.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops capability `cap` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the ambient set.
pub fn clear_ambient() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
    }
}
