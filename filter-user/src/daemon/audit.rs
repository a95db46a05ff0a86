//! The audit log: one JSON line per change (a request, a scan block) or
//! refusal, synced, and to the journal too. Refusals go through the
//! limiter, so a caller without rights cannot fill the disk (`refusals`).
//!
//! Entries are built as typed structs and written as a `serde_json::Value`
//! (keys sorted), the shape the log has always had.

use std::{
    fs,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use super::log;
use crate::{
    control::{Reply, Request},
    journal::Journal,
    refusals::{self, Refusal},
};

pub(super) struct Audit {
    path: PathBuf,
    journal: Option<Arc<Journal>>,
    /// Refused callers' entries, limited.
    limiter: refusals::Limiter,
}

/// The policy in force, in brief: before and after a change.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct Summary {
    pub revision: u64,
    pub devices: usize,
}

/// A request that changes something, answered.
#[derive(Serialize)]
struct Answered<'a> {
    uid: u32,
    user: String,
    command: &'a Request,
    ok: bool,
    result: &'a str,
    before: Summary,
    after: Summary,
    took_ms: u128,
}

/// A block the daemon made itself (scan detection).
#[derive(Serialize)]
struct Blocked<'a> {
    user: &'static str,
    command: BlockCommand<'a>,
    ok: bool,
    result: &'a str,
}

/// As a `block` request would have been written.
#[derive(Serialize)]
struct BlockCommand<'a> {
    request: &'static str,
    net: ipnet::IpNet,
    for_secs: u64,
    reason: &'a str,
}

/// What fleet mode did or refused (`daemon::fleet`).
#[derive(Serialize)]
struct FleetEntry<'a> {
    user: &'static str,
    command: FleetCommand,
    ok: bool,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    took_ms: Option<u128>,
}

#[derive(Serialize)]
struct FleetCommand {
    request: &'static str,
    /// applied, rejected, unreachable, reconnected.
    event: &'static str,
    version: Option<u64>,
}

/// A request refused before the daemon acted on it.
#[derive(Serialize)]
struct Refused<'a> {
    uid: Option<u32>,
    user: Option<String>,
    pid: Option<i32>,
    command: Asked,
    ok: bool,
    refused: &'static str,
    result: &'a str,
}

/// What a refused caller asked, bounded: the kind of request and the start
/// of it (a refused caller's megabytes never reach the disk).
#[derive(Serialize)]
#[serde(untagged)]
enum Asked {
    Request { request: serde_json::Value, sent: String },
    Unparsed { unparsed: String },
}

/// Refusals counted, not written, in a window that ended.
#[derive(Serialize)]
struct Suppressed {
    uid: Option<u32>,
    user: Option<String>,
    ok: bool,
    refused: &'static str,
    suppressed: u64,
    result: String,
}

const PERMISSION_DENIED: &str = "permission-denied";

/// Room kept for an entry beyond the request it records (the result
/// message, the summaries, the user).
const RESERVE: u64 = 64 * 1024;

impl Audit {
    pub fn new(path: PathBuf, journal: Option<Arc<Journal>>) -> Audit {
        Audit { path, journal, limiter: refusals::Limiter::default() }
    }

    /// Makes sure the entry of `request` can be written before the change
    /// is made: the log is writable and room for the entry (the request's
    /// size and `RESERVE` for the rest) is allocated past its end. A full or
    /// read-only disk then refuses the change instead of leaving it
    /// unaudited. Filesystems that cannot reserve are only checked for
    /// being writable.
    pub fn reserve(&self, request: &Request) -> std::io::Result<()> {
        let need = serde_json::to_vec(request).map_or(0, |v| v.len() as u64) + RESERVE;
        let f = self.open()?;
        let end = f.metadata()?.len();
        crate::sys::fs::reserve(&f, end, need).map(|_| ())
    }

