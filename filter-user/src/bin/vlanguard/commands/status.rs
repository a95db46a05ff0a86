//! `vlanguard status` and `stats`: what the daemon reports, as it says it.

use std::{path::Path, process::ExitCode};

use filter_user::control::Request;

use super::ask;

pub fn status(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Status, json)
}

pub fn stats(
    socket: &Path,
    device: Option<String>,
    all: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    ask(socket, &Request::Stats { device, all }, json)
}
