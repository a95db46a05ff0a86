//! The daemon's control socket: one JSON request per line, one JSON reply
//! per line. Callers are identified by the kernel (SO_PEERCRED), not by
//! anything they send.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::edit::{Direction, NewDevice, RuleSpec, Target};

pub mod replies;

pub const DEFAULT_SOCKET: &str = "/run/vlanguard/vlanguard.sock";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Stats {
        device: Option<String>,
        /// Text: every row, zeros included (JSON always has them all).
        #[serde(default)]
        all: bool,
    },
    PolicyShow,
    /// Without `text`: the daemon's own policy file, re-read. `file` names
    /// where `text` came from, for error messages.
    PolicyDiff {
        text: Option<String>,
        file: Option<std::path::PathBuf>,
    },
    PolicyApply {
        text: Option<String>,
        file: Option<std::path::PathBuf>,
    },
    DeviceList,
    DeviceAdd {
        device: NewDevice,
    },
    DeviceRemove {
        name: String,
    },
    Allow {
        target: Target,
        direction: Direction,
        rule: RuleSpec,
    },
    Revoke {
        target: Target,
        direction: Direction,
        rule: RuleSpec,
    },
    /// Recent drop events; with `follow`, then every new one as it comes.
    Events {
        device: Option<String>,
        follow: bool,
    },
    /// Allow rules for what monitor mode would have dropped, as a policy
    /// fragment (`suggest`).
    PolicySuggest {
        device: Option<String>,
        /// Only events of the last this many seconds.
        since_secs: Option<u64>,
    },
    /// Adds the rules of a fragment (as `PolicySuggest` writes it) to the
    /// policy file and applies it. `file` names where `text` came from.
    PolicyMerge {
        text: String,
        file: Option<std::path::PathBuf>,
    },
    /// Makes profile `profile` hold exactly `rules`, imported from the MUD
    /// file at `url` (`vlanguard mud import`), and applies the policy.
    MudImport {
        profile: String,
        url: String,
        rules: Vec<(Direction, RuleSpec)>,
    },
    /// Blocks an address or network (`net`), for `for_secs` or until
    /// unblocked.
    Block {
        net: String,
        for_secs: Option<u64>,
        reason: String,
    },
    Unblock {
        net: String,
    },
    /// Blocklist entries and quarantined devices in force.
    Blocks,
    /// Cuts `device` off from all but the management networks.
    Quarantine {
        device: String,
        for_secs: Option<u64>,
        reason: String,
    },
    Release {
        device: String,
    },
    /// The hosts seen on protected VLANs (`unknown`: only those that are
    /// no declared device; `vlan`: only that VLAN's).
    Inventory {
        #[serde(default)]
        unknown: bool,
        vlan: Option<u16>,
    },
    /// Makes the inventoried host `mac` a device named `name` (MAC-bound,
    /// its addresses in its VLAN's subnets, `profile`'s rules), through the
    /// edit path like `device add`. With `mud`: the profile is imported
    /// from the local MUD file for the MUD URL the host announced.
    InventoryAdopt {
        mac: String,
        name: String,
        profile: Option<String>,
        #[serde(default)]
        mud: Option<crate::inventory::view::MudOptions>,
    },
    /// Detach everything and stop the daemon.
    Detach,
}

impl Request {
    /// Whether the request changes anything (and so goes to the audit log).
    pub fn changes(&self) -> bool {
        matches!(
            self,
            Request::PolicyApply { .. }
                | Request::PolicyMerge { .. }
                | Request::MudImport { .. }
                | Request::Block { .. }
                | Request::Unblock { .. }
                | Request::Quarantine { .. }
                | Request::Release { .. }
                | Request::DeviceAdd { .. }
                | Request::InventoryAdopt { .. }
                | Request::DeviceRemove { .. }
                | Request::Allow { .. }
                | Request::Revoke { .. }
                | Request::Detach
        )
    }

    /// Whether the request edits the policy (refused on fleet routers,
    /// whose policy comes from the site).
    pub fn edits_policy(&self) -> bool {
        matches!(
            self,
            Request::PolicyApply { .. }
                | Request::PolicyMerge { .. }
                | Request::MudImport { .. }
                | Request::DeviceAdd { .. }
                | Request::InventoryAdopt { .. }
                | Request::DeviceRemove { .. }
                | Request::Allow { .. }
                | Request::Revoke { .. }
        )
    }
}

/// How a request failed, for the CLI's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Bad input: unknown device, invalid policy, ... (exit 1)
    Invalid,
    /// The caller may not use the socket (exit 4)
    Denied,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub failure: Option<Failure>,
    /// Human-readable summary or error.
    pub message: String,
    /// Structured result for `--json`: one of the `replies` types, or null
    /// for a failure.
    pub data: serde_json::Value,
}

impl Reply {
    pub fn ok(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply { ok: true, failure: None, message: message.into(), data }
    }
    /// A success carrying one of the `replies` types.
    pub fn with(message: impl Into<String>, data: &impl Serialize) -> Reply {
        // Cannot fail for the `replies` types: plain fields, maps keyed by
        // strings only.
        Reply::ok(message, serde_json::to_value(data).unwrap_or_default())
    }
    pub fn invalid(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            failure: Some(Failure::Invalid),
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
    pub fn denied(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            failure: Some(Failure::Denied),
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
}

/// Why the CLI could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the vlanguard daemon at {socket}: {source} (is `vlanguard run` running? see --socket)"
    )]
    Unreachable { socket: String, source: std::io::Error },
    #[error(
        "permission denied on {socket}: the control socket is for root and the operators' group (run --group)"
    )]
    Denied { socket: String },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon's reply is not understood: {0}")]
    Protocol(#[from] serde_json::Error),
}

fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|source| {
        let socket = socket.display().to_string();
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ClientError::Denied { socket }
        } else {
            ClientError::Unreachable { socket, source }
        }
    })
}

/// Sends one request and waits (bounded) for its reply.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let mut stream = connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(serde_json::from_str(&reply)?)
}

/// Sends one request and hands every line of the answer (the reply, then
/// streamed events) to `line` until the daemon closes or `line` says stop.
pub fn stream(
    socket: &Path,
    request: &Request,
    mut line: impl FnMut(&str) -> bool,
) -> Result<(), ClientError> {
    let mut stream = connect(socket)?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    for l in BufReader::new(stream).lines() {
        if !line(&l?) {
            break;
        }
    }
    Ok(())
}

/// Whether `uid`/`gid`/`pid` may use the socket: root, or a member of
/// `group` (primary or supplementary).
pub fn authorised(uid: u32, gid: u32, pid: Option<i32>, group: Option<u32>) -> bool {
    if uid == 0 {
        return true;
    }
    let Some(group) = group else { return false };
    if gid == group {
        return true;
    }
    // Supplementary groups of the calling process.
    pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("Groups:")).map(|groups| {
                groups.split_whitespace().filter_map(|g| g.parse::<u32>().ok()).any(|g| g == group)
            })
        })
        .unwrap_or(false)
}
