//! Fleet mode against a real 3-member etcd cluster (Debian's etcd-server,
//! one namespace and data directory per member) and three routers, each a
//! full lab with its own daemon and pins, following one site.
//!
//! The probes: the core server sending UDP to the pump on port 7000
//! (versions that allow `servers` there pass it, the lab's own policy does
//! not) and 7001, and the pump sending to the monitor on 5000 (allowed
//! while the monitor is a device of the policy). Each test prints the
//! convergence times it measured (`fleet convergence:` lines).
//!
//! The tests share the machine's two CPUs badly, so they run one at a time.

use std::{
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    fleet::{CONVERGE, FleetLab, Forgery, UDP_7000, UDP_7001, serial},
    lab::{MONITOR, policy},
    privileged, sample,
};

/// The lab's policy without the monitor device.
fn without_monitor(extra: &str) -> String {
    let p = policy(extra);
    let at = p.find("[[device]]\nname = \"monitor\"").expect("the monitor device");
    p[..at].to_string()
}

/// Approves `version` with `second` after `first` and measures, per
/// router, how long after the second approval it enforced the version.
fn approve_and_time(f: &FleetLab, version: u64, first: &str, second: &str) -> Vec<Duration> {
    f.approve(version, first);
    f.approve(version, second);
    let start = Instant::now();
    let times: Vec<Duration> = (0..f.labs.len())
        .map(|i| {
            f.wait_version(i, version, CONVERGE);
            start.elapsed()
        })
        .collect();
    report(&format!("version {version} approved"), &times);
    times
}

fn report(what: &str, times: &[Duration]) {
    let ms: Vec<String> =
        times.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0)).collect();
    eprintln!("fleet convergence: {what}: routers applied it after {} ms", ms.join(", "));
}

/// Three routers following the site, all enforcing version 1 (the lab's
/// policy), approved by Alice and Bob.
fn three_routers_at_version_1() -> FleetLab {
    let f = FleetLab::running(3);
    assert_eq!(f.propose(&policy("")), 1);
    approve_and_time(&f, 1, "alice", "bob");
    f
}

