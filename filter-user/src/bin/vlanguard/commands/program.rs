//! The program in the kernel itself: `vlanguard detach` (through a running
//! daemon, or here when none runs) and `check` (load and verify only).

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use filter_user::{
    Filter, PROGRAM_OBJECT,
    control::{self, ClientError, Request},
    datapath::pins::PinDir,
};

use crate::text;

pub fn detach(socket: &Path, pin_dir: &Path) -> anyhow::Result<ExitCode> {
    // A running daemon detaches and stops; otherwise do it here.
    match control::call(socket, &Request::Detach) {
        Ok(reply) if reply.ok => {
            text::message(&reply.message);
            return Ok(ExitCode::SUCCESS);
        }
        Ok(reply) => return Ok(super::refusal(&reply)),
        Err(ClientError::Unreachable { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let pins = PinDir::new(pin_dir);
    if !pins.root().exists() {
        anyhow::bail!("nothing to detach: {} does not exist", pin_dir.display());
    }
    let lock = pins.lock()?;
    let ifaces = pins.detach_all(&lock)?;
    text::detached(&ifaces, pin_dir);
    Ok(ExitCode::SUCCESS)
}

pub fn check(object: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = match object {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => PROGRAM_OBJECT.to_vec(),
    };
    let mut filter = Filter::load(&bytes)?;
    let info = filter.program().info()?;
    text::checked(
        info.verified_instruction_count().unwrap_or_default(),
        info.size_translated().unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}
