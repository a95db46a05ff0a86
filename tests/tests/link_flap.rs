//! Interfaces that flap: deleted and created again (a new device under the
//! old name, as a veth, VLAN or bond interface is), renamed, or re-created
//! while no daemon runs. The daemon notices from the kernel's link
//! notifications, attaches the filter again, and `status` and the metrics
//! show the gap.
//!
//! The probe: the core server sending to the pump. The policy lets only
//! nurse stations reach it, and `core0`'s ingress is the only place that
//! frame is checked, so it arrives exactly when `core0` is not filtered.

use std::{
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{Lab, PUMP, sh},
    privileged, sample,
};

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `core0` as `status --json` reports it.
fn core0(lab: &Lab) -> serde_json::Value {
    let status = json(&lab.cli(&["status", "--json"]));
    status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["name"] == "core0")
        .cloned()
        .expect("core0 in status")
}

/// Waits (at most 10 s) until `core0`'s status satisfies `done`.
fn wait_for(lab: &Lab, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = core0(lab);
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "{what}: core0 is {c}\n{}", lab.daemon_log());
        thread::sleep(Duration::from_millis(50));
    }
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

/// Deletes the router's `core0` (and with it the core server's end).
fn delete_core0(lab: &Lab) {
    ip(&["-n", &lab.ns("r"), "link", "del", "core0"]);
}

/// Creates `core0` again as the lab built it: a new veth (rx VLAN offload
/// on, as veths come), the same addresses and routes.
fn create_core0(lab: &Lab) {
    let (r, core) = (lab.ns("r"), lab.ns("core"));
    ip(&[
        "link", "add", "core0", "netns", &r, "type", "veth", "peer", "name", "eth0", "netns", &core,
    ]);
    ip(&["-n", &r, "addr", "add", "10.20.0.1/16", "dev", "core0"]);
    ip(&["-n", &r, "addr", "add", "2001:db8:20::1/64", "dev", "core0", "nodad"]);
    ip(&["-n", &r, "link", "set", "core0", "up"]);
    for addr in ["10.20.5.10/16", "10.20.1.123/16"] {
        ip(&["-n", &core, "addr", "add", addr, "dev", "eth0"]);
    }
    ip(&["-n", &core, "addr", "add", "2001:db8:20::10/64", "dev", "eth0", "nodad"]);
    ip(&["-n", &core, "link", "set", "eth0", "up"]);
    ip(&["-n", &core, "route", "add", "default", "via", "10.20.0.1"]);
}

fn from_core(lab: &Lab) -> usize {
    lab.udp("core", "pump", PUMP, 5001)
}

#[test]
fn an_interface_deleted_and_created_again_gets_the_filter_back() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    assert_eq!(from_core(&lab), 0, "servers may not reach the pump");
    assert_eq!(core0(&lab)["gaps"], 0);

    delete_core0(&lab);
    let gone = wait_for(&lab, "deleted", |c| c["attached"] == false);
    assert_eq!(gone["gaps"], 1, "{gone}");
    assert!(gone["unfiltered_since"].is_string(), "{gone}");
    assert_eq!(gone["unfiltered_reason"], "no interface of that name", "{gone}");
    let metrics = lab.scrape();
    assert_eq!(sample(&metrics, "vlanguard_interface_attached", &["\"core0\""]), 0.0, "{metrics}");
    thread::sleep(Duration::from_millis(300));

    let created = Instant::now();
    create_core0(&lab);
    let back = wait_for(&lab, "created again", |c| c["attached"] == true);
    eprintln!("core0 filtered again {:?} after it was created", created.elapsed());
    assert_eq!(back["gaps"], 1, "{back}");
    assert!(back["unfiltered_since"].is_null(), "{back}");
    let gap = back["unfiltered_seconds"].as_f64().expect("seconds");
    assert!(gap >= 0.3, "the gap lasted at least the 300 ms without core0: {back}");
    // A new veth takes tags out of frames: the filter went to TC ingress.
    assert_eq!(back["hook"], "tc", "{back}");
    assert!(lab.daemon_log().contains("core0: filter attached again"), "{}", lab.daemon_log());

    assert_eq!(from_core(&lab), 0, "filtered again: servers still may not reach the pump");
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5001), 20, "nurses still may");
    let metrics = lab.scrape();
    assert_eq!(sample(&metrics, "vlanguard_interface_attached", &["\"core0\""]), 1.0, "{metrics}");
    assert_eq!(sample(&metrics, "vlanguard_interface_gaps_total", &["\"core0\""]), 1.0);
    let seconds = sample(&metrics, "vlanguard_interface_unfiltered_seconds_total", &["\"core0\""]);
    assert!(seconds >= 0.3, "{metrics}");
    assert_eq!(sample(&metrics, "vlanguard_interface_gaps_total", &["\"uplink\""]), 0.0);
    let text = String::from_utf8_lossy(&lab.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("core0 (TC, tags metadata; 1 gap(s) without the filter"), "{text}");
}

#[test]
fn a_renamed_interface_stays_filtered_until_it_has_its_name_back() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let r = lab.ns("r");
    ip(&["-n", &r, "link", "set", "core0", "name", "core9"]);
    let renamed = wait_for(&lab, "renamed", |c| c["renamed_to"] == "core9");
    assert_eq!(renamed["attached"], true, "{renamed}");
    assert_eq!(renamed["gaps"], 0, "a rename is no gap: {renamed}");
    assert_eq!(from_core(&lab), 0, "still filtered under its new name");

    ip(&["-n", &r, "link", "set", "core9", "name", "core0"]);
    let back = wait_for(&lab, "renamed back", |c| c["renamed_to"].is_null());
    assert_eq!(back["attached"], true, "{back}");
    assert_eq!(back["gaps"], 0, "{back}");
    assert_eq!(from_core(&lab), 0);
    assert!(lab.daemon_log().contains("core0: has its name back"), "{}", lab.daemon_log());
}

#[test]
fn a_daemon_started_after_its_interface_was_created_again_attaches_to_the_new_one() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    lab.stop_daemon(libc::SIGTERM);
    // With no daemon, the pinned link goes with the deleted interface and
    // the new one is not filtered.
    delete_core0(&lab);
    create_core0(&lab);
    assert_eq!(from_core(&lab), 20, "unfiltered while no daemon runs");

    lab.start_daemon();
    let c = core0(&lab);
    assert_eq!(c["attached"], true, "{c}");
    assert_eq!(from_core(&lab), 0, "filtered once the daemon is back");
}
