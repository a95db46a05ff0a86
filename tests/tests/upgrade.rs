//! Upgrades without a gap: with traffic flowing, the daemon is replaced by
//! a build whose eBPF program differs (`VLANGUARD_VARIANT_BIN`, built by
//! `cargo xtask test` with `VLANGUARD_EBPF_VARIANT=1`); the new daemon swaps
//! its program into the pinned links in place. Not one allowed datagram is
//! lost, not one blocked datagram gets through, `status` shows the new
//! program; a downgrade back works the same way.

use std::{net::UdpSocket, path::PathBuf, thread, time::Duration};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use filter_common::{
    Addr, Counter, CounterLine, DeviceCounters, DeviceName, Direction, FlowKey, FlowValue,
    NS_PER_SEC, Reason, RuleHitKey, RuleHitLine, StatKey, V6Net, V6Table, Verdict, flow_state,
    ipproto, maps, v6table,
};
use filter_user::addr::key as mapped;
use vlanguard_tests::{
    lab::{self, Lab, NURSE, PUMP, socket_addr, udp_receive, udp_send},
    privileged,
};

const SENT: u32 = 600;
const GAP: Duration = Duration::from_millis(5);

fn tag(lab: &Lab) -> String {
    let out = lab.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    json["program_tag"].as_str().expect("program tag").to_string()
}

/// Replaces the running daemon by `bin` while an allowed stream (nurse ->
/// pump, UDP 5000) and a blocked one (unknown host -> nurse) flow; returns
/// (allowed received, blocked received) and the new daemon's log.
fn replace_under_traffic(lab: &mut Lab, bin: &std::path::Path) -> (usize, usize, String) {
    let allowed_rx =
        lab.in_ns("pump", || udp_receive(5000, Duration::from_secs(2), Duration::from_secs(12)));
    let blocked_rx =
        lab.in_ns("nurse", || udp_receive(5001, Duration::from_secs(2), Duration::from_secs(6)));
    thread::sleep(Duration::from_millis(200));
    let allowed_tx = lab.in_ns("nurse", || udp_send(socket_addr(PUMP, 5000), SENT, GAP));
    let blocked_tx = lab.in_ns("rogue", || udp_send(socket_addr(NURSE, 5001), SENT, GAP));
    thread::sleep(Duration::from_millis(500));
    lab.stop_daemon(libc::SIGTERM);
    let log = lab.start_daemon_as(bin);
    allowed_tx.join().expect("sender");
    blocked_tx.join().expect("sender");
    let allowed = allowed_rx.join().expect("receiver").len();
    let blocked = blocked_rx.join().expect("receiver").len();
    (allowed, blocked, log)
}

/// Every upgrade test's start: the lab with the first build's daemon
/// running, and the second build to upgrade to.
struct Upgrade {
    lab: Lab,
    variant: PathBuf,
}

impl Upgrade {
    /// The lab and its daemon, started as usual; `None` (skip the test)
    /// without root or, outside CI, without the second build.
    fn start() -> Option<Upgrade> {
        Upgrade::start_with(|_| {}, &[])
    }

    /// As [`Upgrade::start`], with `prepare` run on the lab before the
    /// daemon starts with `args`.
    fn start_with(prepare: impl FnOnce(&Lab), args: &[&str]) -> Option<Upgrade> {
        if !privileged() {
            return None;
        }
        let variant = variant()?;
        let mut lab = Lab::new();
        prepare(&lab);
        lab.start_daemon_with(args);
        Some(Upgrade { lab, variant })
    }

    /// Where the daemon pins the maps.
    fn maps_dir(&self) -> PathBuf {
        self.lab.pin_dir.join("maps")
    }

    /// The second build takes over from the first (stopped here unless
    /// the test stopped it already) and says it replaced the pinned
    /// program; its log.
    fn upgrade(&mut self) -> String {
        self.upgrade_with(&[])
    }

    /// [`Upgrade::upgrade`] with extra `vlanguard run` arguments.
    fn upgrade_with(&mut self, args: &[&str]) -> String {
        if self.lab.daemon_running() {
            self.lab.stop_daemon(libc::SIGTERM);
        }
        let log = self.lab.start_daemon_as_with(&self.variant, args);
        assert!(log.contains("replaced the pinned program"), "{log}");
        log
    }

