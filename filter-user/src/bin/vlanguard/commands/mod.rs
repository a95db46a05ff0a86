//! What each command group does, one file per group; `ask` is the round
//! trip most of them are.

pub mod actions;
pub mod device;
pub mod events;
pub mod fleet;
pub mod generate;
pub mod inventory;
pub mod mud;
pub mod policy;
pub mod program;
pub mod rules;
pub mod run;
pub mod status;

use std::{path::Path, process::ExitCode};

use filter_user::control::{self, Reply, Request};

use crate::text;

/// Sends `request` to the daemon and prints the answer.
pub fn ask(socket: &Path, request: &Request, json: bool) -> anyhow::Result<ExitCode> {
    let reply = control::call(socket, request)?;
    if reply.ok {
        text::reply(&reply, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    Ok(refusal(&reply))
}

/// Reports a reply that refused the request; its exit code.
pub fn refusal(reply: &Reply) -> ExitCode {
    text::notice(&reply.message);
    crate::refused(reply.failure)
}
