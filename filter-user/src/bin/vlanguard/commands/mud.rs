//! `vlanguard mud show` and `mud import`: the file is read and checked
//! here (`filter_user::mud`); an import goes to the daemon as a profile.

use std::{path::Path, process::ExitCode};

use filter_user::{
    control::Request,
    mud::{self, Conversion, Mud},
};

use super::ask;
use crate::{
    args::{MudArgs, MudCommand},
    text,
};

pub fn mud(socket: &Path, command: MudCommand) -> anyhow::Result<ExitCode> {
    match command {
        MudCommand::Show { args } => {
            let (parsed, conversion) = read(&args)?;
            text::mud(&parsed, &conversion);
            Ok(ExitCode::SUCCESS)
        }
        MudCommand::Import { args, profile, accept_stricter, json } => {
            let (parsed, conversion) = read(&args)?;
            let rules = conversion.into_import(&args.file, accept_stricter)?;
            ask(socket, &Request::MudImport { profile, url: parsed.url, rules }, json)
        }
    }
}

/// Reads, checks the signature of, and converts a MUD file.
fn read(args: &MudArgs) -> anyhow::Result<(Mud, Conversion)> {
    let signed = args.signature.as_deref().zip(args.trust_anchor.as_deref());
    let data = mud::read_file(&args.file, signed)?;
    if signed.is_some() {
        text::signature_verified();
    }
    Ok(mud::check_file(&args.file, data, &args.abstractions)?)
}