    fn open(&self) -> std::io::Result<fs::File> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::OpenOptions::new().create(true).append(true).open(&self.path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// A request that changes something, with the policy in brief before
    /// and after.
    pub fn request(
        &self,
        (request, uid): (&Request, u32),
        reply: &Reply,
        (before, after): (Summary, Summary),
        took: Duration,
    ) {
        self.write(&Answered {
            uid,
            user: crate::sys::users::user_name(uid),
            command: request,
            ok: reply.ok,
            result: &reply.message,
            before,
            after,
            took_ms: took.as_millis(),
        });
    }

    /// Scan detection blocked `net` for `block_for`.
    pub fn scan_block(&self, net: ipnet::IpNet, block_for: Duration, reason: &str, result: &str) {
        self.write(&Blocked {
            user: "vlanguard (scan detection)",
            command: BlockCommand { request: "block", net, for_secs: block_for.as_secs(), reason },
            ok: true,
            result,
        });
    }

    /// A fleet event: a version rejected, etcd lost or reached again.
    pub fn fleet(&self, event: &'static str, version: Option<u64>, ok: bool, result: &str) {
        self.write(&FleetEntry {
            user: "vlanguard (fleet)",
            command: FleetCommand { request: "fleet", event, version },
            ok,
            result,
            before: None,
            after: None,
            took_ms: None,
        });
    }

    /// A fleet version applied, with the policy in brief before and after.
    pub fn fleet_applied(
        &self,
        version: u64,
        result: &str,
        (before, after): (Summary, Summary),
        took: Duration,
    ) {
        self.write(&FleetEntry {
            user: "vlanguard (fleet)",
            command: FleetCommand { request: "fleet", event: "applied", version: Some(version) },
            ok: true,
            result,
            before: Some(before),
            after: Some(after),
            took_ms: Some(took.as_millis()),
        });
    }

    /// A request refused before the daemon acted on it: written within
    /// the limiter's bounds.
    pub fn refused(&mut self, r: Refusal) {
        let (admit, ended) = self.limiter.admit(r.uid, Instant::now());
        if let Some(n) = ended {
            self.refusals_summary(r.uid, n);
        }
        if admit != refusals::Admit::Write {
            return;
        }
        let start: String = r.line.chars().take(200).collect();
        let command = match serde_json::from_str::<serde_json::Value>(&r.line) {
            Ok(v) if v["request"].is_string() => {
                Asked::Request { request: v["request"].clone(), sent: start }
            }
            _ => Asked::Unparsed { unparsed: start },
        };
        self.write(&Refused {
            uid: r.uid,
            user: r.uid.map(crate::sys::users::user_name),
            pid: r.pid,
            command,
            ok: false,
            refused: PERMISSION_DENIED,
            result: &r.reason,
        });
    }

    /// The refusal windows that ended, and the refusals that found the
    /// queue full (`dropped`, reset), each summed in one entry.
    pub fn windows_ended(&mut self, dropped: &AtomicU64) {
        for (uid, n) in self.limiter.ended(Instant::now()) {
            self.refusals_summary(uid, n);
        }
        let dropped = dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.refusals_summary(None, dropped);
        }
    }

    /// Refusals of `uid` counted, not written, in a window that ended.
    fn refusals_summary(&self, uid: Option<u32>, n: u64) {
        self.write(&Suppressed {
            uid,
            user: uid.map(crate::sys::users::user_name),
            ok: false,
            refused: PERMISSION_DENIED,
            suppressed: n,
            result: format!(
                "{n} more requests refused for lack of rights within {} s, not logged one by one",
                refusals::WINDOW.as_secs()
            ),
        });
    }

    /// Appends one entry to the audit log (synced), stamped with the time.
    fn write(&self, entry: &impl Serialize) {
        let mut entry = serde_json::to_value(entry).unwrap_or_default();
        entry["time"] = serde_json::Value::String(crate::time::stamp(SystemTime::now()));
        if let Some(j) = &self.journal {
            j.audit(&entry);
        }
        let write = || -> std::io::Result<()> {
            let mut f = self.open()?;
            std::io::Write::write_all(&mut f, format!("{entry}\n").as_bytes())?;
            f.sync_data()
        };
        if let Err(e) = write() {
            log(&format!("audit log {}: {e}; the entry was {entry}", self.path.display()));
        }
    }
}
