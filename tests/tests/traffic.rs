//! Real traffic through the real daemon in the namespace lab, IPv4 and
//! IPv6: what the policy allows arrives (TCP connects, UDP datagrams,
//! pings), what it does not is dropped and counted with the right reason,
//! on the 802.1Q trunk (device VLANs 110 and 120) and on the uplinks.

use std::{
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{self, CORE, Lab, MONITOR, MONITOR6, NURSE, PUMP, PUMP6, ROGUE},
    privileged,
};

/// Listens on `port` (IPv4 and IPv6) in `role`'s namespace for a bounded
/// time; returns how many connections were accepted.
fn listen(lab: &Lab, role: &str, port: u16, for_: Duration) -> thread::JoinHandle<usize> {
    lab.in_ns(role, move || {
        let listener = TcpListener::bind(("::", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + for_;
        let mut accepted = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok(_) => accepted += 1,
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        accepted
    })
}

/// Whether a TCP connection from `role` to `addr` completes within 2 s.
fn connects(lab: &Lab, role: &str, addr: &str, port: u16) -> bool {
    let target = lab::socket_addr(addr, port);
    lab.in_ns(role, move || TcpStream::connect_timeout(&target, Duration::from_secs(2)).is_ok())
        .join()
        .expect("connect thread")
}

/// The daemon's `stats --json`, parsed.
fn stats(lab: &Lab) -> serde_json::Value {
    let out = lab.cli(&["stats", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Packets counted for `device` in `direction` with `verdict`.
fn counted(stats: &serde_json::Value, device: &str, direction: &str, verdict: &str) -> u64 {
    stats["devices"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["device"] == device && r["direction"] == direction && r["verdict"] == verdict)
        .map(|r| r["packets"].as_u64().expect("count"))
        .sum()
}

fn global(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["global"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["reason"] == reason)
        .map(|r| r["packets"].as_u64().expect("count"))
        .sum()
}

#[test]
fn allowed_traffic_arrives_and_the_rest_is_dropped_with_its_reason() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();

    // Pings, IPv4 and IPv6, across the uplink and the tagged trunk.
    assert_eq!(lab.ping("nurse", PUMP, 3), 3, "nurse -> pump ping (VLAN 110)");
    assert_eq!(lab.ping("nurse", PUMP6, 3), 3, "nurse -> pump ping6 (VLAN 110)");
    assert_eq!(lab.ping("nurse", MONITOR, 2), 0, "nurse -> monitor: no rule");
    assert_eq!(lab.ping("nurse", MONITOR6, 2), 0, "nurse -> monitor ping6: no rule");
    assert_eq!(lab.ping("pump", NURSE, 2), 0, "the pump may not start pings");
    assert_eq!(lab.ping("rogue", NURSE, 2), 0, "unknown host on VLAN 110");
    assert_eq!(lab.ping("core", PUMP, 2), 0, "core server -> pump: no rule");
    assert_eq!(lab.ping("nurse", ROGUE, 2), 0, "to the unknown host");
    assert_eq!(lab.ping("nurse", CORE, 2), 2, "traffic touching no device VLAN passes");

    // TCP: the pump's HTTPS is open to nurse stations, nothing else is.
    let https = listen(&lab, "pump", 443, Duration::from_secs(6));
    let other = listen(&lab, "pump", 8080, Duration::from_secs(6));
    thread::sleep(Duration::from_millis(200));
    assert!(connects(&lab, "nurse", PUMP, 443), "nurse -> pump tcp/443");
    assert!(connects(&lab, "nurse", PUMP6, 443), "nurse -> pump tcp6/443");
    assert!(!connects(&lab, "nurse", PUMP, 8080), "nurse -> pump tcp/8080 is dropped");
    assert!(!connects(&lab, "core", PUMP, 443), "core -> pump tcp/443 is dropped");
    assert_eq!(https.join().expect("listener"), 2);
    assert_eq!(other.join().expect("listener"), 0);

    // UDP, including device to device over the trunk: both sides must allow.
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5005), 20, "nurse -> pump udp/5005");
    assert_eq!(lab.udp("nurse", "pump", PUMP, 6000), 0, "nurse -> pump udp/6000");
    assert_eq!(lab.udp("pump", "mon", MONITOR, 5005), 20, "pump -> monitor udp/5005 (both allow)");
    assert_eq!(lab.udp("pump", "mon", MONITOR, 5050), 0, "pump -> monitor udp/5050 (pump may not)");
    assert_eq!(lab.udp("rogue", "mon", MONITOR, 5005), 0, "unknown host -> monitor");

    // Counters with the right reasons.
    let s = stats(&lab);
    // Openings by their rules, the rest of each flow as established.
    let passed = |dev| counted(&s, dev, "in", "pass");
    assert!(passed("pump") >= 6 + 2 + 20, "{s}");
    assert!(counted(&s, "pump", "in", "drop") >= 20, "udp/6000, tcp/8080, core: {s}");
    assert!(counted(&s, "monitor", "in", "drop") >= 4, "pings to the monitor: {s}");
    assert!(passed("monitor") >= 20, "{s}");
    assert!(counted(&s, "pump", "out", "drop") >= 2 + 20, "pings and udp/5050: {s}");
    assert!(global(&s, "unknown-device") >= 2 + 20, "the unknown host: {s}");
    assert_eq!(global(&s, "wrong-vlan"), 0, "tags on the trunk are seen: {s}");
    assert_eq!(global(&s, "malformed"), 0, "{s}");

    // Why the pump's frames were dropped: its recent drop events.
    let out = lab.cli(&["stats", "--device", "pump", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let reasons = &pump["recent_drop_reasons"];
    assert!(reasons["not-allowed"].as_u64().is_some_and(|n| n >= 1), "{pump}");
    assert!(reasons["wrong-vlan"].is_null(), "{pump}");
    let text = String::from_utf8_lossy(&lab.cli(&["stats", "--device", "pump"]).stdout).to_string();
    assert!(
        text.contains("recent drop events by reason") && text.contains("not-allowed"),
        "{text}"
    );
}
