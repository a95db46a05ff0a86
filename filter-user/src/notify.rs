//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): one datagram
//! to `$NOTIFY_SOCKET`.

/// Tells systemd (`Type=notify`) how the daemon is: `READY=1` once the
/// program is attached and the policy applied. Nothing without
/// `$NOTIFY_SOCKET` (not started by systemd).
pub fn notify(state: &str) {
    use std::os::{linux::net::SocketAddrExt as _, unix::ffi::OsStrExt as _};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let bytes = path.as_bytes();
    // "@name" is an abstract socket.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name),
        None => std::os::unix::net::SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        eprintln!("vlanguard: telling systemd {state:?} through {}: {e}", path.to_string_lossy());
    }
}
