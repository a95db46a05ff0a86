//! `vlanguard`: the operator's command.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use filter_user::{
    Filter, PROGRAM_OBJECT,
    attach::{AttachMode, ifindex},
    compile, read_policy, report,
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
    /// Enforce a policy on interfaces until stopped (Ctrl-C or SIGTERM),
    /// printing per-device counters. This version keeps nothing pinned:
    /// stopping it detaches the filter. Needs root.
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
        Command::Run { config, ifaces, xdp_mode, stats_interval } => {
            enforce(&config, &ifaces, xdp_mode, stats_interval)
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

/// `vlanguard run`: everything is checked before the kernel is touched, the
/// policy is in the maps before the program is attached (no window without
/// filtering), and stopping detaches.
fn enforce(
    config: &std::path::Path,
    ifaces: &[String],
    mode: AttachMode,
    stats_interval: u64,
) -> anyhow::Result<()> {
    let policy = read_policy(config)?;
    for iface in ifaces {
        ifindex(iface)?;
    }
    let mut untagged = Vec::new();
    for (name, vlan) in &policy.interfaces {
        let index = ifindex(name).with_context(|| {
            format!("{}: [[interface]] {name:?} (untagged VLAN {vlan})", config.display())
        })?;
        untagged.push((index, *vlan));
    }
    let compiled = compile(&policy);

    let mut filter = Filter::load(PROGRAM_OBJECT).context("loading the XDP program")?;
    let generation = filter.apply(&compiled, &untagged)?;
    for iface in ifaces {
        filter.attach(iface, mode)?;
    }
    eprintln!(
        "vlanguard: enforcing {} (generation {generation}, {} devices) on {} ({mode:?} XDP)",
        config.display(),
        policy.devices.len(),
        ifaces.join(", "),
    );

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let period = Duration::from_secs(stats_interval.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick(), if stats_interval > 0 => {
                    print!("{}", report::device_table(&policy, &filter.device_stats()?));
                }
            }
        }
        anyhow::Ok(())
    })?;

    println!("{}", report::device_table(&policy, &filter.device_stats()?));
    println!("{}", report::global_table(&filter.global_stats()?));
    eprintln!("vlanguard: stopping; detaching from {}", ifaces.join(", "));
    Ok(())
}
