//! Crash points for the fault-injection tests (`tests/tests/crash_apply.rs`).
//!
//! With the `failpoints` feature (the lab's daemon build; never the
//! package's), `VLANGUARD_CRASH_AT=NAME` makes the daemon kill itself with
//! SIGKILL the first time it passes the point NAME after its start-up apply
//! (in an apply a request, SIGHUP or DNS refresh makes), as a power cut or
//! `kill -9` would at that instant. Without the feature the points compile
//! to nothing.
//!
//! The points of an apply (ARCHITECTURE §4), in order:
//! `commit::file-written`, `apply::slots-half-assigned`,
//! `apply::generation-half-written`, `apply::before-flip`,
//! `apply::after-flip`, `apply::before-cleanup`, `apply::before-slot-release`.

/// Marks a crash point (see the module's text).
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}
pub(crate) use crash_point;

/// The environment variable naming the point to crash at.
pub const CRASH_AT: &str = "VLANGUARD_CRASH_AT";

/// Arms the point `VLANGUARD_CRASH_AT` names, if any. Returns what it armed,
/// for the log.
#[cfg(feature = "failpoints")]
pub fn arm() -> anyhow::Result<Option<String>> {
    let Ok(name) = std::env::var(CRASH_AT) else { return Ok(None) };
    fail::cfg_callback(name.clone(), || {
        // SAFETY: kill(2) on this process; SIGKILL cannot be caught, so
        // nothing of ours runs after it, exactly like `kill -9`.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        // Not reached: the signal is delivered before kill(2) returns.
        loop {
            std::thread::park();
        }
    })
    .map_err(|e| anyhow::anyhow!("{CRASH_AT}={name}: {e}"))?;
    Ok(Some(name))
}

/// Without the feature there is nothing to arm; a request to is refused so a
/// test never believes it crashed the daemon.
#[cfg(not(feature = "failpoints"))]
pub fn arm() -> anyhow::Result<Option<String>> {
    match std::env::var(CRASH_AT) {
        Ok(spec) => anyhow::bail!(
            "{CRASH_AT}={spec}: this build has no crash points (the `failpoints` feature)"
        ),
        Err(_) => Ok(None),
    }
}
