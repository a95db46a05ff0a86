//! `vlanguard`: the daemon and the operator's command. This file only
//! dispatches: `args` is the command line, `commands` what each command
//! group does, `text` what the commands print, `top` the live view (which
//! draws its own screen).

mod args;
mod commands;
mod text;
mod top;

use std::process::ExitCode;

use clap::Parser as _;
use filter_user::control::{ClientError, Failure};

use crate::{
    args::{Cli, Command},
    commands::{
        actions, device, events, fleet, generate, inventory, mud, policy, program, rules, run,
        status,
    },
};

/// Exit codes scripts can rely on (the `--help` text lists them).
const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_DENIED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            text::notice(format_args!("{e:#}"));
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Unreachable { .. }) => ExitCode::from(EXIT_UNREACHABLE),
                Some(ClientError::Denied { .. }) => ExitCode::from(EXIT_DENIED),
                _ => ExitCode::from(EXIT_REFUSED),
            }
        }
    }
}

/// The exit code of a request the daemon refused.
fn refused(failure: Option<Failure>) -> ExitCode {
    ExitCode::from(match failure {
        Some(Failure::Denied) => EXIT_DENIED,
        _ => EXIT_REFUSED,
    })
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let socket = cli.socket;
    match cli.command {
        Command::Run(args) => run::run(*args, socket),
        Command::Status { json } => status::status(&socket, json),
        Command::Stats { device, all, json } => status::stats(&socket, device, all, json),
        Command::Top => {
            top::run(&socket)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { device, follow, json } => events::events(&socket, device, follow, json),
        Command::Inventory { command, unknown, vlan, json } => {
            inventory::inventory(&socket, command, unknown, vlan, json)
        }
        Command::Generate { man, completions } => generate::generate(man, completions),
        Command::Policy { command } => policy::policy(&socket, command),
        Command::Fleet { command } => fleet::fleet(command),
        Command::Mud { command } => mud::mud(&socket, command),
        Command::Block { net, duration, reason, json } => {
            actions::block(&socket, net, duration, reason, json)
        }
        Command::Unblock { net, json } => actions::unblock(&socket, net, json),
        Command::Blocks { json } => actions::blocks(&socket, json),
        Command::Quarantine { device, duration, reason, json } => {
            actions::quarantine(&socket, device, duration, reason, json)
        }
        Command::Release { device, json } => actions::release(&socket, device, json),
        Command::Device { command } => device::device(&socket, command),
        Command::Allow(rule) => rules::allow(&socket, rule),
        Command::Revoke(rule) => rules::revoke(&socket, rule),
        Command::Detach { pin_dir } => program::detach(&socket, &pin_dir),
        Command::Check { object } => program::check(object.as_deref()),
    }
}
