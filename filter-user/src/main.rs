//! `vlanguard`: the operator's command.

use std::{path::PathBuf, process::ExitCode};

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
    Check,
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
        Command::Check => {
            let mut filter = Filter::load(PROGRAM_OBJECT)?;
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
