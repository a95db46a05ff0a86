//! `vlanguard run`: the daemon. It owns the pin directory while it runs,
//! adopts what an earlier daemon pinned, applies the policy file, serves the
//! operator CLI on a Unix socket, follows SIGHUP reloads, and on SIGTERM
//! exits with the filter still enforcing.
//!
//! `Daemon` is the state and `serve` a select loop that hands each wake-up
//! to the part whose job it is (docs/ARCHITECTURE.md §5):
//!
//! - `start`: checks, binds, opens or adopts the filter, attaches;
//! - `apply`: the one way a policy comes into force (propose → diff →
//!   commit), for SIGHUP, requests and the DNS refresh alike;
//! - `requests`: one handler per request group; changes are audit-logged;
//! - `event_hub`: drop events from the ring buffer to followers, the events
//!   log, the journal and scan detection;
//! - `learn`: addresses of devices declared by MAC alone, learned;
//! - `fleet`: fleet mode: verified versions applied, rejections said;
//! - `interfaces`: `--iface`s deleted, re-created or renamed: attached
//!   again, their gaps kept;
//! - `audit`: the audit log;
//! - `server`: the control socket and its connections;
//! - `metrics`: `/metrics`, and the counters as named samples.

mod apply;
mod audit;
mod event_hub;
pub mod fleet;
mod interfaces;
mod learn;
mod metrics;
mod requests;
mod server;
mod start;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, oneshot},
    task::{JoinHandle, JoinSet},
    time::Interval,
};

use crate::{
    Filter, Resolved,
    datapath::attach::{AttachMode, ifindex},
    datapath::offload::TagPath,
    datapath::pins::{Lock, PinDir},
    datapath::program_log,
    refusals::Refusal,
    report, scan,
};

/// How often every `--iface` is checked besides the kernel's notifications.
const LINK_CHECK: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Config {
    pub policy: PathBuf,
    pub ifaces: Vec<String>,
    pub mode: AttachMode,
    pub vlan_offload: crate::datapath::offload::VlanOffload,
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    /// Members of this group may use the socket (root always may).
    pub group: Option<String>,
    pub audit_log: PathBuf,
    /// Drop events, one JSON object per line; None: not logged.
    pub events_log: Option<PathBuf>,
    /// Where `/metrics` is served (Prometheus); None: not at all.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub stats_interval: u64,
    /// The inventory's database (`None`: kept in memory only).
    pub inventory_db: Option<PathBuf>,
    /// Hosts the inventory keeps at most.
    pub inventory_capacity: usize,
    /// MUD files by their `mud-url`, for `inventory` and `inventory adopt
    /// --mud` (`inventory::view::MUD_DIR` by default).
    pub mud_dir: PathBuf,
    /// Devices the per-device counters hold when the filter is first
    /// loaded (`datapath::default_device_capacity` if not given).
    pub device_capacity: Option<u32>,
    /// Fleet mode: the policy comes from a site in etcd (`fleet`).
    pub fleet: Option<crate::fleet::Config>,
}

/// The running daemon's state.
pub struct Daemon {
    pub config: Config,
    pub pins: PinDir,
    lock: Lock,
    /// How the filter on each interface sees VLAN tags.
    tags: BTreeMap<String, TagPath>,
    pub filter: Filter,
    pub policy: Resolved,
    /// The policy revision in force: applies since the pins were created
    /// (`Filter::revision`), kept across restarts and upgrades.
    pub revision: u64,
    applied_at: SystemTime,
    last_apply_ok: bool,
    server: server::Server,
    /// Taken by `serve` for the metrics task.
    metrics: Option<tokio::net::TcpListener>,
    events: event_hub::EventHub,
    audit: audit::Audit,
    inventory: crate::inventory::Inventory,
    learning: learn::Learning,
    /// Each `--iface`'s gaps in filtering.
    interfaces: interfaces::Interfaces,
    fleet: Option<fleet::Fleet>,
}

