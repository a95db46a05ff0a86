//! bpf(2) commands aya 0.14 does not offer: batched updates, used for the
//! rule entries (a million single updates would take a second) and the
//! arrays of maps, and batched reads of the per-device counter lines. The kernel waits for an RCU grace period after every
//! syscall update of a map of maps (so no program still holds the old inner
//! map), which the loader uses to know that old readers are gone.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// bpf(2) command `cmd` with `attr`: what it returned (a new descriptor
/// for some commands), or errno's error.
///
/// # Safety
/// `attr` must be a valid `union bpf_attr` prefix for `cmd`, and every
/// pointer in it must cover what the command reads or writes there.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: guaranteed by the caller; `attr` lives across the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>() as libc::c_uint)
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `union bpf_attr`, the `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Sets `map[keys[i]] = values[i]` for a map with `u32` keys and `V`
/// values (for a map of maps, `u32` inner map file descriptors). Returns
/// once the kernel has processed all of them.
pub fn update_batch<V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &[u32],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: u32::try_from(keys.len() - done)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for this command; the key
        // and value pointers cover `count` elements each (the map's key and
        // value sizes, as the caller's types are) and outlive the call.
        if let Err(err) = unsafe { bpf(BPF_MAP_UPDATE_BATCH, &mut attr) } {
            return Err(io::Error::new(
                err.kind(),
                format!(
                    "BPF_MAP_UPDATE_BATCH after {} of {}: {err}",
                    done + attr.count as usize,
                    keys.len()
                ),
            ));
        }
        if attr.count == 0 {
            return Err(io::Error::other("BPF_MAP_UPDATE_BATCH made no progress"));
        }
        done += attr.count as usize;
    }
    Ok(())
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The most a batched read holds at once, so that a scrape's memory stays
/// small whatever the counters' size.
const READ_BYTES: usize = 4 << 20;

/// Calls `f(first, values)` for entries `0..len` of an array of `V`, a
/// chunk at a time: `values` holds entries `first..`, each chunk a whole
/// number of groups of `group` entries (a device's lines, one per CPU). A
/// few system calls where one lookup per entry made a scrape of 10,000
/// devices' counters 20,000.
pub fn for_each_chunk<V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    len: usize,
    group: usize,
    mut f: impl FnMut(usize, &[V]),
) -> io::Result<()> {
    let group = group.max(1);
    let chunk = (READ_BYTES / size_of::<V>()).clamp(1, 4096 * group) / group * group;
    // No larger than what is read: a few devices' lines are not worth
    // megabytes of buffer zeroed at every read.
    let chunk = chunk.min(len.div_ceil(group) * group).max(group);
    let mut keys = vec![0u32; chunk];
    let mut values: Vec<V> = (0..chunk).map(|_| V::default()).collect();
    let mut done = 0;
    // The last key read, from which the kernel goes on (none: from 0).
    let mut last: Option<u32> = None;
    while done < len {
        let want = (len - done).min(chunk);
        let mut next = 0u32;
        let mut attr = BatchAttr {
            in_batch: last.as_ref().map_or(0, |k| (k as *const u32) as u64),
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: want as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for this command; the
        // key buffer holds `chunk` >= `want` u32s, the value buffer `chunk`
        // values of the map's value size (the caller's `V`), and `last` and
        // `next` are u32 keys; all outlive the call.
        let result = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let got = (attr.count as usize).min(want);
        if let Err(err) = &result {
            // ENOENT: the map ended; what came before it is in the buffer.
            if err.raw_os_error() != Some(libc::ENOENT) || got == 0 {
                return Err(io::Error::new(
                    err.kind(),
                    format!("BPF_MAP_LOOKUP_BATCH from entry {done}: {err}"),
                ));
            }
        }
        if got == 0 {
            return Err(io::Error::other("BPF_MAP_LOOKUP_BATCH made no progress"));
        }
        f(done, &values[..got]);
        done += got;
        last = Some(next);
        if result.is_err() {
            break;
        }
    }
    Ok(())
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

/// `union bpf_attr`, the element-command member.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `map[key]` for a map with `u32` keys and values, `None` when empty. For a
/// program array the value read back is the program's id (aya 0.14 has no
/// lookup for program arrays).
pub fn lookup_u32(map: BorrowedFd<'_>, key: u32) -> io::Result<Option<u32>> {
    let mut value = 0u32;
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: (&raw const key) as u64,
        value: (&raw mut value) as u64,
        ..ElemAttr::default()
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; key and
    // value point at u32s that outlive the call.
    if let Err(err) = unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(value))
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr`, the `info` member.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const BPF_OBJ_GET: libc::c_long = 7;

/// `union bpf_attr`, the `BPF_OBJ_*` member.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// The interface the BPF link pinned at `path` (an XDP or TCX attachment)
/// is on: its ifindex, 0 once the kernel detached it (the interface was
/// deleted). aya 0.14's `LinkInfo` does not expose it.
pub fn pinned_link_ifindex(path: &std::path::Path) -> io::Result<u32> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};

    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = ObjAttr { pathname: c_path.as_ptr() as u64, ..ObjAttr::default() };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; the path
    // is NUL-terminated and outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr) }?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    link_ifindex(std::os::fd::AsFd::as_fd(&fd))
}

fn link_ifindex(link: BorrowedFd<'_>) -> io::Result<u32> {
    // `struct bpf_link_info`: type, id, prog_id, then (8-byte aligned) the
    // union whose `xdp` and `tcx` members start with the ifindex.
    const IFINDEX_AT: usize = 16;
    let mut info = [0u64; 8];
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; `info`
    // covers the `info_len` bytes the kernel may write and outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let w = info[IFINDEX_AT / 8].to_ne_bytes();
    Ok(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}
