//! `vlanguard run`: the daemon. It owns the pin directory while it runs,
//! adopts what an earlier daemon pinned, applies the policy file, serves the
//! operator CLI on a Unix socket, follows SIGHUP reloads, and on SIGTERM
//! exits with the filter still enforcing.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};

use crate::{
    Filter, Policy, Resolved, compile,
    control::{self, Reply, Request},
    datapath::{
        actions,
        attach::{AttachMode, ifindex},
        offload::TagPath,
        pins::{Lock, PinDir},
        program_log,
    },
    diff, edit, events, metrics, read_policy,
    refusals::{self, Refusal},
    report, scan, suggest,
};

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
    /// Devices the per-device counters hold when the filter is first
    /// loaded (`loader::default_device_capacity` if not given).
    pub device_capacity: Option<u32>,
}

/// The running daemon's state.
pub struct Daemon {
    pub config: Config,
    pub pins: PinDir,
    lock: Lock,
    /// How the filter on each interface sees VLAN tags.
    tags: BTreeMap<String, TagPath>,
    /// Refused callers' audit entries, limited (`refusals`).
    limiter: refusals::Limiter,
    /// The system journal, under systemd (`journal`).
    journal: Option<crate::journal::Journal>,
    pub filter: Filter,
    pub policy: Resolved,
    /// The policy revision in force: applies since the pins were created
    /// (`Filter::revision`), kept across restarts and upgrades.
    pub revision: u64,
    listener: UnixListener,
    metrics: Option<tokio::net::TcpListener>,
    group: Option<u32>,
    applied_at: SystemTime,
    last_apply_ok: bool,
    recent: events::Recent,
    followers: tokio::sync::broadcast::Sender<events::Event>,
    /// Scan detection, when the policy turns it on.
    scan: Option<scan::Detector>,
    scans_detected: u64,
}

/// A request from a connection, with who sent it and where the reply goes.
struct Call {
    request: Request,
    uid: u32,
    reply: oneshot::Sender<Reply>,
}

