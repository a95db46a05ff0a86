//! `vlanguard inventory` and `inventory adopt`: the daemon lists its
//! inventory and makes a host a device.

use std::{path::Path, process::ExitCode};

use filter_user::{control::Request, inventory::view::MudOptions};

use super::ask;
use crate::args::InventoryCommand;

pub fn inventory(
    socket: &Path,
    command: Option<InventoryCommand>,
    unknown: bool,
    vlan: Option<u16>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(InventoryCommand::Adopt { mac, name, profile, mud, abstractions, accept_stricter }) =
        command
    else {
        return ask(socket, &Request::Inventory { unknown, vlan }, json);
    };
    // The daemon reads the MUD file: it is in the daemon's --mud-dir.
    let mud = mud.then_some(MudOptions { abstractions, accept_stricter });
    ask(socket, &Request::InventoryAdopt { mac, name, profile, mud }, false)
}
