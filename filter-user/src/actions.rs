//! Operators' actions as the controller handles them: blocklist entries
//! and quarantines, made into `BlockEntry` values with their expiry on the
//! program's clock (boot time), and described back in operator terms.

use std::time::{Duration, SystemTime};

use filter_common::{BLOCK_REASON_LEN, BlockEntry, NS_PER_SEC};
use serde::Serialize;

/// Nanoseconds of CLOCK_BOOTTIME: the program's `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

/// An entry that lasts `lasts` from now (`None`: until lifted), with the
/// operator's `reason`.
pub fn entry(lasts: Option<Duration>, reason: &str) -> Result<BlockEntry, String> {
    if reason.len() > BLOCK_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes; at most {BLOCK_REASON_LEN} are kept, say it shorter",
            reason.len()
        ));
    }
    let expires_ns = match lasts {
        None => 0,
        Some(d) if d.is_zero() => return Err("--for must be longer than 0s".into()),
        Some(d) => boot_ns().saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64),
    };
    let mut text = [0u8; BLOCK_REASON_LEN];
    text[..reason.len()].copy_from_slice(reason.as_bytes());
    let created_unix =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(BlockEntry { expires_ns, created_unix, reason: text })
}

/// An entry in operator terms.
#[derive(Clone, Debug, Serialize)]
pub struct Described {
    /// The address or network, or the device.
    pub what: String,
    pub reason: String,
    pub since: String,
    /// RFC 3339, or "never".
    pub expires: String,
    /// Seconds left, `None` for never.
    pub remaining_secs: Option<u64>,
}

pub fn describe(what: String, e: &BlockEntry, now_ns: u64) -> Described {
    let reason_len = e.reason.iter().position(|b| *b == 0).unwrap_or(e.reason.len());
    let remaining = (e.expires_ns != 0).then(|| e.expires_ns.saturating_sub(now_ns) / NS_PER_SEC);
    Described {
        what,
        reason: String::from_utf8_lossy(&e.reason[..reason_len]).into_owned(),
        since: humantime::format_rfc3339_seconds(
            SystemTime::UNIX_EPOCH + Duration::from_secs(e.created_unix),
        )
        .to_string(),
        expires: match remaining {
            None => "never".into(),
            Some(s) => {
                humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(s))
                    .to_string()
            }
        },
        remaining_secs: remaining,
    }
}

impl Described {
    pub fn line(&self) -> String {
        let left = match self.remaining_secs {
            None => "until lifted".to_string(),
            Some(s) => format!("{} left", humantime::format_duration(Duration::from_secs(s))),
        };
        format!("{:<24} {:<18} since {}  {}", self.what, left, self.since, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_reason_and_expiry() {
        let e = entry(Some(Duration::from_secs(60)), "scan from the guest wifi").expect("entry");
        let now = boot_ns();
        assert!(e.active(now) && !e.active(now + 61_000_000_000));
        let d = describe("10.9.9.9".into(), &e, now);
        assert_eq!(d.reason, "scan from the guest wifi");
        assert!(d.remaining_secs.is_some_and(|s| (58..=60).contains(&s)), "{d:?}");
        let forever = entry(None, "").expect("entry");
        assert!(forever.active(u64::MAX) && describe("x".into(), &forever, now).expires == "never");
        assert!(entry(None, &"x".repeat(49)).unwrap_err().contains("at most 48"));
        assert!(entry(Some(Duration::ZERO), "r").is_err());
    }
}
