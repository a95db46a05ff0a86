//! The operator's actions that override the policy: `block`, `unblock`,
//! `blocks`, `quarantine`, `release`. The daemon writes them to the maps.

use std::{path::Path, process::ExitCode, time::Duration};

use filter_user::control::Request;

use super::ask;

pub fn block(
    socket: &Path,
    net: String,
    duration: Option<Duration>,
    reason: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Block { net, for_secs: seconds(duration), reason }, json)
}

pub fn unblock(socket: &Path, net: String, json: bool) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Unblock { net }, json)
}

pub fn blocks(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Blocks, json)
}

pub fn quarantine(
    socket: &Path,
    device: String,
    duration: Option<Duration>,
    reason: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Quarantine { device, for_secs: seconds(duration), reason }, json)
}

pub fn release(socket: &Path, device: String, json: bool) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Release { device }, json)
}

/// Whole seconds, at least one: a sub-second `--for` still expires, rather
/// than meaning "forever" as no duration does.
fn seconds(duration: Option<Duration>) -> Option<u64> {
    duration.map(|d| d.as_secs().max(1))
}
