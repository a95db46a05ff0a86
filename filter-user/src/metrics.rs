//! Prometheus metrics, read from the maps at scrape time.
//!
//! The exposition is built with `prometheus-client` (OpenMetrics). Scrapers
//! that ask for OpenMetrics get it; the rest (`text/plain`, `*/*`) get the
//! classic 0.0.4 text format, converted from it, as Prometheus' own clients
//! negotiate (ARCHITECTURE §5).

use std::{fmt::Write as _, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// One `--iface`.
#[derive(Clone, Debug, Default)]
pub struct InterfaceSample {
    pub name: String,
    pub attached: bool,
    /// native, generic or tc.
    pub mode: String,
    /// How tags are read: `offload::TagPath::name`, or "none".
    pub tags: String,
    /// Times it lost the filter since the daemon started.
    pub gaps: u64,
    /// Seconds without the filter in all, the current gap included.
    pub unfiltered_seconds: f64,
}

/// Everything a scrape reports, taken from the daemon in one go.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub devices: Vec<DeviceSample>,
    /// Every frame, by verdict and reason.
    pub frames: Vec<FrameSample>,
    pub revision: u64,
    pub last_apply_seconds: u64,
    pub last_apply_ok: bool,
    /// (map, entries, capacity)
    pub maps: Vec<(&'static str, u64, u64)>,
    pub interfaces: Vec<InterfaceSample>,
    pub devices_configured: u64,
    /// (outcome, count): sent, suppressed (over the rate), lost (ring buffer
    /// full) by the kernel; delivered (read by the daemon).
    pub events: Vec<(&'static str, u64)>,
    /// (outcome, count): the program's identity reports for the inventory
    /// (ARP, NDP, DHCP): sent, suppressed (over the rate), lost (ring
    /// buffer full), repeated (ARP/NDP already reported lately).
    pub identity_reports: Vec<(&'static str, u64)>,
    /// Addresses bound to devices declared by MAC alone, now.
    pub learned_addresses: u64,
    /// Claims of an address bound to another device, refused, since start.
    pub address_conflicts: u64,
    /// Flows by how they came and went: created, expired, revoked, evicted.
    pub flows: Vec<(&'static str, u64)>,
    /// Sources blocked by scan detection since the daemon started.
    pub scans_detected: u64,
    /// (device, direction, rule as written, frames it let through)
    pub rule_hits: Vec<(String, &'static str, String, u64)>,
    pub inventory: InventorySample,
    /// Fleet mode only.
    pub fleet: Option<FleetSample>,
}

/// A fleet router's standing with its site.
#[derive(Clone, Debug, Default)]
pub struct FleetSample {
    pub site: String,
    /// The fleet version in force (0: none yet).
    pub applied_version: u64,
    /// Newer versions seen in etcd than the one in force.
    pub behind: u64,
    pub connected: bool,
    /// Seconds since etcd last answered (None: never since the start).
    pub since_contact: Option<f64>,
    /// (reason, versions rejected for it since the start)
    pub rejected: Vec<(&'static str, u64)>,
}

/// The inventory, as counted after its last write.
#[derive(Clone, Debug, Default)]
pub struct InventorySample {
    /// (VLAN, known: a declared device, hosts)
    pub hosts: Vec<(u16, bool, u64)>,
    /// (VLAN, hosts first recorded since the daemon started that were no
    /// declared device)
    pub new_unknown: Vec<(u16, u64)>,
    /// Hosts evicted from the full inventory since its database was made.
    pub evicted: u64,
    /// Sightings dropped since the daemon started: the batch waiting for
    /// the next write was full.
    pub sightings_dropped: u64,
    /// Writes of the database that failed since the daemon started.
    pub write_errors: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceSample {
    pub device: String,
    pub vlan: u16,
    pub direction: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FrameSample {
    pub verdict: &'static str,
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
    vlan: String,
    direction: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameLabels {
    verdict: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfaceLabels {
    interface: String,
    mode: String,
    tags: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    site: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabel {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    device: String,
    direction: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    vlan: String,
    known: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VlanLabels {
    vlan: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The OpenMetrics exposition of `s`.
pub fn openmetrics(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("vlanguard");
    register_devices(&mut registry, s);
    register_frames(&mut registry, s);
    register_maps(&mut registry, s);
    register_policy(&mut registry, s);
    register_interfaces(&mut registry, s);
    register_rules(&mut registry, s);
    register_events(&mut registry, s);
    register_inventory(&mut registry, &s.inventory);
    if let Some(f) = &s.fleet {
        register_fleet(&mut registry, f);
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Per-device packets and bytes.
fn register_devices(registry: &mut Registry, s: &Snapshot) {
    let packets = Family::<DeviceLabels, Counter>::default();
    let bytes = Family::<DeviceLabels, Counter>::default();
    for d in &s.devices {
        let labels = DeviceLabels {
            device: d.device.clone(),
            vlan: d.vlan.to_string(),
            direction: d.direction.into(),
            verdict: d.verdict.into(),
        };
        packets.get_or_create(&labels).inc_by(d.packets);
        bytes.get_or_create(&labels).inc_by(d.bytes);
    }
    registry.register(
        "device_packets",
        "Packets to (direction=in) and from (out) each device, by verdict (why frames were \
         dropped: vlanguard_frames_total, by reason)",
        packets,
    );
    registry.register("device_bytes", "Bytes to and from each device, by verdict", bytes);
}

/// Every frame, by verdict and reason.
fn register_frames(registry: &mut Registry, s: &Snapshot) {
    let frames = Family::<FrameLabels, Counter>::default();
    let frame_bytes = Family::<FrameLabels, Counter>::default();
    for f in &s.frames {
        let labels = FrameLabels { verdict: f.verdict.into(), reason: f.reason.into() };
        frames.get_or_create(&labels).inc_by(f.packets);
        frame_bytes.get_or_create(&labels).inc_by(f.bytes);
    }
    registry.register(
        "frames",
        "Every frame seen, by verdict and reason (reason=unmatched: no device involved; \
         reason=malformed: could not be parsed)",
        frames,
    );
    registry.register(
        "frame_bytes",
        "Bytes of every frame seen, by verdict and reason",
        frame_bytes,
    );
}

/// Map fill.
fn register_maps(registry: &mut Registry, s: &Snapshot) {
    let entries = Family::<MapLabels, Gauge>::default();
    let capacity = Family::<MapLabels, Gauge>::default();
    for (map, n, cap) in &s.maps {
        let labels = MapLabels { map: (*map).into() };
        entries.get_or_create(&labels).set(*n as i64);
        capacity.get_or_create(&labels).set(*cap as i64);
    }
    registry.register("map_entries", "Entries in the BPF maps", entries);
    registry.register("map_capacity", "Entries the BPF maps can hold", capacity);
}

/// The policy in force and its last apply.
fn register_policy(registry: &mut Registry, s: &Snapshot) {
    let revision = Gauge::<i64>::default();
    revision.set(s.revision as i64);
    registry.register(
        "policy_revision",
        "Revision of the policy in force: applies since the pins were created, kept across \
         restarts and upgrades",
        revision,
    );
    let applied = Gauge::<i64>::default();
    applied.set(s.last_apply_seconds as i64);
    registry.register(
        "policy_last_apply_timestamp_seconds",
        "When the policy in force was applied, seconds since the epoch",
        applied,
    );
    let ok = Gauge::<i64>::default();
    ok.set(i64::from(s.last_apply_ok));
    registry.register(
        "policy_last_apply_success",
        "1 if the last apply or reload succeeded, 0 if it was refused",
        ok,
    );
    let configured = Gauge::<i64>::default();
    configured.set(s.devices_configured as i64);
    registry.register("devices", "Devices in the policy in force", configured);
}

/// Attachments.
fn register_interfaces(registry: &mut Registry, s: &Snapshot) {
    let attached = Family::<IfaceLabels, Gauge>::default();
    let gaps = Family::<InterfaceLabel, Counter>::default();
    let unfiltered = Family::<InterfaceLabel, Counter<f64, AtomicU64>>::default();
    for i in &s.interfaces {
        let labels =
            IfaceLabels { interface: i.name.clone(), mode: i.mode.clone(), tags: i.tags.clone() };
        attached.get_or_create(&labels).set(i64::from(i.attached));
        let label = InterfaceLabel { interface: i.name.clone() };
        gaps.get_or_create(&label).inc_by(i.gaps);
        unfiltered.get_or_create(&label).inc_by(i.unfiltered_seconds);
    }
    registry.register(
        "interface_attached",
        "1 if the filter is attached to the interface; mode: native or generic XDP, or tc (TC ingress); tags: where the filter reads 802.1Q tags (in-frame, metadata, offload-disabled)",
        attached,
    );
    registry.register(
        "interface_gaps",
        "Times the interface lost the filter since the daemon started (deleted, or created again, until it was attached again)",
        gaps,
    );
    registry.register(
        "interface_unfiltered_seconds",
        "Seconds the interface was without the filter since the daemon started, the current gap included",
        unfiltered,
    );
}

/// Fleet mode: the version in force, how far behind, contact, rejections.
fn register_fleet(registry: &mut Registry, f: &FleetSample) {
    let site = SiteLabel { site: f.site.clone() };
    let gauge = |v: i64| {
        let g = Family::<SiteLabel, Gauge>::default();
        g.get_or_create(&site).set(v);
        g
    };
    registry.register(
        "fleet_applied_version",
        "The fleet policy version in force (0: none yet, the local policy)",
        gauge(f.applied_version as i64),
    );
    registry.register(
        "fleet_versions_behind",
        "Versions the site holds in etcd that are newer than the one in force",
        gauge(f.behind as i64),
    );
    registry.register(
        "fleet_connected",
        "1 while the router reaches etcd",
        gauge(i64::from(f.connected)),
    );
    let since = Family::<SiteLabel, Gauge<f64, AtomicU64>>::default();
    // Never reached since the start: as long as the process has run is
    // unknown here, so +Inf (an alert fires rather than stays quiet).
    since.get_or_create(&site).set(f.since_contact.unwrap_or(f64::INFINITY));
    registry.register(
        "fleet_seconds_since_contact",
        "Seconds since etcd last answered this router (+Inf: not since the daemon started)",
        since,
    );
    let rejected = Family::<RejectedLabels, Counter>::default();
    for (reason, n) in &f.rejected {
        rejected
            .get_or_create(&RejectedLabels { site: f.site.clone(), reason: (*reason).into() })
            .inc_by(*n);
    }
    registry.register(
        "fleet_rejected_versions",
        "Fleet versions not applied, by reason (signatures, root, rollback, expired, hash, malformed, invalid-policy)",
        rejected,
    );
}

/// Rule hits.
fn register_rules(registry: &mut Registry, s: &Snapshot) {
    let hits = Family::<RuleLabels, Counter>::default();
    for (device, direction, rule, n) in &s.rule_hits {
        let labels = RuleLabels {
            device: device.clone(),
            direction: (*direction).into(),
            rule: rule.clone(),
        };
        hits.get_or_create(&labels).inc_by(*n);
    }
    registry.register(
        "rule_hits",
        "Frames each rule let through (the first matching rule of the device is credited)",
        hits,
    );
}

/// Drop events, flows, scans and the build.
fn register_events(registry: &mut Registry, s: &Snapshot) {
    let events = Family::<EventLabels, Counter>::default();
    for (outcome, n) in &s.events {
        events.get_or_create(&EventLabels { outcome: (*outcome).into() }).inc_by(*n);
    }
    registry.register(
        "drop_events",
        "Drop events: sent by the kernel, suppressed by its per-CPU rate limit, lost to a full \
         ring buffer, delivered to the daemon",
        events,
    );

    let reports = Family::<EventLabels, Counter>::default();
    for (outcome, n) in &s.identity_reports {
        reports.get_or_create(&EventLabels { outcome: (*outcome).into() }).inc_by(*n);
    }
    registry.register(
        "identity_reports",
        "The program's reports of hosts on protected VLANs for the inventory (ARP, IPv6 \
         neighbour discovery, DHCP client messages): sent, suppressed by its per-CPU rate limit, \
         lost to a full ring buffer, repeated (an ARP or NDP host reported within five minutes, \
         not sent again)",
        reports,
    );

    let learned = Gauge::<i64>::default();
    learned.set(s.learned_addresses as i64);
    registry.register(
        "learned_addresses",
        "Addresses bound to devices declared by MAC alone, learned from what they send",
        learned,
    );
    let conflicts = Counter::<u64>::default();
    conflicts.inc_by(s.address_conflicts);
    registry.register(
        "address_conflicts",
        "Claims of an address already bound to another device (a second MAC, or a learning \
         device sending from a declared device's address), refused since the daemon started",
        conflicts,
    );

    let flows = Family::<EventLabels, Counter>::default();
    for (outcome, n) in &s.flows {
        flows.get_or_create(&EventLabels { outcome: (*outcome).into() }).inc_by(*n);
    }
    registry.register(
        "flows",
        "Tracked flows: created by an allowed opening packet, expired (idle past their \
         timeout), revoked (no longer allowed after a policy change), evicted (the least \
         recently used, to make room in a full table)",
        flows,
    );

    let scans = Counter::<u64>::default();
    scans.inc_by(s.scans_detected);
    registry.register(
        "scans_detected",
        "Sources scan detection blocked (since the daemon started)",
        scans,
    );

    let build = Family::<BuildLabels, Gauge>::default();
    build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
    registry.register("build_info", "Build of the running daemon", build);
}

/// The inventory: hosts by VLAN, known or not, and what it lost.
fn register_inventory(registry: &mut Registry, s: &InventorySample) {
    let hosts = Family::<HostLabels, Gauge>::default();
    for (vlan, known, n) in &s.hosts {
        let labels = HostLabels { vlan: vlan.to_string(), known: known.to_string() };
        hosts.get_or_create(&labels).set(*n as i64);
    }
    registry.register(
        "inventory_hosts",
        "Hosts in the inventory of protected VLANs, by VLAN; known=true: a declared device \
         (its MAC or an address), known=false: unknown (vlanguard inventory --unknown)",
        hosts,
    );
    let new = Family::<VlanLabels, Counter>::default();
    for (vlan, n) in &s.new_unknown {
        new.get_or_create(&VlanLabels { vlan: vlan.to_string() }).inc_by(*n);
    }
    registry.register(
        "inventory_new_unknown_hosts",
        "Hosts first recorded in the inventory that were no declared device, by VLAN (since \
         the daemon started)",
        new,
    );
    let evicted = Counter::<u64>::default();
    evicted.inc_by(s.evicted);
    registry.register(
        "inventory_evictions",
        "Hosts evicted from the full inventory, those seen longest ago (since its database \
         was created)",
        evicted,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(s.sightings_dropped);
    registry.register(
        "inventory_sightings_dropped",
        "Sightings of hosts not recorded because the batch waiting for the next write was \
         full, a flood of new MACs (since the daemon started)",
        dropped,
    );
    let errors = Counter::<u64>::default();
    errors.inc_by(s.write_errors);
    registry.register(
        "inventory_write_errors",
        "Writes of the inventory database that failed, a full or read-only disk (since the \
         daemon started); their sightings are lost",
        errors,
    );
}

/// OpenMetrics text to the classic Prometheus 0.0.4 format: counters are
/// named with their `_total` suffix in HELP/TYPE, `# UNIT` and `# EOF`
/// lines go.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        let _ = writeln!(out, "{}", renamed.as_deref().unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            devices: vec![DeviceSample {
                device: "pump-icu-07".into(),
                vlan: 110,
                direction: "in",
                verdict: "drop",
                packets: 50,
                bytes: 4900,
            }],
            frames: vec![
                FrameSample { verdict: "drop", reason: "not-allowed", packets: 50, bytes: 4900 },
                FrameSample { verdict: "pass", reason: "unmatched", packets: 7, bytes: 700 },
            ],
            revision: 1,
            last_apply_seconds: 1_700_000_000,
            last_apply_ok: true,
            maps: vec![("devices", 7, 524288)],
            interfaces: vec![InterfaceSample {
                name: "trunk0".into(),
                attached: true,
                mode: "native".into(),
                tags: "in-frame".into(),
                gaps: 2,
                unfiltered_seconds: 1.5,
            }],
            devices_configured: 5,
            events: vec![("sent", 3), ("suppressed", 7)],
            identity_reports: vec![("sent", 2)],
            learned_addresses: 1,
            address_conflicts: 0,
            flows: vec![("created", 4), ("revoked", 1)],
            scans_detected: 1,
            rule_hits: vec![(
                "pump-icu-07".into(),
                "in",
                "from 10.30.0.0/16 tcp port 443".into(),
                9,
            )],
            inventory: InventorySample {
                hosts: vec![(110, false, 3), (110, true, 12)],
                new_unknown: vec![(110, 4), (120, 0)],
                evicted: 2,
                sightings_dropped: 5,
                write_errors: 1,
            },
            fleet: Some(FleetSample {
                site: "north".into(),
                applied_version: 7,
                behind: 2,
                connected: false,
                since_contact: Some(95.5),
                rejected: vec![("signatures", 1), ("rollback", 0)],
            }),
        }
    }

    #[test]
    fn openmetrics_exposition_holds_the_samples() {
        let text = openmetrics(&snapshot());
        assert!(text.contains("# TYPE vlanguard_device_packets counter"), "{text}");
        assert!(text.contains(
            "vlanguard_device_packets_total{device=\"pump-icu-07\",vlan=\"110\",direction=\"in\",verdict=\"drop\"} 50"
        ), "{text}");
        assert!(
            text.contains("vlanguard_frames_total{verdict=\"pass\",reason=\"unmatched\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "vlanguard_interface_attached{interface=\"trunk0\",mode=\"native\",tags=\"in-frame\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("vlanguard_interface_gaps_total{interface=\"trunk0\"} 2"), "{text}");
        assert!(
            text.contains("vlanguard_interface_unfiltered_seconds_total{interface=\"trunk0\"} 1.5"),
            "{text}"
        );
        assert!(text.contains("vlanguard_policy_last_apply_success 1"), "{text}");
        assert!(text.contains(
            "vlanguard_rule_hits_total{device=\"pump-icu-07\",direction=\"in\",rule=\"from 10.30.0.0/16 tcp port 443\"} 9"
        ), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn the_inventory_is_counted_by_vlan_and_known() {
        let text = openmetrics(&snapshot());
        for line in [
            "# TYPE vlanguard_inventory_hosts gauge",
            "vlanguard_inventory_hosts{vlan=\"110\",known=\"false\"} 3",
            "vlanguard_inventory_hosts{vlan=\"110\",known=\"true\"} 12",
            "# TYPE vlanguard_inventory_new_unknown_hosts counter",
            "vlanguard_inventory_new_unknown_hosts_total{vlan=\"110\"} 4",
            // A VLAN with none yet is there at 0, so the first one is an increase.
            "vlanguard_inventory_new_unknown_hosts_total{vlan=\"120\"} 0",
            "vlanguard_inventory_evictions_total 2",
            "vlanguard_inventory_sightings_dropped_total 5",
            "vlanguard_inventory_write_errors_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn a_fleet_router_reports_its_version_lag_contact_and_rejections() {
        let text = openmetrics(&snapshot());
        for line in [
            "vlanguard_fleet_applied_version{site=\"north\"} 7",
            "vlanguard_fleet_versions_behind{site=\"north\"} 2",
            "vlanguard_fleet_connected{site=\"north\"} 0",
            "vlanguard_fleet_seconds_since_contact{site=\"north\"} 95.5",
            "vlanguard_fleet_rejected_versions_total{site=\"north\",reason=\"signatures\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let mut local = snapshot();
        local.fleet = None;
        assert!(!openmetrics(&local).contains("fleet"), "no fleet metrics without fleet mode");
    }

    #[test]
    fn classic_format_names_counters_with_total_and_has_no_eof() {
        let classic = to_classic(&openmetrics(&snapshot()));
        assert!(classic.contains("# TYPE vlanguard_device_packets_total counter"), "{classic}");
        assert!(classic.contains("# HELP vlanguard_device_packets_total Packets"), "{classic}");
        assert!(classic.contains("# TYPE vlanguard_policy_revision gauge"), "{classic}");
        assert!(!classic.contains("# EOF"));
        let cases = [
            (
                "# TYPE a counter\n# HELP a x y\na_total 1\n# EOF\n",
                "# TYPE a_total counter\n# HELP a_total x y\na_total 1\n",
            ),
            ("# TYPE g gauge\n# UNIT g seconds\ng 2\n# EOF\n", "# TYPE g gauge\ng 2\n"),
        ];
        for (input, want) in cases {
            assert_eq!(to_classic(input), want);
        }
    }

    #[test]
    fn negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
