//! `/metrics` and the counters as named samples. The HTTP task only
//! formats: every scrape asks the main loop, which reads the maps at that
//! moment (`crate::metrics` renders the text).

use std::{
    collections::{BTreeMap, HashMap},
    time::SystemTime,
};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use super::{Daemon, log};
use filter_common::Direction;

use crate::{
    datapath::offload::TagPath,
    diff,
    metrics::{self as exposition, DeviceSample, FrameSample, InventorySample, Snapshot},
    policy::ResolvedDevice,
};

/// (map, entries in use, capacity), as `Snapshot::maps` has them.
type MapUse = (&'static str, u64, u64);

pub(super) fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let std = std::net::TcpListener::bind(addr)
        .with_context(|| format!("metrics address {addr}: cannot listen (see --metrics-addr)"))?;
    std.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(std)?)
}

/// `GET /metrics`: the main loop reads the maps; this task only formats.
pub(super) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    scrapes: mpsc::Sender<oneshot::Sender<String>>,
) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(scrapes);
    if let Err(e) = axum::serve(listener, app).await {
        log(&format!("metrics server: {e}"));
    }
}

/// One scrape: the text from the main loop, in the format the scraper
/// accepts (OpenMetrics or the classic text format).
async fn scrape(
    axum::extract::State(scrapes): axum::extract::State<mpsc::Sender<oneshot::Sender<String>>>,
    headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    use axum::http::{StatusCode, header};
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
    if exposition::wants_openmetrics(accept) {
        (StatusCode::OK, [(header::CONTENT_TYPE, exposition::OPENMETRICS)], text)
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, exposition::CLASSIC)],
            exposition::to_classic(&text),
        )
    }
}

impl Daemon {
    /// A scrape asked for the text. A failed map read is logged and never
    /// fails the scrape: what could be read is reported.
    pub(super) fn scrape(&self, reply: oneshot::Sender<String>) {
        let snapshot = self.snapshot().unwrap_or_else(|e| {
            log(&format!("metrics: reading the maps: {e:#}"));
            Snapshot::default()
        });
        let _ = reply.send(exposition::openmetrics(&snapshot));
    }