#[test]
fn a_version_approved_by_two_keys_is_applied_by_every_router_and_one_approval_changes_nothing() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let f = FleetLab::running(3);
    for i in 0..3 {
        let s = f.status(i);
        assert_eq!(s["applied_version"], serde_json::Value::Null, "{s}");
        assert_eq!(f.core_to_pump(i, 7000), 0, "the lab's own policy does not allow 7000");
    }
    assert_eq!(f.propose(&policy("")), 1);
    approve_and_time(&f, 1, "alice", "bob");

    // One approval: published nowhere, enforced nowhere.
    assert_eq!(f.propose(&policy(UDP_7000)), 2);
    let out = f.approve(2, "alice");
    assert!(out.contains("1 valid signature(s) of 2 required"), "{out}");
    assert!(out.contains("not published"), "{out}");
    thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(f.applied(i), Some(1), "router {i} with one approval");
        assert_eq!(f.core_to_pump(i, 7000), 0, "router {i} with one approval");
    }
    // The second: every router, and its traffic.
    f.approve(2, "bob");
    let start = Instant::now();
    let times: Vec<Duration> = (0..3)
        .map(|i| {
            f.wait_version(i, 2, CONVERGE);
            start.elapsed()
        })
        .collect();
    report("version 2 approved (the second approval)", &times);
    for i in 0..3 {
        assert_eq!(f.core_to_pump(i, 7000), 20, "router {i} enforces version 2");
        assert_eq!(f.core_to_pump(i, 7001), 0, "router {i}: only what version 2 allows");
    }

    // Who proposed and approved what.
    let log = f.ok(&["log"]);
    for part in ["version 2 (published", "proposed by nina", "approved by alice", "approved by bob"]
    {
        assert!(log.contains(part), "{part:?} missing from fleet log:\n{log}");
    }
    let status = f.fleet_status();
    assert_eq!(status["approved_version"], 2, "{status:#}");
    let routers = status["routers"].as_array().expect("routers");
    assert_eq!(routers.len(), 3, "{status:#}");
    for r in routers {
        assert_eq!(r["applied_version"], 2, "{r}");
        assert_eq!(r["behind"], 0, "{r}");
        assert_eq!(r["alive"], true, "{r}");
    }
    let metrics = f.labs[0].scrape();
    assert_eq!(sample(&metrics, "vlanguard_fleet_applied_version", &["north"]), 2.0);
    assert_eq!(sample(&metrics, "vlanguard_fleet_versions_behind", &["north"]), 0.0);
    assert_eq!(sample(&metrics, "vlanguard_fleet_connected", &["north"]), 1.0);

    // Local edits are refused naming the fleet; operator actions stay.
    let out = f.labs[0].cli(&["device", "remove", "monitor"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fleet site \"north\"") && err.contains("fleet propose"), "{err}");
    let out = f.labs[0].cli(&["block", "10.66.0.1/32", "--for", "1m", "--reason", "test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit = std::fs::read_to_string(&f.labs[0].audit_log).expect("audit log");
    assert!(audit.contains("\"event\":\"applied\"") && audit.contains("\"version\":2"), "{audit}");
}

#[test]
fn forged_unknown_key_replayed_and_expired_versions_are_rejected_and_enforcement_stays() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let f = three_routers_at_version_1();
    let site = FleetLab::site();
    let version_1_timestamp = f.get(&site.metadata("timestamp.json")).expect("timestamp");
    let within = Duration::from_secs(15);

    // Alice's signature and one made up under Bob's key id.
    let body = policy(UDP_7000);
    f.forge(&Forgery {
        body: &body,
        version: 2,
        signers: &["alice"],
        forged: &["bob"],
        fresh_secs: 86_400,
    });
    for i in 0..3 {
        let e = f.wait_rejected(i, "signatures", 0, within);
        assert!(
            e.contains("1 valid signature(s) of 2 required") && e.contains("bad signature"),
            "{e}"
        );
        assert_eq!(f.applied(i), Some(1));
    }
    assert_eq!(f.core_to_pump(0, 7000), 0, "a forged approval changes nothing");

    // Alice's and one by a key the site does not list.
    f.forge(&Forgery {
        body: &body,
        version: 2,
        signers: &["alice", "mallory"],
        forged: &[],
        fresh_secs: 86_400,
    });
    for i in 0..3 {
        let e = f.wait_rejected(i, "signatures", 1, within);
        assert!(e.contains("not an approver key"), "{e}");
        assert_eq!(f.applied(i), Some(1));
    }
    assert_eq!(f.core_to_pump(1, 7000), 0, "an unknown key's approval changes nothing");

    // The real version 2, then version 1's metadata put back (a replay).
    assert_eq!(f.propose(&body), 2);
    approve_and_time(&f, 2, "alice", "bob");
    f.etcd.put(&site.metadata("timestamp.json"), &version_1_timestamp);
    for i in 0..3 {
        let e = f.wait_rejected(i, "rollback", 0, within);
        assert!(e.contains("timestamp"), "{e}");
        assert_eq!(f.applied(i), Some(2));
    }
    assert_eq!(f.core_to_pump(2, 7000), 20, "the replay does not take version 2 back");

    // Version 3, properly approved, but its timestamp has expired: a
    // freeze (metadata not refreshed) is refused as well.
    let v3 = policy(&format!("{UDP_7000}{UDP_7001}"));
    f.forge(&Forgery {
        body: &v3,
        version: 3,
        signers: &["alice", "bob"],
        forged: &[],
        fresh_secs: -60,
    });
    for i in 0..3 {
        let e = f.wait_rejected(i, "expired", 0, within);
        assert!(e.contains("expired"), "{e}");
        assert_eq!(f.applied(i), Some(2));
    }
    assert_eq!(f.core_to_pump(0, 7001), 0, "expired metadata changes nothing");
    // A refresh by any one approver makes it current: every router takes it.
    let out = f.ok(&["refresh", "--key", &f.key("carol")]);
    assert!(out.contains("signed"), "{out}");
    let start = Instant::now();
    let times: Vec<Duration> = (0..3)
        .map(|i| {
            f.wait_version(i, 3, CONVERGE);
            start.elapsed()
        })
        .collect();
    report("version 3 after the refresh", &times);
    assert_eq!(f.core_to_pump(0, 7001), 20);

    let metrics = f.labs[0].scrape();
    for (reason, at_least) in [("signatures", 2.0), ("rollback", 1.0), ("expired", 1.0)] {
        let n = sample(
            &metrics,
            "vlanguard_fleet_rejected_versions_total",
            &[&format!("reason=\"{reason}\"")],
        );
        assert!(n >= at_least, "{reason}: {n}\n{metrics}");
    }
    let audit = std::fs::read_to_string(&f.labs[0].audit_log).expect("audit log");
    for reason in ["(signatures)", "(rollback)", "(expired)"] {
        assert!(
            audit.lines().any(|l| l.contains("\"event\":\"rejected\"") && l.contains(reason)),
            "no rejection {reason} in the audit log:\n{audit}"
        );
    }
}