    /// The pump's counter slot.
    fn pump_slot(&self) -> u32 {
        pump_slot(&self.maps_dir())
    }

    /// The sum of the metric `name`'s samples whose lines hold all of
    /// `labels`.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        vlanguard_tests::sample(&self.lab.scrape(), name, labels)
    }

    /// Frames to the pump its inbound rules let through, by the metrics.
    fn pump_rule_hits(&self) -> f64 {
        self.metric("vlanguard_rule_hits_total", &["device=\"pump\"", "direction=\"in\""])
    }

    /// Frames to the pump that passed, by the metrics.
    fn pump_passed(&self) -> f64 {
        self.metric(
            "vlanguard_device_packets_total",
            &["device=\"pump\"", "direction=\"in\"", "verdict=\"pass\""],
        )
    }

    /// The per-device counters' capacity, by the metrics.
    fn counter_capacity(&self) -> f64 {
        self.metric("vlanguard_map_capacity", &["map=\"device_counters\""])
    }
}

/// The second build, or `None` (skip) outside CI.
fn variant() -> Option<PathBuf> {
    let variant = std::env::var_os("VLANGUARD_VARIANT_BIN").map(PathBuf::from);
    if variant.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: VLANGUARD_VARIANT_BIN must name the second build (`cargo xtask test` makes it)"
        );
        eprintln!("skipped: VLANGUARD_VARIANT_BIN is not set");
    }
    variant
}

/// The pump's counter slot, from the pinned `DEVICE_SLOTS`.
fn pump_slot(maps_dir: &std::path::Path) -> u32 {
    let slots: HashMap<MapData, DeviceName, u32> = HashMap::try_from(Map::HashMap(
        MapData::from_pin(maps_dir.join(maps::DEVICE_SLOTS)).expect("device slots"),
    ))
    .expect("hash map");
    slots
        .iter()
        .filter_map(Result::ok)
        .find(|(name, _)| name.bytes.starts_with(b"pump\0"))
        .map(|(_, slot)| slot)
        .expect("the pump's slot")
}

/// A new map as another version would have left it, pinned at `pin`.
fn pin_map(
    pin: &std::path::Path,
    name: &str,
    map_type: u32,
    (key_size, value_size): (u32, u32),
    entries: u32,
    flags: u32,
) -> MapData {
    let def = aya_obj::Map::new_from_params(map_type, key_size, value_size, entries, flags);
    let map = MapData::create(def, name, None).expect("create the map");
    map.pin(pin).expect("pin the map");
    map
}