    /// Per-device counters, named: what `stats`, the console tables and
    /// `/metrics` all report.
    pub(super) fn device_samples(&self) -> anyhow::Result<Vec<DeviceSample>> {
        let names = self.filter.slot_names();
        let vlans: HashMap<&str, u16> =
            self.policy.devices.iter().map(|d| (d.name.as_str(), d.vlan)).collect();
        Ok(self
            .filter
            .device_stats()?
            .iter()
            .filter_map(|(k, c)| {
                let device = names.get(&k.slot)?;
                Some(DeviceSample {
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
    pub(super) fn frame_samples(&self) -> anyhow::Result<Vec<FrameSample>> {
        Ok(self
            .filter
            .global_stats()?
            .iter()
            .map(|((v, r), c)| FrameSample {
                verdict: v.name(),
                reason: r.name(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect())
    }

    /// What `/metrics` reports, read from the maps now.
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let devices = self.device_samples()?;
        let frames = self.frame_samples()?;
        let flows = self.filter.flow_stats()?;
        Ok(Snapshot {
            devices,
            frames,
            revision: self.revision,
            last_apply_seconds: self
                .applied_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            last_apply_ok: self.last_apply_ok,
            maps: self.map_use(flows.live)?,
            scans_detected: self.events.scans_detected(),
            flows: vec![
                ("created", flows.created),
                ("expired", flows.expired),
                ("revoked", flows.revoked),
                ("evicted", flows.evicted),
            ],
            interfaces: self.interface_samples(),
            devices_configured: self.policy.devices.len() as u64,
            rule_hits: self.rule_hits()?,
            events: {
                let [sent, suppressed, lost] = self.filter.event_stats()?;
                vec![
                    ("sent", sent),
                    ("suppressed", suppressed),
                    ("lost", lost),
                    ("delivered", self.events.recent().delivered),
                ]
            },
            learned_addresses: self.learning.bindings.len() as u64,
            address_conflicts: self.learning.conflicts,
            identity_reports: {
                let [sent, suppressed, lost, repeated] = self.filter.identity_stats()?;
                vec![
                    ("sent", sent),
                    ("suppressed", suppressed),
                    ("lost", lost),
                    ("repeated", repeated),
                ]
            },
            inventory: self.inventory_sample(),
            fleet: self.fleet.as_ref().map(super::fleet::Fleet::samples),
        })
    }

    /// The inventory's counts as of its last write; every protected VLAN
    /// is there, at 0 if it has no host yet (so the first is an increase).
    fn inventory_sample(&self) -> InventorySample {
        let tally = self.inventory.tally();
        let protected = self.policy.vlans.iter().filter(|v| v.protected).map(|v| v.id);
        let mut hosts: BTreeMap<(u16, bool), u64> =
            protected.clone().flat_map(|v| [((v, false), 0), ((v, true), 0)]).collect();
        hosts.extend(tally.census.hosts);
        let mut new_unknown: BTreeMap<u16, u64> = protected.map(|v| (v, 0)).collect();
        new_unknown.extend(tally.new_unknown);
        InventorySample {
            hosts: hosts.into_iter().map(|((vlan, known), n)| (vlan, known, n)).collect(),
            new_unknown: new_unknown.into_iter().collect(),
            evicted: tally.census.evicted,
            sightings_dropped: self.inventory.sightings_dropped(),
            write_errors: tally.write_errors,
        }
    }

    /// Each map's entries in use against its capacity; `flows`: live flows.
    fn map_use(&self, flows: u64) -> anyhow::Result<Vec<MapUse>> {
        use filter_common as c;
        let occ = self.filter.occupancy();
        Ok(vec![
            ("device_addresses", occ.device_addrs as u64, u64::from(c::MAX_DEVICE_ADDRS)),
            ("protected_networks", occ.protected_nets as u64, u64::from(c::MAX_PROTECTED_NETS)),
            ("rules", occ.rule_entries as u64, u64::from(c::GENERATIONS * c::MAX_RULE_ENTRIES)),
            ("peer_networks", occ.peer_nets as u64, u64::from(c::GENERATIONS * c::MAX_PEER_NETS)),
            (
                "device_counters",
                self.filter.slot_names().len() as u64,
                u64::from(self.filter.device_capacity()),
            ),
            ("flows", flows, u64::from(c::MAX_FLOWS)),
            ("blocks", self.filter.blocks()?.len() as u64, u64::from(c::MAX_BLOCKS)),
            (
                "quarantined_devices",
                self.filter.quarantined()?.len() as u64,
                u64::from(c::MAX_DEVICE_SLOTS),
            ),
        ])
    }

    /// Each `--iface`: attached, hook mode, tag path, gaps.
    fn interface_samples(&self) -> Vec<crate::metrics::InterfaceSample> {
        let mode = format!("{:?}", self.config.mode).to_lowercase();
        self.config
            .ifaces
            .iter()
            .map(|i| {
                let (attached, tags, health) = self.interface_state(i);
                crate::metrics::InterfaceSample {
                    name: i.clone(),
                    attached,
                    mode: if tags == Some(TagPath::Metadata) { "tc".into() } else { mode.clone() },
                    tags: tags.map_or("none", TagPath::name).to_string(),
                    gaps: health.gaps,
                    unfiltered_seconds: health.unfiltered_now().as_secs_f64(),
                }
            })
            .collect()
    }

    /// Frames each rule let through: (device, direction, rule, frames).
    fn rule_hits(&self) -> anyhow::Result<Vec<(String, &'static str, String, u64)>> {
        let names = self.filter.slot_names();
        let by_name: HashMap<&str, &ResolvedDevice> =
            self.policy.devices.iter().map(|d| (d.name.as_str(), d)).collect();
        Ok(self
            .filter
            .rule_hits()?
            .into_iter()
            .filter_map(|(k, n)| {
                let name = names.get(&k.slot)?;
                let d = by_name.get(name.as_str())?;
                let dir = Direction::from_u8(k.direction)?;
                let rules = match dir {
                    Direction::In => &d.allow_in,
                    Direction::Out => &d.allow_out,
                };
                let rule = rules.get(usize::from(k.rule))?;
                Some((name.clone(), dir.name(), short(&diff::rule_text(rule, dir)), n))
            })
            .collect())
    }
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
