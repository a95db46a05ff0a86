//! Intrusion prevention in the namespace lab: a per-device rate limit cuts
//! a flood to the configured rate; scan detection blocks a source that
//! probes many denied ports, and leaves an ordinary client alone.

use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{self, Lab, PUMP},
    monotonic_second, privileged,
};

const LIMIT: u64 = 200;

#[test]
fn a_flood_towards_a_device_is_cut_to_its_rate_limit() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let policy = lab::policy("").replacen(
        "mac = \"02:00:00:00:00:07\"\n",
        &format!("mac = \"02:00:00:00:00:07\"\nrate_limit = {{ packets_per_second = {LIMIT} }}\n"),
        1,
    );
    fs::write(&lab.policy_file, policy).expect("policy");
    lab.start_daemon();

    // The pump counts what arrives on udp/5005 (allowed from nurses).
    let rx = lab
        .in_ns("pump", || lab::udp_receive(5005, Duration::from_secs(2), Duration::from_secs(12)));
    thread::sleep(Duration::from_millis(300));
    // The nurse station floods for 3 s (at most 30,000 datagrams), noting
    // which seconds of the program's clock the flood touched.
    let dst: SocketAddr = format!("{PUMP}:5005").parse().expect("address");
    let (sent, windows) = lab
        .in_ns("nurse", move || {
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            let (start, mut seconds, mut sent) = (Instant::now(), Vec::new(), 0u32);
            while start.elapsed() < Duration::from_secs(3) && sent < 30_000 {
                let s = monotonic_second();
                if seconds.last() != Some(&s) {
                    seconds.push(s);
                }
                let _ = sock.send_to(&sent.to_be_bytes(), dst);
                sent += 1;
                if sent % 10 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            (sent, seconds.len() as u64)
        })
        .join()
        .expect("sender");
    let got = rx.join().expect("receiver").len() as u64;
    // Every second window the flood touched lets at most LIMIT through
    // (and a few more where CPUs race at the limit); the first and last
    // windows are partial.
    let (most, least) = (LIMIT * windows + 4 * windows, LIMIT * windows.saturating_sub(2));
    eprintln!(
        "rate limit {LIMIT}/s: sent {sent} in {windows} one-second windows, {got} arrived \
         ({:.3} of {LIMIT} x windows)",
        got as f64 / (LIMIT * windows) as f64
    );
    assert!(sent as u64 > 4 * LIMIT * windows / 2, "the flood must exceed the limit: {sent}");
    assert!((least..=most).contains(&got), "{got} arrived, expected {least}..={most}");
    let stats = lab.cli(&["stats", "--device", "pump", "--json"]);
    assert!(String::from_utf8_lossy(&stats.stdout).contains("\"rate-limited\""));
}

#[test]
fn a_port_scan_gets_its_source_blocked_and_a_client_does_not() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let policy = lab::policy("")
        .replacen("[settings]\n", "[settings]\nmanagement = [\"10.20.5.10\"]\n", 1)
        .replacen(
            "[[vlan]]\n",
            "[settings.scan_detection]\ntargets = 20\nwindow = \"10s\"\nblock_for = \"2m\"\n\n[[vlan]]\n",
            1,
        );
    fs::write(&lab.policy_file, policy).expect("policy");
    lab.start_daemon();

    // An ordinary client: a nurse station on the allowed port, and the core
    // server trying two ports it may not use.
    assert_eq!(lab.ping("nurse", PUMP, 1), 1);
    let probe = |from: &str, ports: std::ops::Range<u16>| {
        lab.in_ns(from, move || {
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for port in ports {
                let _ = sock.send_to(b"?", (PUMP, port));
                thread::sleep(Duration::from_millis(5));
            }
        })
        .join()
        .expect("prober");
    };
    probe("core", 7000..7002);
    // The scan: 100 ports of the pump, from the nurse station, whose
    // allowed traffic then shows that the block is what stops it.
    probe("nurse", 20_000..20_100);

    let deadline = Instant::now() + Duration::from_secs(10);
    let blocks = loop {
        let out = lab.cli(&["blocks", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        if v["blocks"].as_array().is_some_and(|b| !b.is_empty()) || Instant::now() > deadline {
            break v;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let list = blocks["blocks"].as_array().expect("blocks");
    assert_eq!(list.len(), 1, "only the scanner is blocked: {blocks}");
    assert_eq!(list[0]["what"], "10.30.1.1/32", "{blocks}");
    assert!(list[0]["reason"].as_str().expect("reason").starts_with("scan: "), "{blocks}");
    let left = list[0]["remaining_secs"].as_u64().expect("remaining");
    assert!((100..=120).contains(&left), "{blocks}");
    // Its allowed traffic is blocked now too; the client is not.
    assert_eq!(lab.ping("nurse", PUMP, 1), 0, "the scanner is blocked");
    assert_eq!(lab.ping("core", lab::NURSE, 1), 0, "the scanner is blocked towards anyone");

    let events = String::from_utf8_lossy(&lab.cli(&["events", "--json"]).stdout).into_owned();
    assert!(events.contains("\"scan-detected\""), "an event reports it");
    let metrics = lab.scrape();
    assert!(
        metrics.lines().any(|l| l.starts_with("vlanguard_scans_detected_total 1")),
        "{metrics}"
    );
    let audit = fs::read_to_string(&lab.audit_log).expect("audit");
    assert!(audit.contains("vlanguard (scan detection)"), "{audit}");
}