impl Daemon {
    /// Everything that can be checked is checked before the kernel is
    /// touched; then the filter is adopted or loaded, the policy applied and
    /// only then new interfaces attached (never a moment without filtering).
    /// Must run inside a tokio runtime (the socket is bound here).
    pub fn start(config: Config) -> anyhow::Result<Daemon> {
        crate::privileges::check().map_err(|e| anyhow::anyhow!(e))?;
        let policy = read_policy(&config.policy)?;
        for iface in &config.ifaces {
            ifindex(iface)?;
        }
        let untagged = untagged_ifaces(&config.policy, &policy)?;
        let group = match &config.group {
            Some(name) => Some(control::group_id(name).with_context(|| {
                format!("group {name:?} does not exist (create it, or leave out --group)")
            })?),
            None => None,
        };
        let pins = PinDir::new(&config.pin_dir);
        let lock = pins.lock()?;
        // A start refused from here on leaves nothing it created: the
        // directories before anything is pinned, the pins of a fresh load.
        let listener = match bind(&config.socket, group) {
            Ok(l) => l,
            Err(e) => {
                pins.abandon(lock);
                return Err(e);
            }
        };
        let metrics = match config.metrics_addr.map(bind_metrics).transpose() {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&config.socket);
                pins.abandon(lock);
                return Err(e);
            }
        };
        let fresh = !pins.has_program();
        let capacity =
            config.device_capacity.unwrap_or_else(crate::datapath::default_device_capacity);
        let opened = pins.open_filter(&lock, capacity).map_err(anyhow::Error::from).and_then(
            |(mut filter, opened)| {
                filter.apply(&compile(&policy), &untagged)?;
                let revision = filter.revision()?;
                Ok((filter, opened, revision))
            },
        );
        let (mut filter, opened, revision) = match opened {
            Ok(o) => o,
            Err(e) => {
                let _ = fs::remove_file(&config.socket);
                if fresh {
                    let _ = pins.detach_all(&lock);
                }
                return Err(e);
            }
        };
        let adopted = opened != crate::datapath::pins::Opened::Loaded;
        // The policy file's parse is freed now.
        crate::sys::process::trim_heap();

        let mut attached = Vec::new();
        let mut tags = BTreeMap::new();
        for iface in &config.ifaces {
            match pins.ensure_link(&mut filter, iface, config.mode, config.vlan_offload) {
                Ok((now, path)) => {
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
                Err(e) => {
                    // A fresh start that cannot attach everywhere leaves
                    // nothing behind; an adopted filter keeps enforcing.
                    // The socket goes either way: no daemon answers it.
                    let _ = fs::remove_file(&config.socket);
                    if !adopted {
                        drop(filter);
                        let _ = pins.detach_all(&lock);
                    }
                    return Err(e.into());
                }
            }
        }
        let capacity = filter.device_capacity();
        let capacity_note = match config.device_capacity {
            Some(wanted) if wanted != capacity => format!(
                "; --device-capacity {wanted} not applied: the pinned filter's counters hold \
                 {capacity} devices, fixed when it was first loaded (`vlanguard detach` and start \
                 again to change it)"
            ),
            _ => String::new(),
        };
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
            match opened {
                crate::datapath::pins::Opened::Loaded => "loaded and pinned the".to_string(),
                crate::datapath::pins::Opened::Adopted => "adopted the pinned".to_string(),
                crate::datapath::pins::Opened::Upgraded { old, new, carried_flows } => format!(
                    "replaced the pinned program {old:016x} with this version's {new:016x} (links \
                     updated in place, maps kept{}) as the",
                    if carried_flows > 0 {
                        format!(
                            "; {carried_flows} open flow(s) carried over into the new flow cache"
                        )
                    } else {
                        String::new()
                    }
                ),
            },
            pins.root().display(),
            config.policy.display(),
            policy.devices.len(),
            config.ifaces.join(", "),
            if attached.is_empty() { "none".to_string() } else { attached.join(", ") },
            config.socket.display(),
        ));
        let journal = crate::journal::Journal::detect();
        if let Some(j) = &journal {
            log(&format!(
                "system journal: drop events, scan detections and audit records go to {} too",
                j.path().display()
            ));
        }
        Ok(Daemon {
            config,
            pins,
            lock,
            tags,
            filter,
            revision,
            listener,
            metrics,
            group,
            applied_at: SystemTime::now(),
            last_apply_ok: true,
            recent: events::Recent::default(),
            followers: tokio::sync::broadcast::channel(1024).0,
            scan: detector(&policy),
            scans_detected: 0,
            limiter: refusals::Limiter::default(),
            journal,
            policy,
        })
    }

    /// How the filter on `iface` sees VLAN tags: as attached by this
    /// daemon, else as its pinned link says (an interface it found
    /// attached); `None` when nothing is attached.
    fn tag_path(&self, iface: &str) -> Option<TagPath> {
        if !self.pins.link(iface).exists() {
            return None;
        }
        self.tags.get(iface).copied().or_else(|| self.pins.tag_path(iface))
    }

    /// Validates `policy` and installs it; the running policy stays when
    /// anything is wrong.
    fn install(&mut self, policy: Resolved) -> anyhow::Result<u64> {
        let untagged = untagged_ifaces(&self.config.policy, &policy)?;
        self.filter.apply(&compile(&policy), &untagged)?;
        self.revision = self.filter.revision()?;
        if self.policy.scan_detection != policy.scan_detection
            || self.policy.management != policy.management
        {
            self.scan = detector(&policy);
        }
        self.policy = policy;
        self.applied_at = SystemTime::now();
        // The old policy and the parse of the new one are freed now.
        crate::sys::process::trim_heap();
        Ok(self.revision)
    }

    /// A scan was detected: block the source, report it everywhere.
    fn scan_detected(&mut self, src: std::net::IpAddr, targets: usize) -> Option<events::Event> {
        let config = *self.scan.as_ref()?.config();
        let reason =
            format!("scan: {targets} targets in {}", humantime::format_duration(config.window));
        let entry = match actions::entry(Some(config.block_for), &reason) {
            Ok(e) => e,
            Err(e) => {
                log(&format!("scan detection: {e}"));
                return None;
            }
        };
        let net = ipnet::IpNet::from(src);
        if let Err(e) = self.filter.block(net, entry) {
            log(&format!("scan detection: blocking {src}: {e}"));
            return None;
        }
        self.scans_detected += 1;
        let message = format!(
            "scan detection: {src} was denied on {targets} targets within {}; blocked for {}",
            humantime::format_duration(config.window),
            humantime::format_duration(config.block_for)
        );
        log(&message);
        self.write_audit(json!({
            "user": "vlanguard (scan detection)",
            "command": { "request": "block", "net": net, "for_secs": config.block_for.as_secs(), "reason": reason },
            "ok": true,
            "result": message,
        }));
        Some(events::Event {
            time: crate::time::stamp(SystemTime::now()),
            interface: String::new(),
            vlan: 0,
            device: None,
            direction: None,
            src: src.to_string(),
            dst: String::new(),
            proto: String::new(),
            sport: 0,
            dport: 0,
            reason: "scan-detected".into(),
            verdict: "block".into(),
            to_device: None,
        })
    }

    /// The counter slot of the running policy's device `name`, or the
    /// error an operator sees for a name it does not have.
    fn known_device(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self
            .filter
            .device_slot(name)
            .ok_or_else(|| crate::error::UnknownDevice(name.to_string()))?)
    }

    /// Per-device counters, named: what `stats`, the console tables and
    /// `/metrics` all report.
    fn device_samples(&self) -> anyhow::Result<Vec<metrics::DeviceSample>> {
        let names = self.filter.slot_names();
        let vlans: std::collections::HashMap<&str, u16> =
            self.policy.devices.iter().map(|d| (d.name.as_str(), d.vlan)).collect();
        Ok(self
            .filter
            .device_stats()?
            .iter()
            .filter_map(|(k, c)| {
                let device = names.get(&k.slot)?;
                Some(metrics::DeviceSample {
                    device: device.clone(),
                    vlan: vlans.get(device.as_str()).copied().unwrap_or(0),
                    direction: k.direction.name(),
                    verdict: k.verdict.name(),
                    packets: c.packets,
                    bytes: c.bytes,
                })
            })
            .collect())
    }

    /// Every frame by verdict and reason.
    fn frame_samples(&self) -> anyhow::Result<Vec<metrics::FrameSample>> {
        Ok(self
            .filter
            .global_stats()?
            .iter()
            .map(|((v, r), c)| metrics::FrameSample {
                verdict: v.name(),
                reason: r.name(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect())
    }

    /// What `/metrics` reports, read from the maps now.
    fn snapshot(&self) -> anyhow::Result<metrics::Snapshot> {
        let names = self.filter.slot_names();
        let devices = self.device_samples()?;
        let frames = self.frame_samples()?;
        let occ = self.filter.occupancy();
        let flows = self.filter.flow_stats()?;
        let mode = format!("{:?}", self.config.mode).to_lowercase();
        Ok(metrics::Snapshot {
            devices,
            frames,
            revision: self.revision,
            last_apply_seconds: self
                .applied_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            last_apply_ok: self.last_apply_ok,
            maps: vec![
                (
                    "device_addresses",
                    occ.device_addrs as u64,
                    u64::from(filter_common::MAX_DEVICE_ADDRS),
                ),
                (
                    "protected_networks",
                    occ.protected_nets as u64,
                    u64::from(filter_common::MAX_PROTECTED_NETS),
                ),
                (
                    "rules",
                    occ.rule_entries as u64,
                    u64::from(filter_common::GENERATIONS * filter_common::MAX_RULE_ENTRIES),
                ),
                (
                    "peer_networks",
                    occ.peer_nets as u64,
                    u64::from(filter_common::GENERATIONS * filter_common::MAX_PEER_NETS),
                ),
                (
                    "device_counters",
                    self.filter.slot_names().len() as u64,
                    u64::from(self.filter.device_capacity()),
                ),
                ("flows", flows.live, u64::from(filter_common::MAX_FLOWS)),
                (
                    "blocks",
                    self.filter.blocks()?.len() as u64,
                    u64::from(filter_common::MAX_BLOCKS),
                ),
                (
                    "quarantined_devices",
                    self.filter.quarantined()?.len() as u64,
                    u64::from(filter_common::MAX_DEVICE_SLOTS),
                ),
            ],
            scans_detected: self.scans_detected,
            flows: vec![
                ("created", flows.created),
                ("expired", flows.expired),
                ("revoked", flows.revoked),
                ("evicted", flows.evicted),
            ],
            interfaces: self
                .config
                .ifaces
                .iter()
                .map(|i| {
                    let tags = self.tag_path(i);
                    let hook_mode =
                        if tags == Some(TagPath::Metadata) { "tc".into() } else { mode.clone() };
                    (
                        i.clone(),
                        self.pins.link(i).exists(),
                        hook_mode,
                        tags.map_or("none", TagPath::name).to_string(),
                    )
                })
                .collect(),
            devices_configured: self.policy.devices.len() as u64,
            rule_hits: {
                let by_name: std::collections::HashMap<&str, &crate::policy::ResolvedDevice> =
                    self.policy.devices.iter().map(|d| (d.name.as_str(), d)).collect();
                self.filter
                    .rule_hits()?
                    .into_iter()
                    .filter_map(|(k, n)| {
                        let name = names.get(&k.slot)?;
                        let d = by_name.get(name.as_str())?;
                        let dir = filter_common::Direction::from_u8(k.direction)?;
                        let rules = match dir {
                            filter_common::Direction::In => &d.allow_in,
                            filter_common::Direction::Out => &d.allow_out,
                        };
                        let rule = rules.get(usize::from(k.rule))?;
                        Some((name.clone(), dir.name(), short(&diff::rule_text(rule, dir)), n))
                    })
                    .collect()
            },
            events: {
                let [sent, suppressed, lost] = self.filter.event_stats()?;
                vec![
                    ("sent", sent),
                    ("suppressed", suppressed),
                    ("lost", lost),
                    ("delivered", self.recent.delivered),
                ]
            },
        })
    }

    /// Re-reads the policy file and applies it.
    pub fn reload(&mut self) -> anyhow::Result<u64> {
        let policy = read_policy(&self.config.policy)?;
        self.install(policy)
    }

    /// Serves until SIGTERM, SIGINT or a `detach` request. After a signal
    /// the filter stays attached; after `detach` nothing is left.
    pub async fn serve(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let period = Duration::from_secs(self.config.stats_interval.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let (calls, mut incoming) = mpsc::channel::<Call>(16);
        // Refusals beyond what the limiter writes are dropped here already.
        let (refused, mut refusals) = mpsc::channel::<Refusal>(64);
        // Refusals that found the queue full: counted, summed every tick.
        let refusals_dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut refusal_tick = tokio::time::interval(Duration::from_secs(10));
        let mut connections = tokio::task::JoinSet::new();
        let (scrapes, mut scrape_requests) = mpsc::channel::<oneshot::Sender<String>>(16);
        let metrics_server =
            self.metrics.take().map(|listener| tokio::spawn(serve_metrics(listener, scrapes)));
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
        let mut ring = match self.filter.take_events() {
            // SAFETY: the RingBuf owns its map's file descriptor for as long
            // as the AsyncFd holds it, and always reports that same one.
            Some(r) => Some(
                unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        r,
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(|e| anyhow::anyhow!("watching the events ring buffer: {e}"))?,
            ),
            None => None,
        };
        let boot = crate::sys::clock::boot_time();
        let mut events_log = match &self.config.events_log {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                Some(
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("events log {}", path.display()))?,
                )
            }
            None => None,
        };
        let mut detached = false;
        let refresh_every = |p: &Resolved| Duration::from_secs(p.dns_refresh_secs.max(1));
        let mut dns_due = tokio::time::Instant::now() + refresh_every(&self.policy);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                // DNS names in the rules: resolved again on schedule.
                _ = tokio::time::sleep_until(dns_due) => {
                    dns_due = tokio::time::Instant::now() + refresh_every(&self.policy);
                    if !self.policy.names.is_empty() {
                        self.refresh_names();
                    }
                }
                _ = int.recv() => break,
                _ = hup.recv() => match timed(|| self.reload()) {
                    (Ok(g), took) => {
                        self.last_apply_ok = true;
                        log(&format!(
                            "SIGHUP: {} applied as revision {g} in {} ms",
                            self.config.policy.display(),
                            took.as_millis()
                        ));
                    }
                    (Err(e), _) => {
                        self.last_apply_ok = false;
                        log(&format!("SIGHUP: {e:#}; the running policy stays"));
                    }
                },
                ready = async { ring.as_mut().expect("guarded").readable_mut().await }, if ring.is_some() => {
                    let mut guard = ready?;
                    let mut raw: Vec<Vec<u8>> = Vec::new();
                    {
                        let rb = guard.get_inner_mut();
                        // Bounded per wake-up so scrapes and the CLI stay served.
                        while raw.len() < 4096 {
                            match rb.next() {
                                Some(item) => raw.push(item.to_vec()),
                                None => break,
                            }
                        }
                    }
                    if raw.len() < 4096 {
                        guard.clear_ready();
                    }
                    for r in raw {
                        let names = self.filter.slot_names();
                        let Some(e) = events::decode(&r, boot, |s| names.get(&s).cloned(), iface_name) else { continue };
                        if let Some(f) = events_log.as_mut() {
                            let _ = std::io::Write::write_all(f, format!("{}\n", serde_json::to_string(&e).unwrap_or_default()).as_bytes());
                        }
                        if let Some(j) = &self.journal {
                            j.event(&e);
                        }
                        let _ = self.followers.send(e.clone());
                        let scan = self.scan.as_mut().and_then(|d| d.observe(&e, Instant::now()));
                        self.recent.push(e);
                        if let Some(alert) = scan.and_then(|(src, n)| self.scan_detected(src, n)) {
                            if let Some(f) = events_log.as_mut() {
                                let _ = std::io::Write::write_all(f, format!("{}\n", serde_json::to_string(&alert).unwrap_or_default()).as_bytes());
                            }
                            if let Some(j) = &self.journal {
                                j.event(&alert);
                            }
                            let _ = self.followers.send(alert.clone());
                            self.recent.push(alert);
                        }
                    }
                }
                Some(reply) = scrape_requests.recv() => {
                    // A failed map read is logged and never fails the scrape:
                    // what could be read is reported.
                    let snapshot = self.snapshot().unwrap_or_else(|e| {
                        log(&format!("metrics: reading the maps: {e:#}"));
                        metrics::Snapshot::default()
                    });
                    let _ = reply.send(metrics::openmetrics(&snapshot));
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let refusals = (refused.clone(), refusals_dropped.clone());
                        connections.spawn(connection(stream, self.group, calls.clone(), refusals, self.followers.clone()));
                    }
                    Err(e) => log(&format!("control socket: {e}")),
                },
                Some(call) = incoming.recv() => {
                    let is_detach = matches!(call.request, Request::Detach);
                    let reply = self.handle(&call.request, call.uid);
                    detached = is_detach && reply.ok;
                    let _ = call.reply.send(reply);
                    if detached {
                        break;
                    }
                }
                Some(r) = refusals.recv() => self.refused(r),
                _ = refusal_tick.tick() => {
                    for (uid, n) in self.limiter.ended(Instant::now()) {
                        self.refusals_summary(uid, n);
                    }
                    let dropped = refusals_dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
                    if dropped > 0 {
                        self.refusals_summary(None, dropped);
                    }
                }
                _ = tick.tick(), if self.config.stats_interval > 0 => {
                    print!("{}", report::device_table(&self.device_samples()?));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
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

    /// Answers one request; changes are audit-logged.
    fn handle(&mut self, request: &Request, uid: u32) -> Reply {
        let before = self.summary();
        let started = Instant::now();
        let reply = match self.dispatch(request) {
            Ok(reply) => reply,
            Err(e) => Reply::invalid(format!("{e:#}")),
        };
        if request.changes() && !matches!(request, Request::Detach) {
            self.last_apply_ok = reply.ok;
        }
        if request.changes() {
            self.audit(request, uid, &reply, &before, started.elapsed());
        }
        reply
    }

    fn dispatch(&mut self, request: &Request) -> anyhow::Result<Reply> {
        Ok(match request {
            Request::Status => {
                let ifaces: Vec<_> = self
                    .config
                    .ifaces
                    .iter()
                    .map(|i| {
                        let tags = self.tag_path(i);
                        json!({
                            "name": i,
                            "attached": self.pins.link(i).exists(),
                            "hook": tags.map(TagPath::hook),
                            "tags": tags.map(TagPath::name),
                        })
                    })
                    .collect();
                let occ = self.filter.occupancy();
                let data = json!({
                    "pin_dir": self.pins.root(),
                    "policy_file": self.config.policy,
                    "revision": self.revision,
                    "applied_at": crate::time::date(self.applied_at),
                    "mode": format!("{:?}", self.config.mode).to_lowercase(),
                    "interfaces": ifaces,
                    "devices": self.policy.devices.len(),
                    "capabilities": crate::privileges::effective_names(),
                    "program_tag": self.filter.program_tag().map(|t| format!("{t:016x}")).ok(),
                    "names": self.policy.names,
                    "dns_refresh_secs": self.policy.dns_refresh_secs,
                    "maps": {
                        "device_addresses": occ.device_addrs,
                        "protected_networks": occ.protected_nets,
                        "rules": occ.rule_entries,
                        "peer_networks": occ.peer_nets,
                    },
                });
                let text = format!(
                    "policy {} (revision {}, applied {}), {} devices\n\
                     interfaces: {} ({} XDP)\npins: {}\n\
                     maps: {} device addresses, {} protected networks, {} rule entries, {} \
                     peer-set networks",
                    self.config.policy.display(),
                    self.revision,
                    crate::time::date(self.applied_at),
                    self.policy.devices.len(),
                    self.config
                        .ifaces
                        .iter()
                        .map(|i| match self.tag_path(i) {
                            Some(t) if self.pins.link(i).exists() => {
                                format!("{i} ({}, tags {})", t.hook().to_uppercase(), t.name())
                            }
                            _ => format!("{i} (NOT attached)"),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    format!("{:?}", self.config.mode).to_lowercase(),
                    self.pins.root().display(),
                    occ.device_addrs,
                    occ.protected_nets,
                    occ.rule_entries,
                    occ.peer_nets,
                );
                let mut text = text;
                if let Ok(tag) = self.filter.program_tag() {
                    text += &format!(
                        "\nprogram: tag {tag:016x} (vlanguard {})",
                        env!("CARGO_PKG_VERSION")
                    );
                }
                if !self.policy.names.is_empty() {
                    text += &format!(
                        "\nDNS names (resolved again every {}):",
                        humantime::format_duration(Duration::from_secs(
                            self.policy.dns_refresh_secs
                        ))
                    );
                    for (name, addrs) in &self.policy.names {
                        text += &format!("\n  {name} -> {}", join(addrs));
                    }
                }
                Reply::ok(text, data)
            }
            Request::Stats { device, all } => {
                if let Some(name) = device {
                    self.known_device(name)?;
                }
                let mut rows = self.device_samples()?;
                rows.retain(|r| device.as_ref().is_none_or(|d| &r.device == d));
                let global = self.frame_samples()?;
                // The text shows what moved; JSON readers get every row.
                let moved: Vec<_> =
                    rows.iter().filter(|r| *all || r.packets > 0).cloned().collect();
                let moved_global: Vec<_> =
                    global.iter().filter(|r| *all || r.packets > 0).cloned().collect();
                let mut text = report::device_table(&moved);
                // The counters are by verdict; why a device's frames were
                // dropped is in its recent drop events (a sample: events
                // are rate-limited).
                let mut reasons = std::collections::BTreeMap::<String, u64>::new();
                if let Some(name) = device {
                    for e in self.recent.matching(Some(name)) {
                        *reasons.entry(e.reason).or_default() += 1;
                    }
                    text.push_str(&report::recent_reasons(&reasons));
                } else {
                    text.push('\n');
                    text.push_str(&report::global_table(&moved_global));
                }
                if !*all {
                    text.push_str("(rows at zero left out; --all shows them)\n");
                }
                let data =
                    json!({ "devices": rows, "global": global, "recent_drop_reasons": reasons });
                Reply::ok(text, data)
            }
            Request::PolicyShow => {
                let text = fs::read_to_string(&self.config.policy)
                    .with_context(|| format!("reading {}", self.config.policy.display()))?;
                let data =
                    json!({ "file": self.config.policy, "revision": self.revision, "text": text });
                Reply::ok(text, data)
            }
            Request::PolicyDiff { text, file } => {
                let new = self.resolve_text(text.as_deref(), file.as_deref())?;
                let changes = diff::diff(&self.policy, &new);
                changes_reply(&changes, "no changes", json!({ "changes": changes }))
            }
            Request::PolicyApply { text, file } => {
                let new = self.resolve_text(text.as_deref(), file.as_deref())?;
                let changes = diff::diff(&self.policy, &new);
                let old_text = fs::read_to_string(&self.config.policy).ok();
                if let Some(text) = text {
                    edit::write_atomically(&self.config.policy, text)
                        .with_context(|| format!("writing {}", self.config.policy.display()))?;
                }
                match self.install(new) {
                    Ok(g) => {
                        let mut r = changes_reply(
                            &changes,
                            "no changes",
                            json!({ "revision": g, "changes": changes }),
                        );
                        r.message = format!("applied as revision {g}\n{}", r.message);
                        r
                    }
                    Err(e) => {
                        if let (Some(_), Some(old)) = (text, old_text) {
                            let _ = edit::write_atomically(&self.config.policy, &old);
                        }
                        return Err(e);
                    }
                }
            }
            Request::DeviceList => {
                let rows: Vec<_> = self
                    .policy
                    .devices
                    .iter()
                    .map(|d| json!({
                        "name": d.name, "vlan": d.vlan,
                        "ip": d.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "mac": d.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                        "allow_in": d.allow_in.len(), "allow_out": d.allow_out.len(),
                    }))
                    .collect();
                let mut text = format!(
                    "{:<24} {:>5} {:<34} {:>8} {:>9}\n",
                    "DEVICE", "VLAN", "IP", "IN RULES", "OUT RULES"
                );
                for d in &self.policy.devices {
                    let ips = d.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                    text.push_str(&format!(
                        "{:<24} {:>5} {:<34} {:>8} {:>9}\n",
                        d.name,
                        d.vlan,
                        ips,
                        d.allow_in.len(),
                        d.allow_out.len()
                    ));
                }
                Reply::ok(text, json!({ "devices": rows }))
            }
            Request::DeviceAdd { device } => self.change(|doc| edit::add_device(doc, device))?,
            Request::DeviceRemove { name } => self.change(|doc| edit::remove_device(doc, name))?,
            Request::Allow { target, direction, rule } => {
                self.change(|doc| edit::add_rule(doc, target, *direction, rule))?
            }
            Request::Revoke { target, direction, rule } => {
                self.change(|doc| edit::remove_rule(doc, target, *direction, rule))?
            }
            Request::Events { device, .. } => {
                if let Some(d) = device {
                    self.known_device(d)?;
                }
                let list = self.recent.matching(device.as_deref());
                let text = list.iter().map(events::Event::line).collect::<Vec<_>>().join("\n");
                Reply::ok(text, json!({ "events": list }))
            }
            Request::PolicySuggest { device, since_secs } => {
                if let Some(d) = device {
                    self.known_device(d)?;
                }
                let window = since_secs.map(Duration::from_secs);
                let since = window.map(|w| SystemTime::now() - w);
                let text = fs::read_to_string(&self.config.policy)
                    .with_context(|| format!("reading {}", self.config.policy.display()))?;
                let peers = Policy::from_toml(&text)
                    .map(|p| p.peers.into_iter().map(|(k, v)| (k, v.into_inner())).collect())
                    .unwrap_or_default();
                let list =
                    suggest::suggest(&self.recent.matching(None), &peers, device.as_deref(), since);
                let rules: Vec<_> = list
                    .iter()
                    .map(|s| json!({ "device": s.device, "direction": s.direction, "rule": s.rule, "frames": s.frames }))
                    .collect();
                Reply::ok(suggest::to_toml(&list, window), json!({ "suggestions": rules }))
            }
            Request::PolicyMerge { text, file } => {
                let from = file.as_ref().map_or("the fragment".into(), |f| f.display().to_string());
                let rules =
                    suggest::parse_fragment(text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
                if rules.is_empty() {
                    anyhow::bail!("{from}: no rules to merge");
                }
                self.change(|doc| {
                    for (target, direction, rule) in &rules {
                        match edit::add_rule(doc, target, *direction, rule) {
                            Ok(()) => {}
                            // Merging twice changes nothing the second time.
                            Err(e) if e == edit::ALREADY_THERE => {}
                            Err(e) => return Err(format!("{from}: {e}")),
                        }
                    }
                    Ok(())
                })?
            }
            Request::MudImport { profile, url, rules } => {
                let origin = format!("imported from MUD file {url} (vlanguard mud import)");
                let mut reply =
                    self.change(|doc| edit::set_profile_rules(doc, profile, &origin, rules))?;
                reply.message = format!("profile {profile:?} from {url}:\n{}", reply.message);
                reply
            }
            Request::Block { net, for_secs, reason } => {
                let parsed = parse_net(net)?;
                let entry = actions::entry(for_secs.map(Duration::from_secs), reason)
                    .map_err(|e| anyhow::anyhow!(e))?;
                self.filter.block(parsed, entry)?;
                let d = actions::describe(parsed.to_string(), &entry, crate::sys::clock::boot_ns());
                Reply::ok(format!("blocked {}", d.line()), json!({ "blocked": d }))
            }
            Request::Unblock { net } => {
                let parsed = parse_net(net)?;
                if !self.filter.unblock(parsed)? {
                    anyhow::bail!(
                        "{parsed} is not on the blocklist (`vlanguard blocks` lists it; unblock \
                         takes the exact address or network that was blocked)"
                    );
                }
                Reply::ok(format!("unblocked {parsed}"), json!({ "unblocked": parsed }))
            }
            Request::Blocks => {
                let now = crate::sys::clock::boot_ns();
                self.filter.prune_actions(now)?;
                let names = self.filter.slot_names();
                let blocks: Vec<_> = self
                    .filter
                    .blocks()?
                    .iter()
                    .map(|(n, e)| actions::describe(n.to_string(), e, now))
                    .collect();
                let quarantined: Vec<_> = self
                    .filter
                    .quarantined()?
                    .iter()
                    .map(|(slot, e)| {
                        let name =
                            names.get(slot).cloned().unwrap_or_else(|| format!("slot {slot}"));
                        actions::describe(name, e, now)
                    })
                    .collect();
                let mut text = String::new();
                if blocks.is_empty() && quarantined.is_empty() {
                    text.push_str("nothing blocked, no device quarantined");
                }
                for b in &blocks {
                    text.push_str(&format!("blocked     {}\n", b.line()));
                }
                for q in &quarantined {
                    text.push_str(&format!("quarantined {}\n", q.line()));
                }
                Reply::ok(
                    text.trim_end().to_string(),
                    json!({ "blocks": blocks, "quarantined": quarantined }),
                )
            }
            Request::Quarantine { device, for_secs, reason } => {
                let slot = self.known_device(device)?;
                let entry = actions::entry(for_secs.map(Duration::from_secs), reason)
                    .map_err(|e| anyhow::anyhow!(e))?;
                self.filter.quarantine(slot, entry)?;
                let d = actions::describe(device.clone(), &entry, crate::sys::clock::boot_ns());
                let reach = if self.policy.management.is_empty() {
                    "nothing (no [settings] management networks)".to_string()
                } else {
                    self.policy
                        .management
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Reply::ok(
                    format!("quarantined {}\nit can reach only: {reach}", d.line()),
                    json!({ "quarantined": d }),
                )
            }
            Request::Release { device } => {
                let slot = self.known_device(device)?;
                if !self.filter.release(slot)? {
                    anyhow::bail!("{device} is not quarantined");
                }
                Reply::ok(format!("released {device}"), json!({ "released": device }))
            }
            Request::Detach => {
                let ifaces = self.pins.detach_all(&self.lock)?;
                Reply::ok(
                    format!(
                        "detached from {}; removed {}",
                        ifaces.join(", "),
                        self.pins.root().display()
                    ),
                    json!({ "detached": ifaces }),
                )
            }
        })
    }

    /// `text` (or the policy file) validated into a policy.
    fn resolve_text(&self, text: Option<&str>, file: Option<&Path>) -> anyhow::Result<Resolved> {
        let file = file.unwrap_or(&self.config.policy);
        let text = match text {
            Some(t) => t.to_string(),
            None => fs::read_to_string(&self.config.policy)
                .with_context(|| format!("reading {}", self.config.policy.display()))?,
        };
        crate::resolve_policy(&text).map_err(|e| anyhow::anyhow!(e.render(file, &text)))
    }

    /// Resolves the policy's DNS names again and applies the policy if an
    /// answer changed. Names that do not answer keep their addresses. Skipped
    /// while the policy file holds changes not yet applied (they wait for an
    /// apply or SIGHUP, as always).
    fn refresh_names(&mut self) {
        let Ok(text) = fs::read_to_string(&self.config.policy) else { return };
        let Ok(mut file) = Policy::from_toml(&text) else { return };
        file.names = self.policy.names.clone();
        if file.resolve().ok().as_ref() != Some(&self.policy) {
            log("DNS refresh skipped: the policy file has changes that are not applied");
            return;
        }
        file.names = crate::lookup_names(&file.dns_names());
        for (name, addrs) in &self.policy.names {
            file.names.entry(name.clone()).or_insert_with(|| addrs.clone());
        }
        match file.resolve() {
            Ok(new) if new != self.policy => {
                let changed: Vec<String> = new
                    .names
                    .iter()
                    .filter(|(n, a)| self.policy.names.get(*n) != Some(*a))
                    .map(|(n, a)| format!("{n} -> {}", join(a)))
                    .collect();
                match self.install(new) {
                    Ok(g) => log(&format!(
                        "DNS refresh: {} ; applied as revision {g}",
                        changed.join(", ")
                    )),
                    Err(e) => log(&format!("DNS refresh: applying: {e:#}")),
                }
            }
            Ok(_) => {}
            Err(e) => log(&format!("DNS refresh: {}", e.render(&self.config.policy, &text))),
        }
    }

    /// An edit of the policy file: applied to its text, validated as a
    /// whole, written back atomically, then installed. Nothing changes if
    /// any step fails.
    fn change(
        &mut self,
        edit_doc: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), String>,
    ) -> anyhow::Result<Reply> {
        let path = self.config.policy.clone();
        let old =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut doc = edit::parse(&old).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        edit_doc(&mut doc).map_err(|e| anyhow::anyhow!(e))?;
        let text = doc.to_string();
        let new = crate::resolve_policy(&text).map_err(|e| {
            anyhow::anyhow!("the change would make the policy invalid: {}", e.render(&path, &text))
        })?;
        let changes = diff::diff(&self.policy, &new);
        edit::write_atomically(&path, &text)
            .with_context(|| format!("writing {}", path.display()))?;
        match self.install(new) {
            Ok(g) => {
                let mut r = changes_reply(
                    &changes,
                    "no effective change",
                    json!({ "revision": g, "changes": changes }),
                );
                r.message =
                    format!("{}\napplied as revision {g}; {} updated", r.message, path.display());
                Ok(r)
            }
            Err(e) => {
                let _ = edit::write_atomically(&path, &old);
                Err(e)
            }
        }
    }

    fn summary(&self) -> serde_json::Value {
        json!({ "revision": self.revision, "devices": self.policy.devices.len() })
    }

    fn audit(
        &self,
        request: &Request,
        uid: u32,
        reply: &Reply,
        before: &serde_json::Value,
        took: Duration,
    ) {
        let entry = json!({
            "uid": uid,
            "user": control::user_name(uid),
            "command": request,
            "ok": reply.ok,
            "result": reply.message,
            "before": before,
            "after": self.summary(),
            "took_ms": took.as_millis(),
        });
        self.write_audit(entry);
    }

    /// A request refused before the daemon acted on it: audit-logged,
    /// within the limiter's bounds.
    fn refused(&mut self, r: Refusal) {
        let (admit, ended) = self.limiter.admit(r.uid, Instant::now());
        if let Some(n) = ended {
            self.refusals_summary(r.uid, n);
        }
        if admit != refusals::Admit::Write {
            return;
        }
        // What was asked, bounded: the kind of request and the start of it
        // (a refused caller's megabytes never reach the disk).
        let start: String = r.line.chars().take(200).collect();
        let command = match serde_json::from_str::<serde_json::Value>(&r.line) {
            Ok(v) if v["request"].is_string() => json!({ "request": v["request"], "sent": start }),
            _ => json!({ "unparsed": start }),
        };
        self.write_audit(json!({
            "uid": r.uid,
            "user": r.uid.map(control::user_name),
            "pid": r.pid,
            "command": command,
            "ok": false,
            "refused": "permission-denied",
            "result": r.reason,
        }));
    }

    /// Refusals of `uid` counted, not written, in a window that ended.
    fn refusals_summary(&self, uid: Option<u32>, n: u64) {
        self.write_audit(json!({
            "uid": uid,
            "user": uid.map(control::user_name),
            "ok": false,
            "refused": "permission-denied",
            "suppressed": n,
            "result": format!(
                "{n} more requests refused for lack of rights within {} s, not logged one by one",
                refusals::WINDOW.as_secs()
            ),
        }));
    }

    /// Appends one entry to the audit log (synced), stamped with the time.
    fn write_audit(&self, mut entry: serde_json::Value) {
        entry["time"] = json!(crate::time::stamp(SystemTime::now()));
        if let Some(j) = &self.journal {
            j.audit(&entry);
        }
        let path = &self.config.audit_log;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut f = fs::OpenOptions::new().create(true).append(true).open(path)?;
            std::io::Write::write_all(&mut f, format!("{entry}\n").as_bytes())?;
            f.sync_data()
        };
        if let Err(e) = write() {
            log(&format!("audit log {}: {e}", path.display()));
        }
    }
}

fn changes_reply(changes: &[diff::Change], none: &str, data: serde_json::Value) -> Reply {
    let text = if changes.is_empty() {
        none.to_string()
    } else {
        changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    };
    Reply::ok(text, data)
}

fn join(addrs: &[std::net::IpAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Binds the control socket, replacing a stale file but never a live
/// socket, readable and writable by root and `group` only.
fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "socket {} is in use by another vlanguard daemon; use another --socket",
                path.display()
            );
        }
        fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, Some(0), Some(gid))?;
    }
    Ok(listener)
}

/// A rule as a label value: long peer lists are cut, so labels stay small.
fn short(rule: &str) -> String {
    const MAX: usize = 120;
    if rule.len() <= MAX {
        return rule.to_string();
    }
    let cut = (0..=MAX).rev().find(|i| rule.is_char_boundary(*i)).unwrap_or(0);
    format!("{}…", &rule[..cut])
}

fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let std = std::net::TcpListener::bind(addr)
        .with_context(|| format!("metrics address {addr}: cannot listen (see --metrics-addr)"))?;
    std.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(std)?)
}

