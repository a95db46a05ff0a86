//! Starting: everything that can be checked is checked before the kernel
//! is touched; then the filter is adopted or loaded, the policy applied and
//! only then new interfaces attached (never a moment without filtering). A
//! start refused on the way leaves nothing it created behind.

use std::{collections::BTreeMap, fs, sync::Arc, time::SystemTime};

use anyhow::Context as _;

use super::{
    Config, Daemon, audit::Audit, event_hub::EventHub, learn, log, metrics::bind_metrics,
    server::Server, untagged_ifaces,
};
use crate::{
    Filter, Resolved, compile,
    datapath::attach::ifindex,
    datapath::offload::TagPath,
    datapath::pins::{Lock, Opened, PinDir},
    read_policy,
};

/// What `start` checked before touching anything.
struct Checked {
    policy: Resolved,
    untagged: Vec<(u32, u16)>,
    group: Option<u32>,
}

/// The filter in force with the policy applied.
struct Opening {
    filter: Filter,
    opened: Opened,
    revision: u64,
}

impl Daemon {
    /// Starts the daemon as the module says. Must run inside a tokio
    /// runtime (the socket is bound here).
    pub fn start(mut config: Config) -> anyhow::Result<Daemon> {
        let fleet_note = match &config.fleet {
            Some(f) => {
                f.check()?;
                let (file, note) = super::fleet::starting_policy(f, &config.policy);
                config.policy = file;
                Some(note)
            }
            None => None,
        };
        let Checked { policy, untagged, group } = check(&config)?;
        let pins = PinDir::new(&config.pin_dir);
        let lock = pins.lock()?;
        let (lock, server, metrics) = bind(&config, group, &pins, lock)?;
        let (mut inventory, warnings) = crate::inventory::Inventory::open(
            config.inventory_db.as_deref(),
            config.inventory_capacity,
        );
        let learning = learned(&mut inventory, &policy);
        let Opening { mut filter, opened, revision } =
            open(&config, &pins, &lock, &learning.bindings.merged(&policy), &untagged)?;
        let adopted = opened != Opened::Loaded;
        // The policy file's parse is freed now.
        crate::sys::process::trim_heap();
        let (attached, tags) = match attach(&config, &pins, &mut filter) {
            Ok(a) => a,
            Err(e) => {
                // A fresh start that cannot attach everywhere leaves
                // nothing behind; an adopted filter keeps enforcing. The
                // socket goes either way: no daemon answers it.
                let _ = fs::remove_file(&config.socket);
                if !adopted {
                    drop(filter);
                    let _ = pins.detach_all(&lock);
                }
                return Err(e);
            }
        };
        let capacity_note = capacity_note(&config, &filter);
        // After the first apply: the point is for the next one.
        if let Some(point) = crate::failpoints::arm()? {
            log(&format!("test build: the next pass through {point} kills this daemon"));
        }
        // Reconcile: interfaces no longer configured stop being filtered.
        for iface in pins.linked_ifaces() {
            if !config.ifaces.contains(&iface) {
                pins.remove_link(&iface)?;
                log(&format!("detached from {iface}: not in --iface any more"));
            }
        }
        log(&format!(
            "{} program in {}; policy {} applied as revision {revision} ({} devices); \
             interfaces {} (newly attached: {}); socket {}{capacity_note}",
            opened_text(opened),
            pins.root().display(),
            config.policy.display(),
            policy.devices.len(),
            config.ifaces.join(", "),
            if attached.is_empty() { "none".to_string() } else { attached.join(", ") },
            config.socket.display(),
        ));
        let journal = crate::journal::Journal::detect().map(Arc::new);
        if let Some(j) = &journal {
            log(&format!(
                "system journal: drop events, scan detections and audit records go to {} too",
                j.path().display()
            ));
        }
        for w in warnings {
            log(&format!("inventory: {w}"));
        }
        if let Some(note) = fleet_note {
            log(&note);
        }
        let fleet = config.fleet.clone();
        let interfaces = config.ifaces.iter().map(|i| (i.clone(), Default::default())).collect();
        Ok(Daemon {
            inventory,
            learning,
            events: EventHub::new(&policy, journal.clone()),
            audit: Audit::new(config.audit_log.clone(), journal),
            config,
            pins,
            lock,
            tags,
            filter,
            revision,
            server,
            metrics,
            applied_at: SystemTime::now(),
            last_apply_ok: true,
            interfaces,
            policy,
            fleet: fleet.map(super::fleet::Fleet::new),
        })
    }
}

/// The addresses learned before, as the inventory database kept them,
/// those the policy still supports; the rest are forgotten.
fn learned(inventory: &mut crate::inventory::Inventory, policy: &Resolved) -> learn::Learning {
    let kept = inventory.bindings().unwrap_or_else(|e| {
        log(&format!("inventory: learned addresses: {e}"));
        Vec::new()
    });
    let mut bindings = crate::learning::Bindings::new(kept);
    for gone in bindings.retain_valid(policy) {
        log(&format!(
            "forgetting the address {} learned for device {}: the policy no longer allows it",
            gone.addr, gone.device
        ));
        inventory.binding_changed(gone.addr, None);
    }
    learn::Learning::new(bindings)
}

