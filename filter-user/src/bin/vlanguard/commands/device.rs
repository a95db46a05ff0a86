//! `vlanguard device list|add|remove`: the daemon edits the policy file.

use std::{path::Path, process::ExitCode};

use filter_user::{control::Request, edit::NewDevice};

use super::ask;
use crate::args::DeviceCommand;

pub fn device(socket: &Path, command: DeviceCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeviceCommand::List { json } => ask(socket, &Request::DeviceList, json),
        DeviceCommand::Add { name, vlan, ips, mac, profile } => {
            let device = NewDevice { name, vlan, ip: ips, mac, profile };
            ask(socket, &Request::DeviceAdd { device }, false)
        }
        DeviceCommand::Remove { name } => ask(socket, &Request::DeviceRemove { name }, false),
    }
}