#[test]
fn routers_converge_when_the_leader_dies_mid_update_and_a_partitioned_router_catches_up() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let mut f = three_routers_at_version_1();
    assert_eq!(f.labs[2].udp("pump", "mon", MONITOR, 5000), 20, "the monitor is a device");

    // Router 2 is cut off; version 2 removes the monitor device; the
    // leader dies between the two approvals.
    let cut = f.labs[2].ns("r");
    f.etcd.partition(&cut);
    let v2 = f.propose(&without_monitor(""));
    f.approve(v2, "alice");
    let leader = f.etcd.leader();
    f.etcd.kill(leader);
    let killed = Instant::now();
    f.approve(v2, "bob");
    let times: Vec<Duration> = (0..2)
        .map(|i| {
            f.wait_version(i, v2, CONVERGE);
            killed.elapsed()
        })
        .collect();
    report("version 2 with the leader killed before the second approval (from the kill)", &times);
    for i in 0..2 {
        assert_eq!(
            f.labs[i].udp("pump", "mon", MONITOR, 5000),
            0,
            "router {i}: the monitor is gone"
        );
    }

    // The cut-off router keeps enforcing version 1 and says it is cut off;
    // `fleet status` shows it behind once its lease has run out.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r2 = loop {
        let s = f.fleet_status();
        let r2 =
            s["routers"].as_array().expect("routers").iter().find(|r| r["router"] == "r2").cloned();
        if let Some(r) = r2.filter(|r| r["alive"] == false) {
            break r;
        }
        assert!(Instant::now() < deadline, "r2 still alive in fleet status: {s:#}");
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(r2["applied_version"], 1, "{r2}");
    assert_eq!(r2["behind"], 1, "{r2}");
    let s = f.status(2);
    assert_eq!(s["applied_version"], 1, "{s}");
    assert_eq!(s["connected"], false, "{s}");
    let metrics = f.labs[2].scrape();
    let gap = sample(&metrics, "vlanguard_fleet_seconds_since_contact", &["north"]);
    assert!(gap >= 5.0, "seconds since contact: {gap}\n{metrics}");
    assert_eq!(sample(&metrics, "vlanguard_fleet_connected", &["north"]), 0.0);
    assert_eq!(f.labs[2].udp("pump", "mon", MONITOR, 5000), 20, "version 1 stays in force");
    eprintln!("fleet convergence: router 2 cut off, {gap:.1} s since contact when checked");

    f.etcd.heal(&cut);
    let healed = Instant::now();
    f.wait_version(2, v2, Duration::from_secs(30));
    report("router 2 after the partition healed (from the heal)", &[healed.elapsed()]);
    let devices = f.labs[2].cli(&["device", "list"]);
    let devices = String::from_utf8_lossy(&devices.stdout);
    assert!(!devices.contains("monitor"), "{devices}");
    assert_eq!(f.labs[2].udp("pump", "mon", MONITOR, 5000), 0, "router 2: the monitor is gone");
    let metrics = f.labs[2].scrape();
    assert_eq!(sample(&metrics, "vlanguard_fleet_versions_behind", &["north"]), 0.0);
    assert_eq!(sample(&metrics, "vlanguard_fleet_connected", &["north"]), 1.0);
    f.etcd.restart(leader);
}

