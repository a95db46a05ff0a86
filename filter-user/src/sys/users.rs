//! Users and groups, by the system's name service (getgrnam, getpwuid).

/// The gid of group `name`.
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns NULL or a pointer to static storage that is
    // valid until the next getgr* call; we read one field right away.
    unsafe {
        let g = libc::getgrnam(c.as_ptr());
        (!g.is_null()).then(|| (*g).gr_gid)
    }
}

/// The user name of `uid`, or the number.
pub fn user_name(uid: u32) -> String {
    // SAFETY: as for getgrnam: NULL or static storage read at once.
    unsafe {
        let p = libc::getpwuid(uid);
        if p.is_null() || (*p).pw_name.is_null() {
            return uid.to_string();
        }
        std::ffi::CStr::from_ptr((*p).pw_name).to_string_lossy().into_owned()
    }
}