#[test]
fn a_new_program_takes_over_without_losing_or_leaking_a_packet() {
    let Some(Upgrade { mut lab, variant }) = Upgrade::start() else { return };
    let first = tag(&lab);
    let revision = |lab: &Lab| {
        let out = lab.cli(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["revision"]
            .as_u64()
            .expect("revision")
    };
    let before = revision(&lab);

    let (allowed, blocked, log) = replace_under_traffic(&mut lab, &variant);
    assert_eq!(revision(&lab), before + 1, "the revision goes on across the upgrade");
    assert!(log.contains("replaced the pinned program"), "{log}");
    assert_eq!(allowed, SENT as usize, "allowed datagrams lost across the upgrade");
    assert_eq!(blocked, 0, "blocked datagrams let through across the upgrade");
    let second = tag(&lab);
    assert_ne!(first, second, "status shows the new program");
    assert!(log.contains(&second), "{log}");
    // The policy, counters and interfaces carried over.
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    assert!(lab.xdp_attached("trunk0"));

    // Downgrade: the same, back to the first build.
    let (allowed, blocked, log) = replace_under_traffic(&mut lab, &lab::vlanguard_bin());
    assert!(log.contains("replaced the pinned program"), "{log}");
    assert_eq!(
        (allowed, blocked),
        (SENT as usize, 0),
        "(allowed, blocked) across the downgrade: {log}"
    );
    assert_eq!(tag(&lab), first);
    // A restart of the same version adopts the program as it is.
    lab.stop_daemon(libc::SIGTERM);
    let log = lab.start_daemon();
    assert!(log.contains("adopted the pinned program"), "{log}");
}

/// UDP datagrams from the pump's port 5000 to the nurse's port 40000 (the
/// answer to a nurse -> pump:5000 flow; no rule lets the pump send it) that
/// arrive.
fn replies(lab: &Lab) -> usize {
    let rx =
        lab.in_ns("nurse", || udp_receive(40_000, Duration::from_secs(1), Duration::from_secs(3)));
    thread::sleep(Duration::from_millis(200));
    lab.in_ns("pump", || {
        let sock = UdpSocket::bind("0.0.0.0:5000").expect("bind the pump's port");
        for seq in 0..20u32 {
            let _ = sock.send_to(&seq.to_be_bytes(), socket_addr(NURSE, 40_000));
            thread::sleep(Duration::from_millis(10));
        }
    })
    .join()
    .expect("sender");
    rx.join().expect("receiver").len()
}

/// An upgrade from a version whose flows lived in an LRU hash (`FLOWS`):
/// the open flows move into the new cache before the new program takes
/// over, so the answers of connections open across the upgrade still
/// arrive, and the old table's pin goes.
#[test]
fn flows_of_the_earlier_flow_table_carry_over() {
    let Some(mut up) = Upgrade::start() else { return };
    assert_eq!(replies(&up.lab), 0, "without its flow the pump's answer is not allowed");

    // The earlier version's table, as it left it: the flow nurse:40000 ->
    // pump:5000, open for another minute.
    let mut key = FlowKey::default();
    let nurse = Addr(mapped(NURSE.parse().expect("address")));
    let pump = Addr(mapped(PUMP.parse().expect("address")));
    let nurse_lo = key.set(&nurse, 40_000, &pump, 5000, ipproto::UDP);
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    let now_ns = now.tv_sec as u64 * NS_PER_SEC + now.tv_nsec as u64;
    let value = FlowValue {
        expires_ns: now_ns + 60 * NS_PER_SEC,
        epoch: 0,
        open_port: 5000,
        lo_opened: u8::from(nurse_lo),
        state: flow_state::ESTABLISHED,
    };
    const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
    let pin = up.maps_dir().join(maps::LEGACY_FLOWS);
    let legacy = pin_map(&pin, maps::LEGACY_FLOWS, BPF_MAP_TYPE_LRU_HASH, (40, 16), 1 << 16, 0);
    let mut table: HashMap<MapData, FlowKey, FlowValue> =
        HashMap::try_from(Map::LruHashMap(legacy)).expect("hash map");
    table.insert(key, value, 0).expect("insert the flow");
    drop(table);

    let log = up.upgrade();
    assert!(log.contains("1 open flow(s) carried over"), "{log}");
    assert!(!pin.exists(), "the old table's pin is removed");
    assert_eq!(replies(&up.lab), 20, "the carried flow lets the pump's answers through");
}

/// An upgrade from a version that counted per device in a per-CPU hash
/// keyed by (slot, direction, verdict, reason) (`DEVICE_STATS`): its counts
/// are added into the new per-device lines, so no device's totals go back,
/// and the old map's pin goes.
#[test]
fn device_counters_of_the_earlier_layout_carry_over() {
    let Some(mut up) = Upgrade::start() else { return };
    let maps_dir = up.maps_dir();
    let pump = up.pump_slot();
    let in_drops = |lab: &Lab| -> u64 {
        let out = lab.cli(&["stats", "--device", "pump", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["devices"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["direction"] == "in" && r["verdict"] == "drop")
            .map(|r| r["packets"].as_u64().expect("count"))
            .sum()
    };
    let before = in_drops(&up.lab);

    // The earlier version's map as it left it: 1,000 dropped packets to the
    // pump on the first CPU, 234 on the others.
    const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
    let pin = maps_dir.join(maps::LEGACY_DEVICE_STATS);
    let legacy =
        pin_map(&pin, maps::LEGACY_DEVICE_STATS, BPF_MAP_TYPE_PERCPU_HASH, (8, 16), 1 << 20, 1);
    let mut old: PerCpuHashMap<MapData, StatKey, Counter> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(legacy)).expect("per-CPU hash");
    let cpus = aya::util::nr_cpus().expect("CPUs");
    let per_cpu: Vec<Counter> = (0..cpus)
        .map(|cpu| Counter { packets: if cpu == 0 { 1000 } else { 234 }, bytes: 64 })
        .collect();
    let key = StatKey {
        slot: pump,
        direction: Direction::In as u8,
        verdict: Verdict::Drop as u8,
        reason: Reason::NotAllowed as u8,
        _pad: 0,
    };
    old.insert(key, PerCpuValues::try_from(per_cpu).expect("values"), 0).expect("insert");
    drop(old);

    up.upgrade();
    assert!(!pin.exists(), "the old map's pin is removed");
    let carried = 1000 + 234 * (cpus as u64 - 1);
    assert_eq!(in_drops(&up.lab), before + carried, "the old counts are the pump's");
}

/// An upgrade from a version that counted per device in per-CPU arrays
/// (`DEVICE_COUNTERS`, `RULE_HIT_LINES`): their counts and rule hits are
/// added into the new lines, which take the old counters' size, and the
/// old maps' pins go.
#[test]
fn per_cpu_counters_of_the_earlier_layout_carry_over() {
    let Some(mut up) = Upgrade::start() else { return };
    let maps_dir = up.maps_dir();
    let pump = up.pump_slot();
    assert_eq!((up.pump_passed(), up.pump_rule_hits()), (0.0, 0.0), "no traffic yet");
    up.lab.stop_daemon(libc::SIGTERM);

    // The earlier version's maps as it left them, of 256 devices (no lines
    // yet): 1,000 frames to the pump passed on the first CPU, 234 on the
    // others, 900 and 200 of them by its first inbound rule, 3 by its
    // fourth.
    std::fs::remove_file(maps_dir.join(maps::COUNTER_LINES)).expect("unpin the lines");
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    let cpus = aya::util::nr_cpus().expect("CPUs");
    let pin = |name: &str, value_size: u32| {
        let path = maps_dir.join(name);
        let map = pin_map(&path, name, BPF_MAP_TYPE_PERCPU_ARRAY, (4, value_size), 256, 0);
        (path, map)
    };
    let (counters_pin, counters) = pin(maps::LEGACY_DEVICE_COUNTERS, 96);
    let mut counters: PerCpuArray<MapData, DeviceCounters> =
        PerCpuArray::try_from(Map::PerCpuArray(counters)).expect("per-CPU array");
    let per_cpu: Vec<DeviceCounters> = (0..cpus)
        .map(|cpu| {
            let mut c = DeviceCounters::default();
            c.lines[Direction::In as usize][Verdict::Pass as usize] =
                Counter { packets: if cpu == 0 { 1000 } else { 234 }, bytes: 64 };
            c
        })
        .collect();
    counters.set(pump, PerCpuValues::try_from(per_cpu).expect("values"), 0).expect("set");
    let (lines_pin, lines) = pin(maps::LEGACY_RULE_HIT_LINES, 64);
    let mut lines: PerCpuArray<MapData, RuleHitLine> =
        PerCpuArray::try_from(Map::PerCpuArray(lines)).expect("per-CPU array");
    let per_cpu: Vec<RuleHitLine> = (0..cpus)
        .map(|cpu| {
            let mut l = RuleHitLine::default();
            l.hits[Direction::In as usize] = [if cpu == 0 { 900 } else { 200 }, 0, 0, 3];
            l
        })
        .collect();
    lines.set(pump, PerCpuValues::try_from(per_cpu).expect("values"), 0).expect("set");
    drop((counters, lines));

    up.upgrade();
    assert!(!counters_pin.exists() && !lines_pin.exists(), "the old maps' pins are removed");
    assert_eq!(up.counter_capacity(), 256.0, "the lines take the old counters' size");
    let others = cpus as f64 - 1.0;
    assert_eq!(up.pump_passed(), 1000.0 + 234.0 * others, "the old counts are the pump's");
    let carried = 900.0 + 200.0 * others + 3.0 * cpus as f64;
    assert_eq!(up.pump_rule_hits(), carried, "the old rule hits are the pump's");
    let before = up.pump_passed();
    assert_eq!(up.lab.udp("nurse", "pump", PUMP, 5000), 20, "allowed traffic passes");
    let new = up.pump_passed() - before;
    assert!(new >= 20.0, "the new lines count on top: {new}");
    assert!(up.pump_rule_hits() > carried, "and their rule hits");
}

/// Rule hits an earlier version counted in the `RULE_HITS` hash for a
/// device's first rules (before the per-device lines) stay counted after
/// an upgrade, added to what the lines count from then on.
#[test]
fn rule_hits_of_the_earlier_layout_are_kept() {
    let Some(mut up) = Upgrade::start() else { return };
    let maps_dir = up.maps_dir();
    let pump = up.pump_slot();
    let opened = |up: &Upgrade| {
        up.metric("vlanguard_frames_total", &["verdict=\"pass\"", "reason=\"allowed\""])
    };
    assert_eq!(up.pump_rule_hits(), 0.0, "no traffic yet");
    up.lab.stop_daemon(libc::SIGTERM);

    // The earlier version's hash as it left it: the pump's first inbound
    // rule credited with 1,000 frames on the first CPU, 234 on the others.
    let mut old: PerCpuHashMap<MapData, RuleHitKey, u64> = PerCpuHashMap::try_from(
        Map::PerCpuHashMap(MapData::from_pin(maps_dir.join(maps::RULE_HITS)).expect("rule hits")),
    )
    .expect("per-CPU hash");
    let cpus = aya::util::nr_cpus().expect("CPUs");
    let per_cpu: Vec<u64> = (0..cpus).map(|cpu| if cpu == 0 { 1000 } else { 234 }).collect();
    let key = RuleHitKey { slot: pump, direction: Direction::In as u8, rule: 0, _pad: 0 };
    old.insert(key, PerCpuValues::try_from(per_cpu).expect("values"), 0).expect("insert");
    drop(old);

    up.upgrade();
    assert!(maps_dir.join(maps::COUNTER_LINES).exists(), "the lines are pinned");
    let carried = (1000 + 234 * (cpus as u64 - 1)) as f64;
    assert_eq!(up.pump_rule_hits(), carried, "the old counts are the pump's");
    let before = opened(&up);
    assert_eq!(up.lab.udp("nurse", "pump", PUMP, 5000), 20, "allowed traffic passes");
    let new = opened(&up) - before;
    assert!(new >= 1.0, "the first datagram is allowed by a rule");
    assert_eq!(up.pump_rule_hits(), carried + new, "the lines count on top of the carried hits");
}

/// After a downgrade and an upgrade back, the maps the earlier version did
/// not know (the IPv6 subnet table, the counter lines) hold what it left
/// stale: the upgrade clears those the running program does not use.
#[test]
fn maps_an_earlier_version_did_not_keep_are_cleared() {
    let Some(mut up) = Upgrade::start() else { return };
    let maps_dir = up.maps_dir();
    let pump = up.pump_slot();
    up.lab.stop_daemon(libc::SIGTERM);

    // The running program's maps replaced by ones it does not use, holding
    // what a later version left before the downgrade: 5 hits of the
    // pump's first inbound rule and 7 frames to it, and an IPv6 table of
    // another policy.
    let replace = |name: &str, map_type: u32, value_size: u32| -> MapData {
        let pin = maps_dir.join(name);
        let entries = aya::maps::MapInfo::from_pin(&pin).expect("pinned").max_entries();
        std::fs::remove_file(&pin).expect("unpin");
        pin_map(&pin, name, map_type, (4, value_size), entries, 0)
    };
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let lines = replace(maps::COUNTER_LINES, BPF_MAP_TYPE_ARRAY, 192);
    let mut lines: Array<MapData, CounterLine> = Array::try_from(Map::Array(lines)).expect("array");
    let cpus = aya::util::nr_cpus().expect("CPUs") as u32;
    let mut stale = CounterLine::default();
    stale.passed[Direction::In as usize].hits[0] = 5;
    stale.passed[Direction::In as usize].frames.packets = 7;
    lines.set(pump * cpus, stale, 0).expect("set");
    let tables = replace(maps::V6_NETS, BPF_MAP_TYPE_ARRAY, 328);
    let mut tables: Array<MapData, V6Table> = Array::try_from(Map::Array(tables)).expect("array");
    let mut other = V6Table { flags: v6table::COMPLETE, count: 1, ..V6Table::default() };
    other.nets[0] = V6Net { net_hi: 0x2001_0db8_dead_0000, mask_hi: !0xffff, ..V6Net::default() };
    for generation in 0..2 {
        tables.set(generation, other, 0).expect("set");
    }
    drop((lines, tables));

    up.upgrade();
    assert_eq!(up.pump_rule_hits(), 0.0, "the stale hits are gone");
    assert_eq!(up.pump_passed(), 0.0, "the stale counts are gone");
    let tables: Array<MapData, V6Table> = Array::try_from(Map::Array(
        MapData::from_pin(maps_dir.join(maps::V6_NETS)).expect("the table's pin"),
    ))
    .expect("array");
    for generation in 0..2 {
        let t = tables.get(&generation, 0).expect("a generation's table");
        assert_ne!(t, other, "generation {generation} still holds the stale table");
    }
    assert_eq!(up.lab.udp("nurse", "pump", PUMP, 5000), 20, "allowed traffic still passes");
}

/// Every map of `maps::ALL` is pinned from the first start, and one an
/// earlier version left unpinned (`RATE_STATE`: it did not take that map at
/// load) is pinned when a daemon adopts or upgrades the filter: the map the
/// running program uses, so what it holds (this second's rate counts)
/// stays.
#[test]
fn maps_an_earlier_version_left_unpinned_are_kept() {
    let Some(mut up) = Upgrade::start() else { return };
    let maps_dir = up.maps_dir();
    for name in maps::ALL {
        assert!(maps_dir.join(name).exists(), "{name} is not pinned");
    }
    let pin = maps_dir.join(maps::RATE_STATE);
    let id = |pin: &std::path::Path| aya::maps::MapInfo::from_pin(pin).expect("pinned").id();
    let running = id(&pin);
    up.lab.stop_daemon(libc::SIGTERM);

    // As an earlier version left it: used by the running program, not
    // pinned. The same build adopts the filter, then a new one upgrades it.
    std::fs::remove_file(&pin).expect("unpin");
    up.lab.start_daemon();
    assert_eq!(id(&pin), running, "adopting pins the running program's map");
    up.lab.stop_daemon(libc::SIGTERM);
    std::fs::remove_file(&pin).expect("unpin");
    up.upgrade();
    assert_eq!(id(&pin), running, "the new program takes the running program's map");
    assert_eq!(up.lab.udp("nurse", "pump", PUMP, 5000), 20, "allowed traffic still passes");
}

/// The per-device counters keep the size the filter was first loaded with
/// (`--device-capacity`) across an upgrade: the new build reads the pinned
/// map's size, and says so when asked for another.
#[test]
fn the_counters_keep_the_size_they_were_created_with() {
    let Some(mut up) = Upgrade::start_with(|_| {}, &["--device-capacity", "64"]) else { return };
    assert_eq!(up.counter_capacity(), 64.0);
    let lines_pin = up.maps_dir().join(maps::COUNTER_LINES);
    let log = up.upgrade_with(&["--device-capacity", "128"]);
    assert!(log.contains("--device-capacity 128 not applied"), "{log}");
    assert_eq!(up.counter_capacity(), 64.0, "the pinned size, not the one asked for");
    let lines = aya::maps::MapInfo::from_pin(&lines_pin).expect("the lines' pin");
    let cpus = aya::util::nr_cpus().expect("CPUs") as u32;
    assert_eq!(lines.max_entries(), 64 * cpus, "a line per device and CPU");
    assert_eq!(up.lab.udp("nurse", "pump", PUMP, 5000), 20, "allowed traffic still passes");
}

/// An interface enforced at TC ingress (its NIC takes VLAN tags out of
/// frames) is upgraded in place too: the new build's TC program goes into
/// the pinned TCX link, traffic between the VLANs keeps flowing.
#[test]
fn a_tc_port_takes_the_new_program_in_place() {
    let vlan_offload = |lab: &Lab| {
        lab.ethtool("r", "trunk0", "rxvlan", true);
        lab.ethtool("sw", "trs", "txvlan", true);
    };
    let Some(Upgrade { mut lab, variant }) = Upgrade::start_with(vlan_offload, &[]) else {
        return;
    };
    let hook = |lab: &Lab| {
        let out = lab.cli(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        status["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "trunk0"))
            .map(|i| i["hook"].clone())
            .expect("trunk0")
    };
    assert_eq!(hook(&lab), "tc");
    let before = tag(&lab);
    let (allowed, blocked, log) = replace_under_traffic(&mut lab, &variant);
    assert!(log.contains("replaced the pinned program"), "{log}");
    assert_ne!(tag(&lab), before);
    assert_eq!((allowed, blocked), (SENT as usize, 0), "nothing lost or leaked");
    assert_eq!(hook(&lab), "tc");
    assert_eq!(lab.ping("nurse", PUMP, 2), 2, "VLAN 110 through the TC port");
}