/// What the select loop waits on, set up when serving starts.
struct Wake {
    term: Signal,
    int: Signal,
    hup: Signal,
    /// The console's counter table (`--stats-interval`).
    tick: Interval,
    /// Refusal windows that ended are summarised on this.
    refusal_tick: Interval,
    /// The inventory's pending sightings are written on this.
    inventory_tick: Interval,
    /// Learned addresses idle too long are released on this.
    learning_tick: Interval,
    dns_due: tokio::time::Instant,
    ring: Option<AsyncFd<RingBuf<MapData>>>,
    /// The program's identity reports (ARP, NDP, DHCP) for the inventory.
    identity: Option<AsyncFd<RingBuf<MapData>>>,
    /// The kernel's link notifications; `None` if they cannot be had (the
    /// periodic check still runs).
    link_events: Option<AsyncFd<crate::sys::netlink::LinkEvents>>,
    /// `--iface`s checked again on this too (notifications can be lost).
    link_check: Interval,
    /// What the fleet follower verified or rejected (fleet mode).
    fleet: Option<mpsc::Receiver<crate::fleet::follow::Event>>,
    incoming: mpsc::Receiver<server::Call>,
    /// Refusals beyond what the limiter writes are dropped here already.
    refusals: mpsc::Receiver<Refusal>,
    scrapes: mpsc::Receiver<oneshot::Sender<String>>,
    links: server::Links,
    connections: JoinSet<()>,
    metrics_server: Option<JoinHandle<()>>,
}

impl Daemon {
    /// How the filter on `iface` sees VLAN tags: as attached by this
    /// daemon, else as its pinned link says (an interface it found
    /// attached); `None` when nothing is attached.
    fn tag_path(&self, iface: &str) -> Option<TagPath> {
        if !self.pins.link(iface).exists() {
            return None;
        }
        self.tags.get(iface).copied().or_else(|| self.pins.tag_path(iface))
    }

