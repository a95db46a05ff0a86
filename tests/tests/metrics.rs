//! Metrics: the daemon's `/metrics` in the namespace lab, scraped directly
//! and by a real Prometheus (Debian's `prometheus`, started by the test in
//! the router's namespace on loopback), must move exactly as the traffic
//! the test sends; `promtool check metrics` accepts the live exposition.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{Lab, MONITOR, NURSE, PUMP},
    privileged, sample,
};

/// `GET path` on 127.0.0.1:`port` inside the router namespace: the
/// response head and body of a 200, or None.
fn try_get(lab: &Lab, port: u16, path: &str, accept: &str) -> Option<(String, String)> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    lab.in_ns("r", move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| (head.to_string(), body.to_string()))
    })
    .join()
    .expect("http thread")
}

fn get(lab: &Lab, port: u16, path: &str, accept: &str) -> (String, String) {
    try_get(lab, port, path, accept).unwrap_or_else(|| panic!("GET {path} on port {port} failed"))
}

fn metrics(lab: &Lab) -> String {
    get(lab, 9880, "/metrics", "text/plain").1
}

const MONITOR_DROPS: &[&str] = &["device=\"monitor\"", "direction=\"in\"", "verdict=\"drop\""];
const PUMP_PASSES: &[&str] = &["device=\"pump\"", "direction=\"in\"", "verdict=\"pass\""];

fn flood_ping(lab: &Lab, role: &str, dst: &str, count: u32) {
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(role),
            "ping",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            dst,
        ])
        .stdout(Stdio::null())
        .status()
        .expect("ping");
    let _ = status;
}