/// Privileges, the policy, the interfaces, the group: all before the
/// kernel or the pin directory is touched.
fn check(config: &Config) -> anyhow::Result<Checked> {
    crate::privileges::check().map_err(|e| anyhow::anyhow!(e))?;
    let policy = read_policy(&config.policy)?;
    for iface in &config.ifaces {
        ifindex(iface)?;
    }
    let untagged = untagged_ifaces(&config.policy, &policy)?;
    let group = match &config.group {
        Some(name) => Some(crate::sys::users::group_id(name).with_context(|| {
            format!("group {name:?} does not exist (create it, or leave out --group)")
        })?),
        None => None,
    };
    Ok(Checked { policy, untagged, group })
}

/// The control socket and the metrics listener. A failure leaves the
/// directories as they were before anything is pinned.
fn bind(
    config: &Config,
    group: Option<u32>,
    pins: &PinDir,
    lock: Lock,
) -> anyhow::Result<(Lock, Server, Option<tokio::net::TcpListener>)> {
    let server = match Server::bind(&config.socket, group) {
        Ok(s) => s,
        Err(e) => {
            pins.abandon(lock);
            return Err(e);
        }
    };
    match config.metrics_addr.map(bind_metrics).transpose() {
        Ok(m) => Ok((lock, server, m)),
        Err(e) => {
            let _ = fs::remove_file(&config.socket);
            pins.abandon(lock);
            Err(e)
        }
    }
}

/// The pinned filter adopted (or upgraded), else a fresh one loaded, with
/// the policy applied. A fresh load that fails leaves no pins.
fn open(
    config: &Config,
    pins: &PinDir,
    lock: &Lock,
    policy: &Resolved,
    untagged: &[(u32, u16)],
) -> anyhow::Result<Opening> {
    let fresh = !pins.has_program();
    let capacity = config.device_capacity.unwrap_or_else(crate::datapath::default_device_capacity);
    let opened = pins.open_filter(lock, capacity).map_err(anyhow::Error::from).and_then(
        |(mut filter, opened)| {
            filter.apply(&compile(policy), untagged)?;
            let revision = filter.revision()?;
            Ok(Opening { filter, opened, revision })
        },
    );
    opened.inspect_err(|_| {
        let _ = fs::remove_file(&config.socket);
        if fresh {
            let _ = pins.detach_all(lock);
        }
    })
}

/// Attaches to every `--iface` not attached yet: the interfaces newly
/// attached, and how the filter sees VLAN tags on each.
fn attach(
    config: &Config,
    pins: &PinDir,
    filter: &mut Filter,
) -> anyhow::Result<(Vec<String>, BTreeMap<String, TagPath>)> {
    let mut attached = Vec::new();
    let mut tags = BTreeMap::new();
    for iface in &config.ifaces {
        let (now, path) = pins.ensure_link(filter, iface, config.mode, config.vlan_offload)?;
        if now {
            attached.push(iface.clone());
        }
        match path {
            TagPath::InFrame => {}
            TagPath::Metadata => log(&format!(
                "{iface}: the NIC takes 802.1Q tags out of received frames (rx VLAN \
                 offload on): enforcing at TC ingress, where the tag stays with the \
                 packet (--vlan-offload=read)"
            )),
            TagPath::OffloadDisabled => log(&format!(
                "{iface}: turned the NIC's rx VLAN offload off (--vlan-offload=disable) \
                 so that XDP sees 802.1Q tags in the frame"
            )),
        }
        tags.insert(iface.clone(), path);
    }
    Ok((attached, tags))
}

/// Why `--device-capacity` did not take, if it did not.
fn capacity_note(config: &Config, filter: &Filter) -> String {
    let capacity = filter.device_capacity();
    match config.device_capacity {
        Some(wanted) if wanted != capacity => format!(
            "; --device-capacity {wanted} not applied: the pinned filter's counters hold \
             {capacity} devices, fixed when it was first loaded (`vlanguard detach` and start \
             again to change it)"
        ),
        _ => String::new(),
    }
}

/// How the filter was opened, as the start line says it.
fn opened_text(opened: Opened) -> String {
    match opened {
        Opened::Loaded => "loaded and pinned the".to_string(),
        Opened::Adopted => "adopted the pinned".to_string(),
        Opened::Upgraded { old, new, carried_flows } => format!(
            "replaced the pinned program {old:016x} with this version's {new:016x} (links \
             updated in place, maps kept{}) as the",
            if carried_flows > 0 {
                format!("; {carried_flows} open flow(s) carried over into the new flow cache")
            } else {
                String::new()
            }
        ),
    }
}
