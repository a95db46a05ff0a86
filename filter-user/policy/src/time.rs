//! Times as operators read them: RFC 3339 in UTC, everywhere (events, the
//! audit log, `status`, blocklist entries), so logs sort and tools parse
//! them alike.

use std::time::SystemTime;

/// A moment something happened (an event, an audit entry), to the
/// millisecond: `2026-12-02T14:05:09.123Z`.
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A moment operators plan by (a policy applied, a block's expiry), to the
/// second: `2026-12-02T14:05:09Z`.
pub fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A time written by [`stamp`] or [`date`], read back.
pub fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}
