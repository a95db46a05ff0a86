//! `vlanguard`: the operator's command.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filter_user::{
    Filter, PROGRAM_OBJECT,
    attach::AttachMode,
    compile,
    daemon::{self, Daemon},
    pins::{DEFAULT_PIN_DIR, PinDir},
    read_policy,
};

/// vlanguard: an XDP firewall for the VLANs that hold medical and IoT
/// devices. Traffic to and from a protected VLAN is dropped unless the
/// policy file allows it, per device.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: enforce the policy file on the interfaces. The
    /// program, maps and links are pinned under --pin-dir, so the filter
    /// keeps enforcing when the daemon stops or crashes; a new daemon adopts
    /// them without a gap. SIGHUP reloads the file (an invalid file is
    /// reported and the running policy stays). Needs root.
    Run {
        /// The policy file (TOML); see examples/hospital.toml.
        #[arg(long)]
        config: PathBuf,
        /// Interface to filter (repeat for several): the uplink and the
        /// trunk or access ports in front of the device VLANs.
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Native runs in the driver at line rate; generic works on any
        /// interface, slower.
        #[arg(long, value_enum, default_value = "native")]
        xdp_mode: AttachMode,
        /// Print counters every this many seconds (0: only when stopping).
        #[arg(long, default_value_t = 0)]
        stats_interval: u64,
        /// Where program, maps and links are pinned (on a BPF filesystem).
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Remove the filter completely: detach from every interface and delete
    /// the pinned program and maps. Stop the daemon first.
    Detach {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
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
        Command::Run { config, ifaces, xdp_mode, stats_interval, pin_dir } => {
            let daemon = Daemon::start(daemon::Config {
                policy: config,
                ifaces,
                mode: xdp_mode,
                pin_dir,
                stats_interval,
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(daemon.serve())
        }
        Command::Detach { pin_dir } => {
            let pins = PinDir::new(&pin_dir);
            if !pins.root().exists() {
                anyhow::bail!("nothing to detach: {} does not exist", pin_dir.display());
            }
            let lock = pins.lock()?;
            let ifaces = pins.detach_all(&lock)?;
            println!(
                "detached from {}; removed {}",
                if ifaces.is_empty() { "no interface".to_string() } else { ifaces.join(", ") },
                pin_dir.display()
            );
            Ok(())
        }
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
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
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