#[test]
fn a_router_cut_off_across_a_compaction_lists_again_and_converges() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let f = three_routers_at_version_1();
    let site = FleetLab::site();
    // A stray key every router sees, deleted while router 0 is cut off:
    // a router that missed the delete would still count it.
    let stray = site.metadata("99.targets.json");
    f.etcd.put(&stray, "{}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.status(0)["newest_version"] != 99 {
        assert!(Instant::now() < deadline, "router 0 never saw the stray key: {}", f.status(0));
        thread::sleep(Duration::from_millis(50));
    }
    let cut = f.labs[0].ns("r");
    f.etcd.partition(&cut);
    f.etcd.etcdctl_ok(&["del", &stray]);
    let v2 = f.propose(&policy(UDP_7000));
    approve_and_time_on(&f, v2, &[1, 2]);
    let v3 = f.propose(&policy(&format!("{UDP_7000}{UDP_7001}")));
    approve_and_time_on(&f, v3, &[1, 2]);
    let compacted = f.etcd.compact();
    eprintln!("fleet: compacted at revision {compacted} while router 0 was cut off");
    f.etcd.heal(&cut);
    let healed = Instant::now();
    f.wait_version(0, v3, Duration::from_secs(30));
    report("router 0 after a compaction and the heal (from the heal)", &[healed.elapsed()]);
    let s = f.status(0);
    assert_eq!(s["newest_version"], 3, "the delete it missed is not lost: {s}");
    assert_eq!(f.core_to_pump(0, 7001), 20);
    let metrics = f.labs[0].scrape();
    assert_eq!(sample(&metrics, "vlanguard_fleet_versions_behind", &["north"]), 0.0);

    // The published version deleted from etcd: said, the version stays.
    f.etcd.etcdctl_ok(&["del", &site.metadata("timestamp.json")]);
    for i in 0..3 {
        let e = f.wait_rejected(i, "malformed", 0, Duration::from_secs(15));
        assert!(e.contains("publishes no version any more"), "{e}");
        assert_eq!(f.applied(i), Some(v3));
    }
    assert_eq!(f.core_to_pump(1, 7001), 20);
}

/// `approve_and_time` for some routers only.
fn approve_and_time_on(f: &FleetLab, version: u64, routers: &[usize]) {
    f.approve(version, "alice");
    f.approve(version, "bob");
    let start = Instant::now();
    let times: Vec<Duration> = routers
        .iter()
        .map(|&i| {
            f.wait_version(i, version, CONVERGE);
            start.elapsed()
        })
        .collect();
    report(&format!("version {version} approved (routers {routers:?})"), &times);
}

#[test]
fn a_daemon_killed_while_etcd_is_down_restarts_from_its_last_good_version() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let mut f = FleetLab::running(3);
    // The lab's own policy file does not allow 7000; the fleet's does.
    f.propose(&policy(UDP_7000));
    approve_and_time(&f, 1, "alice", "bob");
    assert_eq!(f.core_to_pump(0, 7000), 20);
    for m in 0..3 {
        f.etcd.kill(m);
    }
    f.labs[0].stop_daemon(libc::SIGKILL);
    let log = f.start_daemon(0);
    assert!(log.contains("enforcing the last good version 1"), "{log}");
    let s = f.status(0);
    assert_eq!(s["applied_version"], 1, "{s}");
    assert_eq!(s["connected"], false, "{s}");
    assert_eq!(f.core_to_pump(0, 7000), 20, "the last good version, not --config");
    assert_eq!(f.core_to_pump(0, 7001), 0);
    let status = f.labs[0].cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("etcd never reached since the start"), "{text}");
    f.etcd.restart_all();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.status(0)["connected"] != true {
        assert!(Instant::now() < deadline, "router 0 did not reach etcd again: {}", f.status(0));
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.applied(0), Some(1));
}

