//! Drop events, scan detections and audit records (operator changes,
//! blocks and quarantines, refusals) to the system journal with structured
//! fields, for a SIEM that collects from journald or syslog. journald's
//! native protocol (systemd's "Native Journal Protocol"): one datagram per
//! entry on `/run/systemd/journal/socket`, `KEY=value` lines, a value with a
//! newline sent as `KEY\n`, its length (64-bit little endian), the bytes and
//! `\n`. The JSON files stay; README "Journal fields" lists the fields.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
};

use crate::events::Event;

/// journald's socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

pub struct Journal {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Journal {
    /// The journal when the daemon runs under systemd (which sets
    /// `JOURNAL_STREAM` or `INVOCATION_ID` for its services) and journald
    /// listens. `VLANGUARD_JOURNAL_SOCKET` names another socket (tests,
    /// containers that forward one), and then it is used in any case.
    pub fn detect() -> Option<Journal> {
        if let Some(path) = std::env::var_os("VLANGUARD_JOURNAL_SOCKET") {
            return Journal::at(Path::new(&path)).ok();
        }
        let under_systemd = ["JOURNAL_STREAM", "INVOCATION_ID"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !under_systemd || !Path::new(SOCKET).exists() {
            return None;
        }
        Journal::at(Path::new(SOCKET)).ok()
    }

    fn at(path: &Path) -> io::Result<Journal> {
        let sock = UnixDatagram::unbound()?;
        // A journal that does not keep up costs entries, never a stalled
        // daemon (a blocking send waits for the reader's queue).
        sock.set_nonblocking(true)?;
        Ok(Journal { sock, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one entry. Best effort: a journal that is away or full costs
    /// the entry, never the daemon (the JSON files have it).
    pub fn send(&self, fields: &[(&str, String)]) {
        let _ = self.sock.send_to(&encode(fields), &self.path);
    }

    /// A drop event or a scan detection.
    pub fn event(&self, e: &Event) {
        let scan = e.reason.starts_with("scan");
        let mut fields = vec![
            ("MESSAGE", message(e)),
            // notice for a sampled drop, warning for a detected scan.
            ("PRIORITY", if scan { "4" } else { "5" }.to_string()),
            ("SYSLOG_IDENTIFIER", "vlanguard".to_string()),
            ("VLANGUARD_EVENT", if scan { "scan" } else { "drop" }.to_string()),
            ("VLANGUARD_REASON", e.reason.clone()),
            ("VLANGUARD_SRC", e.src.clone()),
        ];
        let optional = [
            ("VLANGUARD_VERDICT", e.verdict.clone()),
            ("VLANGUARD_DEVICE", e.device.clone().unwrap_or_default()),
            ("VLANGUARD_DIRECTION", e.direction.map_or("", |d| d.name()).to_string()),
            ("VLANGUARD_TO_DEVICE", e.to_device.clone().unwrap_or_default()),
            ("VLANGUARD_DST", e.dst.clone()),
            ("VLANGUARD_PROTO", e.proto.clone()),
            ("VLANGUARD_INTERFACE", e.interface.clone()),
        ];
        fields.extend(optional.into_iter().filter(|(_, v)| !v.is_empty()));
        if !scan {
            fields.push(("VLANGUARD_VLAN", e.vlan.to_string()));
            fields.push(("VLANGUARD_SPORT", e.sport.to_string()));
            fields.push(("VLANGUARD_DPORT", e.dport.to_string()));
        }
        self.send(&fields);
    }

    /// An audit record (as written to the audit log).
    pub fn audit(&self, entry: &serde_json::Value) {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        let request = text(&entry["command"]["request"]);
        let refused = text(&entry["refused"]);
        let ok = entry["ok"].as_bool().unwrap_or(false);
        let user = text(&entry["user"]);
        let result = text(&entry["result"]);
        let message = format!(
            "audit: {} by {user}: {}{}",
            if request.is_empty() { "request".to_string() } else { request.clone() },
            if !refused.is_empty() {
                "refused, "
            } else if ok {
                ""
            } else {
                "failed, "
            },
            result.lines().next().unwrap_or_default()
        );
        let mut fields = vec![
            ("MESSAGE", message),
            ("PRIORITY", if ok { "5" } else { "4" }.to_string()),
            ("SYSLOG_IDENTIFIER", "vlanguard".to_string()),
            ("VLANGUARD_EVENT", "audit".to_string()),
            ("VLANGUARD_OK", ok.to_string()),
            ("VLANGUARD_USER", user),
            ("VLANGUARD_RESULT", result),
            ("VLANGUARD_COMMAND", entry["command"].to_string()),
        ];
        let optional = [
            ("VLANGUARD_REQUEST", request),
            ("VLANGUARD_UID", text(&entry["uid"])),
            ("VLANGUARD_REFUSED", refused),
            ("VLANGUARD_REVISION", text(&entry["after"]["revision"])),
        ];
        fields.extend(optional.into_iter().filter(|(_, v)| !v.is_empty()));
        self.send(&fields);
    }
}

fn message(e: &Event) -> String {
    if e.reason.starts_with("scan") {
        return format!("scan detected from {}: {}", e.src, e.reason);
    }
    let device = match (&e.device, &e.direction) {
        (Some(d), Some(dir)) => format!(" ({d}, {})", dir.name()),
        _ => String::new(),
    };
    format!(
        "{} {} {}:{} -> {}:{} on {} vlan {}{device}: {}",
        if e.verdict.is_empty() { "drop" } else { &e.verdict },
        e.proto,
        e.src,
        e.sport,
        e.dst,
        e.dport,
        e.interface,
        e.vlan,
        e.reason
    )
}

/// The native protocol's encoding of one entry.
pub fn encode(fields: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// Reads an entry back (the receiving side of `encode`; tests).
pub fn decode(mut data: &[u8]) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|b| *b == b'\n')?;
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.push((
                String::from_utf8(line[..eq].to_vec()).ok()?,
                String::from_utf8(line[eq + 1..].to_vec()).ok()?,
            ));
            data = &data[end + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).ok()?;
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = String::from_utf8(rest.get(8..8 + len)?.to_vec()).ok()?;
            fields.push((key, value));
            data = rest.get(8 + len + 1..)?;
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_newlines_are_length_prefixed() {
        let fields = vec![("MESSAGE", "one line".to_string()), ("X", "two\nlines".to_string())];
        let bytes = encode(&fields);
        assert!(bytes.starts_with(b"MESSAGE=one line\nX\n"));
        assert_eq!(&bytes[19..27], &9u64.to_le_bytes());
        let back = decode(&bytes).expect("decodes");
        assert_eq!(
            back,
            vec![("MESSAGE".into(), "one line".into()), ("X".into(), "two\nlines".into())]
        );
    }
}
