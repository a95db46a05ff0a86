//! A full or read-only disk under the daemon's files: the policy file, the
//! audit log, the inventory database, each on a small tmpfs of its own. A
//! change that cannot be written or audited is refused, the policy in force
//! stays, nothing is left half-written; the inventory's writes fail
//! (counted) without touching enforcement; all works again once there is
//! room.

use std::{
    fs,
    io::Write as _,
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{Lab, PUMP, sh},
    privileged, sample,
};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn revision(lab: &Lab) -> serde_json::Value {
    let out = lab.cli(&["status", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status JSON")["revision"]
        .clone()
}

/// Fills the filesystem of `dir` (a file of zeros until ENOSPC; bounded).
fn fill(dir: &Path) {
    let mut f = fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // The last partial block too.
    for _ in 0..4096 {
        if f.write_all(&[0u8; 64]).is_err() {
            return;
        }
    }
    panic!("{} did not fill up", dir.display());
}

/// Files in `dir` other than `expected` (a half-written copy would be one).
fn strays(dir: &Path, expected: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

const ALLOW_7000: &[&str] = &["allow", "pump", "in", "nurses", "--proto", "udp", "--port", "7000"];

/// An edit is refused saying `says`: the file, the revision and traffic
/// stay as they were.
fn refused_edit(lab: &Lab, says: &str) {
    let file = fs::read_to_string(&lab.policy_file).expect("policy file");
    let rev = revision(lab);
    let out = lab.cli(ALLOW_7000);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(says), "{}", text(&out));
    assert_eq!(fs::read_to_string(&lab.policy_file).expect("policy file"), file, "file unchanged");
    assert_eq!(revision(lab), rev, "nothing applied");
    assert_eq!(lab.udp("nurse", "pump", PUMP, 7000), 0, "udp/7000 still not allowed");
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5001), 20, "the policy in force still works");
}

fn allowed_edit(lab: &Lab) {
    let out = lab.cli(ALLOW_7000);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.udp("nurse", "pump", PUMP, 7000), 20, "udp/7000 allowed now");
}

#[test]
fn a_full_disk_under_the_policy_file_and_the_inventory_refuses_edits_and_enforces_on() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let disk = lab.mount_tmpfs("disk", "1m");
    let policy = fs::read_to_string(&lab.policy_file).expect("policy");
    lab.policy_file = disk.join("policy.toml");
    fs::write(&lab.policy_file, policy).expect("policy on the small disk");
    lab.inventory_db = disk.join("inventory.db");
    lab.start_daemon();
    fill(&disk);

    refused_edit(&lab, "No space left on device");
    let files = ["policy.toml", "inventory.db", "inventory.db-wal", "inventory.db-shm", "filler"];
    assert_eq!(strays(&disk, &files), Vec::<String>::new(), "nothing half-written");
    // The refused request is in the audit log (on another disk).
    let audit = fs::read_to_string(&lab.audit_log).expect("audit log");
    let last: serde_json::Value =
        serde_json::from_str(audit.lines().last().expect("an entry")).expect("JSON");
    assert_eq!(last["ok"], false, "{last}");
    assert!(last["result"].as_str().expect("result").contains("No space left"), "{last}");

    // The unknown host's frames make inventory sightings that cannot be
    // written: counted, logged once, enforcement untouched.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        lab.ping_from("rogue", None, PUMP, 1);
        let errors = sample(&lab.scrape(), "vlanguard_inventory_write_errors_total", &[]);
        if errors > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no inventory write failed:\n{}", lab.daemon_log());
        thread::sleep(Duration::from_millis(500));
    }
    let log = lab.daemon_log();
    assert_eq!(log.matches("sightings are lost until").count(), 1, "logged once:\n{log}");
    assert!(lab.daemon_running(), "the daemon runs on");

    fs::remove_file(disk.join("filler")).expect("make room");
    allowed_edit(&lab);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lab.daemon_log().contains("the database is written again") {
        assert!(
            Instant::now() < deadline,
            "inventory writes did not resume:\n{}",
            lab.daemon_log()
        );
        lab.ping_from("rogue", None, PUMP, 1);
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_full_disk_under_the_audit_log_refuses_every_change() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let disk = lab.mount_tmpfs("audit", "1m");
    lab.audit_log = disk.join("audit.log");
    lab.start_daemon();
    fill(&disk);

    refused_edit(&lab, "the audit log");
    let out = lab.cli(&["block", "10.30.1.1", "--reason", "unaudited"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot be written"), "{}", text(&out));
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5001), 20, "not blocked");
    assert!(lab.cli(&["status"]).status.success(), "reading still works");

    fs::remove_file(disk.join("filler")).expect("make room");
    allowed_edit(&lab);
    let audit = fs::read_to_string(&lab.audit_log).expect("audit log");
    assert!(audit.lines().any(|l| l.contains("\"allow\"") && l.contains("\"ok\":true")), "{audit}");
}

#[test]
fn a_read_only_disk_refuses_changes_until_it_is_writable_again() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let disk = lab.mount_tmpfs("etc", "4m");
    let policy = fs::read_to_string(&lab.policy_file).expect("policy");
    lab.policy_file = disk.join("policy.toml");
    fs::write(&lab.policy_file, policy).expect("policy on the disk");
    lab.audit_log = disk.join("audit.log");
    lab.start_daemon();
    let remount = |how: &str| {
        sh(Command::new("mount").args(["-o", &format!("remount,{how}")]).arg(&disk));
    };
    remount("ro");
    refused_edit(&lab, "Read-only file system");
    remount("rw");
    allowed_edit(&lab);
}