#[test]
fn approver_keys_rotate_only_with_the_threshold_of_the_old_and_the_new_keys() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let f = three_routers_at_version_1();
    let site = FleetLab::site();

    // Dave replaces Carol, and a timer's key may refresh (never approve):
    // proposed, signed by Alice alone.
    let timer = f.dir.join("timer");
    vlanguard_tests::lab::sh(
        std::process::Command::new(vlanguard_tests::lab::vlanguard_bin())
            .args(["fleet", "keygen"])
            .arg(&timer),
    );
    let (a, b, d, t) = (f.public("alice"), f.public("bob"), f.public("dave"), f.public("timer"));
    let out = f.ok(&[
        "rotate",
        "--approver",
        &a,
        "--approver",
        &b,
        "--approver",
        &d,
        "--threshold",
        "2",
        "--publisher",
        &t,
    ]);
    assert!(out.contains("proposed root 2"), "{out}");
    let out = f.ok(&["approve", "root-2", "--key", &f.key("alice")]);
    assert!(out.contains("not published yet"), "{out}");
    assert_eq!(f.get(&site.metadata("2.root.json")), None, "one signature publishes nothing");
    // Forced into etcd with that one signature, the routers refuse it.
    let proposal: serde_json::Value =
        serde_json::from_str(&f.get(&site.root_proposal(2)).expect("root proposal")).expect("JSON");
    f.etcd.put(&site.metadata("2.root.json"), &proposal["root"].to_string());
    for i in 0..3 {
        let e = f.wait_rejected(i, "root", 0, Duration::from_secs(15));
        assert!(e.contains("root"), "{e}");
        assert_eq!(f.applied(i), Some(1));
    }
    f.etcd.etcdctl_ok(&["del", &site.metadata("2.root.json")]);

    // Bob's signature completes both thresholds: published.
    let out = f.ok(&["approve", "root-2", "--key", &f.key("bob")]);
    assert!(out.contains("root 2 is published"), "{out}");
    // The timer's key refreshes; it cannot approve.
    let out = f.ok(&["refresh", "--key", &f.key("timer")]);
    assert!(out.contains("signed"), "{out}");
    // Dave's approval now counts, Carol's does not.
    let v2 = f.propose(&policy(UDP_7000));
    for who in ["carol", "timer"] {
        let out = f.fleet(&["approve", &v2.to_string(), "--key", &f.key(who), "--yes"]);
        assert!(!out.status.success(), "{who} may not approve");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not an approver key"));
    }
    approve_and_time(&f, v2, "alice", "dave");
    assert_eq!(f.core_to_pump(0, 7000), 20);
    let body = policy(&format!("{UDP_7000}{UDP_7001}"));
    f.forge(&Forgery {
        body: &body,
        version: v2 + 1,
        signers: &["alice", "carol"],
        forged: &[],
        fresh_secs: 86_400,
    });
    for i in 0..3 {
        let e = f.wait_rejected(i, "signatures", 0, Duration::from_secs(15));
        assert!(e.contains("not an approver key"), "{e}");
        assert_eq!(f.applied(i), Some(v2));
    }
    assert_eq!(f.core_to_pump(0, 7001), 0);
}

