//! `vlanguard run`: the daemon, on a single-threaded runtime.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use filter_user::daemon::{self, Daemon};

use crate::args::RunArgs;

pub fn run(args: RunArgs, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let config = config(args, socket)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async { Daemon::start(config)?.serve().await })?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's configuration from the command line; "off" turns the
/// events log and the metrics server off.
fn config(args: RunArgs, socket: PathBuf) -> anyhow::Result<daemon::Config> {
    Ok(daemon::Config {
        policy: args.config,
        ifaces: args.ifaces,
        mode: args.xdp_mode,
        vlan_offload: args.vlan_offload,
        pin_dir: args.pin_dir,
        socket,
        group: args.group,
        audit_log: args.audit_log,
        events_log: (args.events_log != "off").then(|| PathBuf::from(&args.events_log)),
        metrics_addr: match args.metrics_addr.as_str() {
            "off" => None,
            addr => {
                Some(addr.parse().with_context(|| {
                    format!("--metrics-addr {addr:?}: want ADDRESS:PORT or off")
                })?)
            }
        },
        stats_interval: args.stats_interval,
        device_capacity: args.device_capacity,
        inventory_db: (args.inventory_db != "off").then(|| PathBuf::from(&args.inventory_db)),
        mud_dir: args.mud_dir,
        inventory_capacity: args.inventory_capacity as usize,
        fleet: fleet_config(
            &args.etcd,
            args.site,
            args.fleet_root,
            args.fleet_state,
            args.router_name,
        )?,
    })
}

fn fleet_config(
    etcd: &crate::args::EtcdArgs,
    site: Option<String>,
    root: Option<PathBuf>,
    state_dir: PathBuf,
    router: Option<String>,
) -> anyhow::Result<Option<filter_user::fleet::Config>> {
    if etcd.fleet_endpoints.is_none() {
        return Ok(None);
    }
    let (Some(site), Some(trusted_root)) = (site, root) else {
        anyhow::bail!("--fleet-endpoints needs --site and --fleet-root");
    };
    let router = match router {
        Some(r) => r,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .context("the host name (or give --router-name)")?,
    };
    filter_user::fleet::Site::new(&router).context("--router-name")?;
    Ok(Some(filter_user::fleet::Config {
        endpoints: crate::commands::fleet::endpoints(etcd)?,
        site: filter_user::fleet::Site::new(&site)?,
        router,
        trusted_root,
        state_dir,
    }))
}
