//! `vlanguard`: the operator's command.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filter_user::{Filter, PROGRAM_OBJECT, compile, read_policy};

/// vlanguard: an XDP firewall for the VLANs that hold medical and IoT devices.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Load the XDP program into the kernel (verifier included) without
    /// attaching it, and report its size. Needs root.
    Check {
        /// Load this object file instead of the embedded program (for
        /// checking other builds of it).
        #[arg(long, hide = true)]
        object: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a policy file and report what it compiles to. Changes nothing.
    Validate {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vlanguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Policy { command: PolicyCommand::Validate { file } } => {
            let resolved = read_policy(&file)?;
            let c = compile(&resolved);
            println!(
                "{}: valid: {} vlans, {} devices, {} device addresses, {} rule sets \
                 ({} peer entries, {} port entries)",
                file.display(),
                c.vlans.len(),
                c.devices.len(),
                c.devices.iter().map(|d| d.addrs.len()).sum::<usize>(),
                c.rule_sets.len(),
                c.peer_entries(),
                c.port_entries(),
            );
            Ok(())
        }
        Command::Check { object } => {
            let bytes = match &object {
                Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                None => PROGRAM_OBJECT.to_vec(),
            };
            let mut filter = Filter::load(&bytes)?;
            let info = filter.program().info()?;
            println!(
                "program loaded: {} instructions verified, {} bytes translated",
                info.verified_instruction_count().unwrap_or_default(),
                info.size_translated().unwrap_or_default(),
            );
            Ok(())
        }
    }
}