/// `vlanguard ARGS` in the cluster's switch namespace, as given.
fn raw(f: &FleetLab, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &f.etcd.ns("sw")])
        .arg(vlanguard_tests::lab::vlanguard_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vlanguard");
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("vlanguard");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn the_fleet_commands_refuse_bad_input_and_change_nothing() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let mut f = FleetLab::new(1);
    let site = FleetLab::site();
    let eps = f.etcd.endpoints();
    let common = ["--fleet-endpoints", eps.as_str(), "--site", "north"];
    let fleet = |args: &[&str], stdin: &str| {
        let mut all = vec!["fleet"];
        all.extend_from_slice(args);
        all.extend_from_slice(&common);
        raw(&f, &all, stdin)
    };

    // An invalid policy is refused before anything is written.
    let bad = f.dir.join("bad.toml");
    std::fs::write(&bad, "[[device]]\nname = \"pump\"\nvlan = 999\n").expect("file");
    let (code, text) = fleet(&["propose", &bad.display().to_string()], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bad.toml") && text.contains("vlan 999"), "{text}");
    assert!(
        f.etcd.etcdctl_ok(&["get", "--prefix", "--keys-only", &site.proposals()]).trim().is_empty()
    );

    let v = f.propose(&policy(""));
    let key = |k: &str| f.key(k);
    // No such version; a file that is no key; a key that is no approver's.
    let (code, text) = fleet(&["approve", "7", "--key", &key("alice"), "--yes"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no proposal 7"), "{text}");
    let (code, text) =
        fleet(&["approve", &v.to_string(), "--key", &bad.display().to_string(), "--yes"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not an ed25519 private key"), "{text}");
    let (code, text) = fleet(&["approve", &v.to_string(), "--key", &key("mallory"), "--yes"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not an approver key"), "{text}");
    // Asked, and answered no: shown the changes, nothing signed.
    let (code, text) = fleet(&["approve", &v.to_string(), "--key", &key("alice")], "n\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the site's first version") && text.contains("not signed"), "{text}");
    let proposal: serde_json::Value =
        serde_json::from_str(&f.get(&site.proposal(v)).expect("proposal")).expect("JSON");
    assert_eq!(proposal["approvals"], serde_json::json!([]), "{proposal}");
    assert_eq!(proposal["targets"]["signatures"], serde_json::json!([]), "{proposal}");

    // The site exists once; its root stays.
    let root = f.get(&site.metadata("1.root.json")).expect("root");
    let (a, b) = (f.public("alice"), f.public("bob"));
    let out = f.dir.join("root2.json").display().to_string();
    let (code, text) = fleet(
        &[
            "init",
            "--approver",
            &a,
            "--approver",
            &b,
            "--key",
            &key("alice"),
            "--key",
            &key("bob"),
            "--root-out",
            &out,
        ],
        "",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("exists already"), "{text}");
    assert_eq!(f.get(&site.metadata("1.root.json")).as_ref(), Some(&root));
    // A threshold the keys given cannot meet.
    let (code, text) = raw(
        &f,
        &[
            "fleet",
            "init",
            "--fleet-endpoints",
            &eps,
            "--site",
            "south",
            "--approver",
            &a,
            "--approver",
            &b,
            "--key",
            &key("alice"),
            "--root-out",
            &out,
        ],
        "",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("needs 2 signatures"), "{text}");
    assert!(f.get("/vlanguard/sites/south/tuf/metadata/1.root.json").is_none());

    // Bad names and endpoints.
    let (code, text) =
        raw(&f, &["fleet", "status", "--fleet-endpoints", &eps, "--site", "a/b"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("site \"a/b\""), "{text}");
    let (code, text) =
        raw(&f, &["fleet", "status", "--fleet-endpoints", "etcd:2379", "--site", "north"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("want http://HOST:PORT"), "{text}");
    let started = Instant::now();
    let (code, text) = raw(
        &f,
        &["fleet", "status", "--fleet-endpoints", "http://10.251.0.250:2379", "--site", "north"],
        "",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no etcd member answers at http://10.251.0.250:2379"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded: {:?}", started.elapsed());

    // Publishing twice is refused.
    f.approve(v, "alice");
    f.approve(v, "bob");
    let (code, text) = fleet(&["approve", &v.to_string(), "--key", &key("carol"), "--yes"], "");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("published already"), "{text}");

    // The daemon: fleet mode needs its trusted root, which must be one.
    let lab = &mut f.labs[0];
    let mut args: Vec<String> = lab.run_args();
    args.extend(["--fleet-endpoints".into(), eps.clone(), "--site".into(), "north".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.vlanguard(&argv);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fleet-root"));
    args.extend(["--fleet-root".into(), bad.display().to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.vlanguard(&argv);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a TUF root"), "{err}");
    assert!(!lab.xdp_attached("uplink"), "a refused start attaches nothing");
}