/// `GET /metrics`: the main loop reads the maps; this task only formats.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    scrapes: mpsc::Sender<oneshot::Sender<String>>,
) {
    use axum::{
        extract::State,
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
        routing::get,
    };
    async fn scrape(
        State(scrapes): State<mpsc::Sender<oneshot::Sender<String>>>,
        headers: HeaderMap,
    ) -> impl IntoResponse {
        let (tx, rx) = oneshot::channel();
        let text = match scrapes.send(tx).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        let Some(text) = text else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain")],
                String::from("stopping\n"),
            );
        };
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        if metrics::wants_openmetrics(accept) {
            (StatusCode::OK, [(header::CONTENT_TYPE, metrics::OPENMETRICS)], text)
        } else {
            (StatusCode::OK, [(header::CONTENT_TYPE, metrics::CLASSIC)], metrics::to_classic(&text))
        }
    }
    let app = axum::Router::new().route("/metrics", get(scrape)).with_state(scrapes);
    if let Err(e) = axum::serve(listener, app).await {
        log(&format!("metrics server: {e}"));
    }
}

/// One connection: a request line in, a reply line out. Unauthorised
/// callers get a refusal and nothing else.
async fn connection(
    stream: UnixStream,
    group: Option<u32>,
    calls: mpsc::Sender<Call>,
    (refused, dropped): (mpsc::Sender<Refusal>, std::sync::Arc<std::sync::atomic::AtomicU64>),
    followers: tokio::sync::broadcast::Sender<events::Event>,
) {
    let refuse = |r: Refusal| {
        if refused.try_send(r).is_err() {
            dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let cred = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut follow: Option<Option<String>> = None;
    let reply = match BufReader::new(read).read_line(&mut line).await {
        Err(e) => Reply::invalid(format!("reading the request: {e}")),
        Ok(_) => match cred {
            Err(e) => {
                let reason = format!("cannot identify the caller: {e}");
                refuse(Refusal {
                    uid: None,
                    pid: None,
                    line: line.trim_end().to_string(),
                    reason: reason.clone(),
                });
                Reply::denied(reason)
            }
            Ok(c) if !control::authorised(c.uid(), c.gid(), c.pid(), group) => {
                let reason = format!(
                    "permission denied: user {} is neither root nor in the vlanguard operators' group{}",
                    control::user_name(c.uid()),
                    if group.is_none() {
                        " (the daemon allows root only; see run --group)"
                    } else {
                        ""
                    }
                );
                refuse(Refusal {
                    uid: Some(c.uid()),
                    pid: c.pid(),
                    line: line.trim_end().to_string(),
                    reason: reason.clone(),
                });
                Reply::denied(reason)
            }
            Ok(c) => match serde_json::from_str::<Request>(&line) {
                Err(e) => Reply::invalid(format!("bad request: {e}")),
                Ok(request) => {
                    if let Request::Events { device, follow: true } = &request {
                        follow = Some(device.clone());
                    }
                    let (tx, rx) = oneshot::channel();
                    if calls.send(Call { request, uid: c.uid(), reply: tx }).await.is_err() {
                        return;
                    }
                    rx.await.unwrap_or_else(|_| Reply::invalid("the daemon is stopping"))
                }
            },
        },
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    if write.write_all(out.as_bytes()).await.is_err() || !reply.ok {
        return;
    }
    // `events --follow`: every new event, until the caller goes away.
    if let Some(device) = follow {
        let mut rx = followers.subscribe();
        loop {
            let e = match rx.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if device.as_deref().is_some_and(|d| !e.involves(d)) {
                continue;
            }
            let mut line = serde_json::to_string(&e).unwrap_or_default();
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

fn iface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `buf`.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return ifindex.to_string();
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
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

/// An address or network as an operator writes it.
fn parse_net(text: &str) -> anyhow::Result<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow::anyhow!("{text:?} is neither an address nor a CIDR"))
}

/// Scan detection as `policy` configures it (the management networks are
/// never blocked by it).
fn detector(policy: &Resolved) -> Option<scan::Detector> {
    policy.scan_detection.map(|c| scan::Detector::new(c, policy.management.clone()))
}
