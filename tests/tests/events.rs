//! Drop events through the kernel's ring buffer: blocked traffic produces
//! events with the right 5-tuple, device and reason; a bounded flood shows
//! the per-CPU rate limit holding (the rest counted as suppressed) while the
//! daemon keeps answering.

use std::{
    net::{SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{Lab, NURSE, PUMP, ROGUE},
    privileged, sample,
};

fn events(lab: &Lab, device: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["events", "--json"];
    if let Some(d) = device {
        args.extend(["--device", d]);
    }
    let out = lab.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `vlanguard_drop_events_total{outcome=...}` from the daemon's /metrics.
fn metric(lab: &Lab, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    sample(&lab.scrape(), "vlanguard_drop_events_total", &[&label]) as u64
}

#[test]
fn blocked_traffic_produces_events_with_its_five_tuple() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let dst: SocketAddr = format!("{PUMP}:6000").parse().expect("address");
    lab.in_ns("nurse", move || {
        let s = UdpSocket::bind("0.0.0.0:41000").expect("bind");
        for _ in 0..3 {
            s.send_to(b"x", dst).expect("send");
        }
    })
    .join()
    .expect("sender");
    assert_eq!(lab.ping("rogue", NURSE, 1), 0);

    let deadline = Instant::now() + Duration::from_secs(10);
    let (to_pump, rogue) = loop {
        let all = events(&lab, None);
        let to_pump: Vec<_> = all.iter().filter(|e| e["dport"] == 6000).cloned().collect();
        let rogue: Vec<_> = all.iter().filter(|e| e["src"] == ROGUE).cloned().collect();
        if to_pump.len() >= 3 && !rogue.is_empty() || Instant::now() > deadline {
            break (to_pump, rogue);
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(to_pump.len(), 3, "{to_pump:?}");
    let e = &to_pump[0];
    assert_eq!(
        (
            e["src"].as_str(),
            e["dst"].as_str(),
            e["proto"].as_str(),
            e["sport"].as_u64(),
            e["dport"].as_u64()
        ),
        (Some(NURSE), Some(PUMP), Some("udp"), Some(41000), Some(6000)),
        "{e}"
    );
    assert_eq!((e["device"].as_str(), e["direction"].as_str()), (Some("pump"), Some("in")), "{e}");
    assert_eq!(
        (e["reason"].as_str(), e["interface"].as_str()),
        (Some("not-allowed"), Some("uplink")),
        "{e}"
    );
    let r = &rogue[0];
    assert_eq!(
        (r["reason"].as_str(), r["vlan"].as_u64(), r["interface"].as_str()),
        (Some("unknown-device"), Some(110), Some("trunk0")),
        "{r}"
    );
    assert!(r["device"].is_null());

    assert_eq!(events(&lab, Some("pump")).len(), 3, "--device filters");
    let out = lab.cli(&["events", "--device", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    let log = std::fs::read_to_string(lab.dir.join("events.log")).expect("events log");
    assert!(log.lines().filter(|l| l.contains("\"dport\":6000")).count() == 3, "{log}");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn a_flood_is_rate_limited_in_the_kernel_and_the_daemon_stays_responsive() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let pid = lab.daemon_pid().expect("daemon");
    let (sent0, suppressed0) = (metric(&lab, "sent"), metric(&lab, "suppressed"));
    let ticks0 = cpu_ticks(pid);

    // At least 200,000 frames; up to a million or 10 s, so the flood is
    // still running when `status` is asked.
    let frames = 1_000_000u32;
    let dst: SocketAddr = format!("{PUMP}:6001").parse().expect("address");
    let start = Instant::now();
    let flood = lab.in_ns("nurse", move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = 0u32;
        while sent < frames && Instant::now() < deadline {
            if s.send_to(b"flood", dst).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    // The daemon answers while the flood runs.
    thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    let out = lab.cli(&["status"]);
    let status_took = asked.elapsed();
    let flood_running = !flood.is_finished();
    assert!(out.status.success());
    let flooded = flood.join().expect("flood");
    let secs = start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(1500));
    let sent = metric(&lab, "sent") - sent0;
    let suppressed = metric(&lab, "suppressed") - suppressed0;
    let delivered = metric(&lab, "delivered");
    let cpu_ms = (cpu_ticks(pid) - ticks0) * 1000 / 100;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    eprintln!(
        "flood: {flooded} frames in {secs:.1} s; events sent {sent}, suppressed {suppressed}, delivered {delivered}; \
         daemon CPU {cpu_ms} ms ({:.1}% of one CPU); status answered in {} ms",
        cpu_ms as f64 / 10.0 / secs,
        status_took.as_millis()
    );
    assert!(flooded >= 200_000, "the flood itself was too small: {flooded}");
    assert!(flood_running, "status must be answered while the flood runs");
    // 100 events per CPU and second (the default), for every second begun.
    let ceiling = (100.0 * cpus * (secs.ceil() + 2.0)) as u64;
    assert!(sent <= ceiling, "{sent} events sent, more than the rate allows ({ceiling})");
    assert!(suppressed >= u64::from(flooded) / 2, "suppressed {suppressed} of {flooded}");
    assert!(status_took < Duration::from_secs(2), "status took {status_took:?} during the flood");
}

#[test]
fn events_follow_streams_new_drops() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let mut follower = std::process::Command::new(vlanguard_tests::lab::vlanguard_bin())
        .arg("--socket")
        .arg(&lab.socket)
        .args(["events", "--follow", "--json", "--device", "pump"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("vlanguard events --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        use std::io::BufRead as _;
        let mut lines = std::io::BufReader::new(stdout).lines();
        lines.next().and_then(Result::ok)
    });
    thread::sleep(Duration::from_millis(500));
    let dst: SocketAddr = format!("{PUMP}:6002").parse().expect("address");
    lab.in_ns("nurse", move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.send_to(b"x", dst).expect("send");
    })
    .join()
    .expect("sender");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let line = reader.join().expect("reader").expect("a streamed event");
    let e: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!((e["dport"].as_u64(), e["device"].as_str()), (Some(6002), Some("pump")), "{e}");
}

/// The lines the program logged (`program: ...`) in the daemon's output.
fn program_lines(daemon_log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(daemon_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("program: "))
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until the program has logged a line containing `want`.
fn wait_for_line(daemon_log: &std::path::Path, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = program_lines(daemon_log);
        if lines.iter().any(|l| l.contains(want)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "no program line with {want:?} in {lines:#?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn debug_log_shows_each_decision_only_while_turned_on() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let first_log = lab.dir.join("daemon-0.log");
    assert_eq!(lab.ping("rogue", NURSE, 1), 0);
    assert_eq!(lab.ping("nurse", PUMP, 1), 1);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(program_lines(&first_log), Vec::<String>::new(), "logged while off");

    // On through an ordinary policy apply.
    let on = std::fs::read_to_string(&lab.policy_file).expect("policy").replacen(
        "[settings]\n",
        "[settings]\ndebug_log = true\n",
        1,
    );
    std::fs::write(&lab.policy_file, &on).expect("write policy");
    let out = lab.cli(&["policy", "apply"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(lab.ping("rogue", NURSE, 1), 0);
    let drop = "drop unknown-device: if ";
    let rogue = format!("vlan 110 proto 1 {ROGUE}:0 -> {NURSE}:8");
    let lines = wait_for_line(&first_log, &rogue);
    assert!(lines.iter().any(|l| l.starts_with(drop) && l.ends_with(&rogue)), "{lines:#?}");
    assert_eq!(lab.ping("nurse", PUMP, 1), 1);
    let lines = wait_for_line(&first_log, &format!("-> {PUMP}:8"));
    assert!(
        lines
            .iter()
            // Allowed by its rule, or part of the echo flow the first
            // ping opened.
            .any(|l| (l.starts_with("pass allowed: ") || l.starts_with("pass established: "))
                && l.ends_with(&format!("{NURSE}:0 -> {PUMP}:8"))),
        "{lines:#?}"
    );

    // A restarted daemon finds the logger through the pinned maps.
    lab.stop_daemon(libc::SIGTERM);
    lab.start_daemon();
    let second_log = lab.dir.join("daemon-1.log");
    assert_eq!(lab.ping("rogue", NURSE, 1), 0);
    wait_for_line(&second_log, &rogue);

    // Off again: the traffic still gets its verdict, and no more lines.
    std::fs::write(&lab.policy_file, on.replacen("debug_log = true\n", "", 1))
        .expect("write policy");
    let out = lab.cli(&["policy", "apply"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    thread::sleep(Duration::from_millis(500));
    let before = program_lines(&second_log).len();
    assert_eq!(lab.ping("rogue", NURSE, 2), 0);
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(program_lines(&second_log).len(), before);
}

/// Under systemd the daemon also sends drop events and audit records (a
/// change, a refusal) to the system journal, with structured fields, in
/// journald's native protocol. Here the journal is a datagram socket of the
/// test's own (`VLANGUARD_JOURNAL_SOCKET`), read as journald would.
#[test]
fn events_and_audit_records_reach_the_journal_with_fields() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let path = lab.dir.join("journal.sock");
    let journal = std::os::unix::net::UnixDatagram::bind(&path).expect("journal socket");
    journal.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    // Read as journald does, from the start: the daemon never waits for a
    // slow journal (it drops entries instead), so the reader keeps up.
    let (found, entries) = std::sync::mpsc::channel::<Vec<(String, String)>>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let reader = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline && !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = journal.recv(&mut buf) {
                let e = filter_user::journal::decode(&buf[..n]).expect("native protocol");
                if found.send(e).is_err() {
                    return;
                }
            }
        }
    });
    lab.daemon_env.push(("VLANGUARD_JOURNAL_SOCKET".into(), path.to_string_lossy().into()));
    let log = lab.start_daemon();
    assert!(log.contains("system journal"), "{log}");

    assert_eq!(lab.udp("nurse", "pump", PUMP, 6000), 0, "not allowed");
    let out = lab.cli(&["block", "10.30.9.9", "--reason", "journal test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(&lab.socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    assert!(!lab.cli_as_nobody(&["status"]).status.success());

    let field = |e: &[(String, String)], k: &str| {
        e.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let (mut drop, mut block, mut refusal) = (None, None, None);
    while drop.is_none() || block.is_none() || refusal.is_none() {
        let Ok(e) = entries.recv_timeout(Duration::from_secs(10)) else { break };
        assert_eq!(field(&e, "SYSLOG_IDENTIFIER"), "vlanguard");
        assert!(!field(&e, "MESSAGE").is_empty() && !field(&e, "PRIORITY").is_empty());
        match (field(&e, "VLANGUARD_EVENT").as_str(), field(&e, "VLANGUARD_REQUEST").as_str()) {
            ("drop", _) if field(&e, "VLANGUARD_DPORT") == "6000" => drop = Some(e),
            ("audit", "block") => block = Some(e),
            ("audit", "status") if !field(&e, "VLANGUARD_REFUSED").is_empty() => refusal = Some(e),
            _ => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let drop = drop.expect("a drop event in the journal");
    assert_eq!(field(&drop, "VLANGUARD_DEVICE"), "pump");
    assert_eq!(field(&drop, "VLANGUARD_DIRECTION"), "in");
    assert_eq!(field(&drop, "VLANGUARD_REASON"), "not-allowed");
    assert_eq!(field(&drop, "VLANGUARD_SRC"), NURSE);
    assert_eq!(field(&drop, "VLANGUARD_DST"), PUMP);
    assert_eq!(field(&drop, "VLANGUARD_PROTO"), "udp");
    // Dropped where it came in: the nurse's uplink, untagged.
    assert_eq!(field(&drop, "VLANGUARD_INTERFACE"), "uplink");
    assert_eq!(field(&drop, "VLANGUARD_VLAN"), "0");
    let block = block.expect("the block in the journal");
    assert_eq!(field(&block, "VLANGUARD_USER"), "root");
    assert_eq!(field(&block, "VLANGUARD_OK"), "true");
    assert!(field(&block, "VLANGUARD_COMMAND").contains("10.30.9.9"), "{block:?}");
    let refusal = refusal.expect("the refusal in the journal");
    assert_eq!(field(&refusal, "VLANGUARD_USER"), "nobody");
    assert_eq!(field(&refusal, "VLANGUARD_REFUSED"), "permission-denied");
}