#[test]
fn metrics_move_exactly_with_traffic_and_pass_promtool() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();

    let (head, open) =
        get(&lab, 9880, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(open.trim_end().ends_with("# EOF"));
    let (head, classic) = get(&lab, 9880, "/metrics", "*/*");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(classic.contains("# TYPE vlanguard_frames_total counter"), "{classic}");

    let before = metrics(&lab);
    flood_ping(&lab, "nurse", MONITOR, 50);
    flood_ping(&lab, "nurse", PUMP, 20);
    let after = metrics(&lab);
    let name = "vlanguard_device_packets_total";
    assert_eq!(
        sample(&after, name, MONITOR_DROPS) - sample(&before, name, MONITOR_DROPS),
        50.0,
        "{after}"
    );
    let delta = |parts| sample(&after, name, parts) - sample(&before, name, parts);
    assert_eq!(delta(PUMP_PASSES), 20.0, "{after}");
    let hits = "vlanguard_rule_hits_total";
    let echo = &[
        "device=\"pump\"",
        "direction=\"in\"",
        "rule=\"from 10.30.0.0/16 2001:db8:30::/48 icmp type 8\"",
    ];
    // The rule is credited with the frames it let through: those that
    // opened flows (every frame the rules allowed here: the pings'
    // replies are the flow's, not the reply rule's).
    let frames = "vlanguard_frames_total";
    let opens = &["verdict=\"pass\"", "reason=\"allowed\""];
    let opened = sample(&after, frames, opens) - sample(&before, frames, opens);
    assert!(opened >= 1.0, "the first ping is allowed by its rule: {after}");
    assert_eq!(sample(&after, hits, echo) - sample(&before, hits, echo), opened);
    let reply = &["device=\"pump\"", "direction=\"out\"", "icmp type 0"];
    assert_eq!(sample(&after, hits, reply) - sample(&before, hits, reply), 0.0, "{after}");
    assert_eq!(sample(&after, "vlanguard_interface_attached", &["interface=\"trunk0\""]), 1.0);
    assert_eq!(sample(&after, "vlanguard_devices", &[]), 2.0);
    assert_eq!(sample(&after, "vlanguard_policy_last_apply_success", &[]), 1.0);

    // promtool lints the classic format Prometheus' Go client serves.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    promtool.stdin.take().expect("stdin").write_all(after.as_bytes()).expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server in the router namespace, scraping the daemon every
/// second; killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query(lab: &Lab, expr: &str) -> Option<f64> {
    let encoded: String = expr
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (_, body) =
        try_get(lab, 9090, &format!("/api/v1/query?query={encoded}"), "application/json")?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Waits (bounded) until Prometheus reports `expr` = `want`.
fn wait_for(lab: &Lab, expr: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = f64::NAN;
    while Instant::now() < deadline {
        if let Some(v) = query(lab, expr) {
            last = v;
            if v == want {
                return v;
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    last
}

#[test]
fn a_real_prometheus_sees_what_the_traffic_did() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let dir = lab.dir.join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vlanguard\n    static_configs:\n      - targets: ['127.0.0.1:9880']\n",
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _prometheus = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("r"), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .args(["--web.listen-address=127.0.0.1:9090", "--storage.tsdb.retention.time=1h"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package)"),
    );

    let up = wait_for(&lab, "up{job=\"vlanguard\"}", 1.0);
    assert_eq!(
        up,
        1.0,
        "Prometheus scrapes the daemon: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    let drops = "sum(vlanguard_device_packets_total{device=\"monitor\",direction=\"in\",verdict=\"drop\"}) or vector(0)";
    let passes = "sum(vlanguard_device_packets_total{device=\"pump\",direction=\"in\",verdict=\"pass\"}) or vector(0)";
    // Let a scrape see the current values first.
    thread::sleep(Duration::from_millis(2500));
    let drops_before = query(&lab, drops).expect("query");
    let passes_before = query(&lab, passes).expect("query");

    flood_ping(&lab, "nurse", MONITOR, 50);
    flood_ping(&lab, "nurse", PUMP, 20);

    assert_eq!(wait_for(&lab, drops, drops_before + 50.0), drops_before + 50.0, "50 blocked pings");
    assert_eq!(
        wait_for(&lab, passes, passes_before + 20.0),
        passes_before + 20.0,
        "20 allowed pings"
    );
    assert_eq!(query(&lab, "vlanguard_policy_last_apply_success"), Some(1.0));
}

/// `metrics` once `name` with `parts` reads `want` (the inventory is
/// counted after its once-a-second write), bounded.
fn wait_metric(lab: &Lab, name: &str, parts: &[&str], want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(lab);
        if sample(&text, name, parts) == want || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn inventory_metrics_count_unknown_hosts_and_follow_adoption() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let hosts = "vlanguard_inventory_hosts";
    let new = "vlanguard_inventory_new_unknown_hosts_total";
    let (unknown110, known110) =
        (&["vlan=\"110\"", "known=\"false\""][..], &["vlan=\"110\"", "known=\"true\""][..]);
    // Every protected VLAN is there before any host, so the first new one
    // is an increase an alert sees.
    let start = metrics(&lab);
    for line in [
        "vlanguard_inventory_hosts{vlan=\"120\",known=\"false\"} 0",
        "vlanguard_inventory_new_unknown_hosts_total{vlan=\"110\"} 0",
        "vlanguard_inventory_sightings_dropped_total 0",
    ] {
        assert!(start.lines().any(|l| l == line), "{line}\n{start}");
    }

    // The rogue (no device, in VLAN 110's subnet) is dropped and recorded.
    assert_eq!(lab.ping("rogue", NURSE, 2), 0);
    let after = wait_metric(&lab, hosts, unknown110, 1.0);
    assert_eq!(sample(&after, hosts, unknown110), 1.0, "{after}");
    assert_eq!(sample(&after, new, &["vlan=\"110\""]), 1.0, "{after}");
    assert_eq!(sample(&after, new, &["vlan=\"120\""]), 0.0, "{after}");
    // Seen again: no new host.
    assert_eq!(lab.ping("rogue", NURSE, 2), 0);
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(sample(&metrics(&lab), new, &["vlan=\"110\""]), 1.0);

    // Adopted: counted as known at the next count, without new traffic.
    let mac = String::from_utf8_lossy(&lab.cli(&["inventory", "--unknown", "--json"]).stdout)
        .into_owned();
    let data: serde_json::Value = serde_json::from_str(&mac).expect("JSON");
    let mac = data["hosts"][0]["mac"].as_str().expect("the rogue's MAC").to_string();
    let out = lab.cli(&["inventory", "adopt", &mac, "--name", "rogue-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let adopted = wait_metric(&lab, hosts, known110, 1.0);
    assert_eq!(sample(&adopted, hosts, known110), 1.0, "{adopted}");
    assert_eq!(sample(&adopted, hosts, unknown110), 0.0, "{adopted}");
    assert_eq!(sample(&adopted, new, &["vlan=\"110\""]), 1.0, "a count of what happened");

    // A restarted daemon counts the hosts its database kept.
    lab.stop_daemon(libc::SIGTERM);
    lab.start_daemon();
    let restarted = wait_metric(&lab, hosts, known110, 1.0);
    assert_eq!(sample(&restarted, hosts, known110), 1.0, "{restarted}");
    assert_eq!(sample(&restarted, new, &["vlan=\"110\""]), 0.0, "since the daemon started");
}