    /// The policy file's DNS names are due again this long after now.
    fn dns_due(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.policy.dns_refresh_secs.max(1))
    }

    /// Serves until SIGTERM, SIGINT or a `detach` request. After a signal
    /// the filter stays attached; after `detach` nothing is left.
    pub async fn serve(mut self) -> anyhow::Result<()> {
        let mut w = self.prepare()?;
        let detached = loop {
            tokio::select! {
                _ = w.term.recv() => break false,
                // DNS names in the rules: resolved again on schedule.
                _ = tokio::time::sleep_until(w.dns_due) => {
                    w.dns_due = self.dns_due();
                    if !self.policy.names.is_empty() {
                        self.refresh_names();
                    }
                }
                _ = w.int.recv() => break false,
                _ = w.hup.recv() => self.sighup(),
                ready = async { w.ring.as_mut().expect("guarded").readable_mut().await }, if w.ring.is_some() => {
                    self.drain_events(ready?);
                }
                ready = async { w.identity.as_mut().expect("guarded").readable_mut().await }, if w.identity.is_some() => {
                    self.drain_identity(ready?);
                }
                Some(reply) = w.scrapes.recv() => self.scrape(reply),
                accepted = self.server.accept() => match accepted {
                    Ok(stream) => {
                        w.connections.spawn(server::connection(stream, w.links.clone()));
                    }
                    Err(e) => log(&format!("control socket: {e}")),
                },
                Some(call) = w.incoming.recv() => {
                    if self.call(call) {
                        break true;
                    }
                }
                Some(r) = w.refusals.recv() => self.audit.refused(r),
                _ = w.refusal_tick.tick() => self.audit.windows_ended(w.links.dropped()),
                _ = w.inventory_tick.tick() => {
                    self.inventory.flush(&self.policy);
                }
                _ = w.learning_tick.tick() => self.expire_learned(),
                ready = async { w.link_events.as_mut().expect("guarded").readable_mut().await }, if w.link_events.is_some() => {
                    let mut ready = ready?;
                    ready.get_inner().drain();
                    ready.clear_ready();
                    self.check_interfaces();
                }
                _ = w.link_check.tick() => self.check_interfaces(),
                Some(event) = async { w.fleet.as_mut().expect("guarded").recv().await }, if w.fleet.is_some() => {
                    self.fleet_event(event);
                }
                _ = w.tick.tick(), if self.config.stats_interval > 0 => {
                    print!("{}", report::device_table(&self.device_samples()?));
                }
                Some(_) = w.connections.join_next(), if !w.connections.is_empty() => {}
            }
        };
        self.stop(w, detached).await
    }

    /// Everything `serve` waits on, the metrics task and the debug log
    /// started, capabilities dropped, systemd told: from here on the daemon
    /// only reacts.
    fn prepare(&mut self) -> anyhow::Result<Wake> {
        let period = Duration::from_secs(self.config.stats_interval.max(1));
        let (calls, incoming) = mpsc::channel::<server::Call>(16);
        let (refused, refusals) = mpsc::channel::<Refusal>(64);
        let (scrape_tx, scrapes) = mpsc::channel::<oneshot::Sender<String>>(16);
        let mut w = Wake {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            tick: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
            refusal_tick: tokio::time::interval(Duration::from_secs(10)),
            inventory_tick: tokio::time::interval(Duration::from_secs(1)),
            learning_tick: tokio::time::interval(Duration::from_secs(10)),
            dns_due: tokio::time::Instant::now(),
            ring: None,
            identity: None,
            link_events: match crate::sys::netlink::LinkEvents::open().and_then(|l| {
                // SAFETY: LinkEvents owns its socket for as long as the
                // AsyncFd holds it, and always reports that same one.
                unsafe { AsyncFd::register(l) }.map_err(|e| std::io::Error::other(e.to_string()))
            }) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log(&format!(
                        "link notifications (rtnetlink): {e}; interfaces deleted and created \
                         again are noticed within {} s instead",
                        LINK_CHECK.as_secs()
                    ));
                    None
                }
            },
            link_check: tokio::time::interval(LINK_CHECK),
            fleet: self.fleet.as_mut().map(fleet::Fleet::start),
            incoming,
            refusals,
            scrapes,
            links: self.server.links(calls, refused, self.events.followers()),
            connections: JoinSet::new(),
            metrics_server: self
                .metrics
                .take()
                .map(|listener| tokio::spawn(metrics::serve_metrics(listener, scrape_tx))),
        };
        self.start_program_log()?;
        // Attached and applied: nothing from here on needs more than the
        // filter's own capabilities.
        if let Err(e) = crate::privileges::drop_unneeded() {
            log(&format!("giving up unneeded capabilities: {e}"));
        }
        crate::notify::notify(&format!(
            "READY=1\nSTATUS=enforcing policy revision {} ({} devices)",
            self.revision,
            self.policy.devices.len()
        ));
        w.ring = event_hub::watch(self.filter.take_events(), "events")?;
        w.identity = event_hub::watch(self.filter.take_identity(), "identity")?;
        self.events.open_log(self.config.events_log.as_deref())?;
        w.dns_due = self.dns_due();
        Ok(w)
    }

    /// The program's `debug_log` lines, when the debug program is there.
    fn start_program_log(&self) -> anyhow::Result<()> {
        match self.filter.debug_program_id()? {
            Some(id) => {
                if let Err(e) = program_log::spawn(id) {
                    log(&format!(
                        "{e:#}; `debug_log` has no effect (opening the log needs CAP_SYS_ADMIN)"
                    ));
                }
            }
            None => log("the debug-log program is not installed; `debug_log` has no effect"),
        }
        Ok(())
    }

    /// After the loop: the socket goes, replies already given reach their
    /// callers, and the log says what is left enforcing.
    async fn stop(mut self, w: Wake, detached: bool) -> anyhow::Result<()> {
        let Wake { incoming, mut connections, metrics_server, .. } = w;
        if let Some(f) = self.fleet.as_mut() {
            f.stop();
        }
        if let Err(e) = self.inventory.flush_now(&self.policy) {
            log(&format!("inventory: {e}"));
        }
        let _ = fs::remove_file(&self.config.socket);
        if let Some(server) = metrics_server {
            server.abort();
        }
        // Let replies already given reach their callers (bounded).
        drop(incoming);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if detached {
            log("detached on request; nothing is filtered any more");
            return Ok(());
        }
        println!("{}", report::device_table(&self.device_samples()?));
        println!("{}", report::global_table(&self.frame_samples()?));
        // Say what is true: the links are what enforces.
        let linked = self.pins.linked_ifaces();
        if linked.is_empty() {
            log(&format!(
                "stopping; nothing is attached any more (no link pinned in {})",
                self.pins.links().display()
            ));
        } else {
            log(&format!(
                "stopping; the filter stays attached and enforcing on {} (pins in {}); \
                 `vlanguard detach` removes it",
                linked.join(", "),
                self.pins.root().display()
            ));
        }
        Ok(())
    }
}

fn join(addrs: &[std::net::IpAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// (ifindex, VLAN) of the policy's `[[interface]]` entries.
fn untagged_ifaces(file: &Path, policy: &Resolved) -> anyhow::Result<Vec<(u32, u16)>> {
    policy
        .interfaces
        .iter()
        .map(|(name, vlan)| {
            let index = ifindex(name).with_context(|| {
                format!("{}: [[interface]] {name:?} (untagged VLAN {vlan})", file.display())
            })?;
            Ok((index, *vlan))
        })
        .collect()
}

/// `f`'s result and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

pub fn log(message: &str) {
    eprintln!("vlanguard: {message}");
}

/// Scan detection as `policy` configures it (the management networks are
/// never blocked by it).
fn detector(policy: &Resolved) -> Option<scan::Detector> {
    policy.scan_detection.map(|c| scan::Detector::new(c, policy.management.clone()))
}
