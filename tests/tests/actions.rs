//! Operators' actions in the namespace lab: block / unblock / blocks and
//! quarantine / release with real traffic, expiry enforced by the program
//! with no daemon running, entries surviving daemon restarts, every change
//! in the audit log, bad input refused.

use std::{fs, thread, time::Duration};

use vlanguard_tests::{
    lab::{self, CORE, Lab, NURSE, PUMP},
    privileged,
};

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &std::process::Output, wanted: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(wanted), "{err}");
}

#[test]
fn block_unblock_quarantine_release_with_traffic() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    // Core servers may ping the pump, and are the management network.
    let policy = lab::policy("\n  { from = \"servers\", proto = \"icmp\", icmp_type = 8 },")
        .replacen("[settings]\n", "[settings]\nmanagement = [\"servers\"]\n", 1);
    fs::write(&lab.policy_file, &policy).expect("policy");
    lab.start_daemon();
    assert_eq!(lab.ping("nurse", PUMP, 1), 1, "allowed before any block");

    // A block drops the address everywhere, device or not.
    ok(&lab.cli(&["block", NURSE, "--for", "1h", "--reason", "port scan from ward 3"]));
    assert_eq!(lab.ping("nurse", PUMP, 1), 0, "blocked towards the pump");
    assert_eq!(lab.ping("nurse", CORE, 1), 0, "blocked towards the core too");
    let blocks: serde_json::Value =
        serde_json::from_str(&ok(&lab.cli(&["blocks", "--json"]))).expect("JSON");
    assert_eq!(blocks["blocks"][0]["what"], "10.30.1.1/32", "{blocks}");
    assert_eq!(blocks["blocks"][0]["reason"], "port scan from ward 3");
    let left = blocks["blocks"][0]["remaining_secs"].as_u64().expect("remaining");
    assert!((3590..=3600).contains(&left), "{blocks}");
    let stats = ok(&lab.cli(&["stats", "--device", "pump", "--json"]));
    assert!(stats.contains("\"blocked\""), "{stats}");

    // It survives a daemon restart, and the filter keeps it meanwhile.
    lab.stop_daemon(libc::SIGTERM);
    assert_eq!(lab.ping("nurse", PUMP, 1), 0, "still blocked with no daemon");
    lab.start_daemon();
    assert!(ok(&lab.cli(&["blocks"])).contains("10.30.1.1/32"));
    ok(&lab.cli(&["unblock", NURSE]));
    assert_eq!(lab.ping("nurse", PUMP, 1), 1, "unblocked");
    refused(&lab.cli(&["unblock", NURSE]), "is not on the blocklist");

    // Expiry is the program's: a 3 s block lifts on time with no daemon.
    ok(&lab.cli(&["block", "10.30.0.0/16", "--for", "3s", "--reason", "short"]));
    lab.stop_daemon(libc::SIGTERM);
    assert_eq!(lab.ping("nurse", PUMP, 1), 0, "blocked right after");
    thread::sleep(Duration::from_millis(3500));
    assert_eq!(lab.ping("nurse", PUMP, 1), 1, "expired without a daemon");
    lab.start_daemon();
    assert_eq!(ok(&lab.cli(&["blocks"])).trim(), "nothing blocked, no device quarantined");

    // Quarantine: only the management network still reaches the pump.
    assert!(
        ok(&lab.cli(&["quarantine", "pump", "--reason", "infected?"]))
            .contains("it can reach only: 10.20.0.0/16")
    );
    assert_eq!(lab.ping("nurse", PUMP, 1), 0, "nurse cut off");
    assert_eq!(lab.ping("core", PUMP, 1), 1, "management still reaches it");
    let stats = ok(&lab.cli(&["stats", "--device", "pump", "--json"]));
    assert!(stats.contains("\"quarantined\""), "{stats}");
    ok(&lab.cli(&["release", "pump"]));
    assert_eq!(lab.ping("nurse", PUMP, 1), 1, "released");
    refused(&lab.cli(&["release", "pump"]), "is not quarantined");

    // Bad input changes nothing.
    refused(&lab.cli(&["block", "10.30.1.300", "--reason", "x"]), "neither an address nor a CIDR");
    refused(&lab.cli(&["block", "::/0", "--reason", "x"]), "IPv4-mapped");
    refused(&lab.cli(&["block", NURSE, "--reason", &"x".repeat(60)]), "at most 48");
    refused(&lab.cli(&["quarantine", "nope"]), "no device named \"nope\"");
    assert_eq!(ok(&lab.cli(&["blocks"])).trim(), "nothing blocked, no device quarantined");

    // Every change is in the audit log.
    let audit = fs::read_to_string(&lab.audit_log).expect("audit log");
    for command in ["\"block\"", "\"unblock\"", "\"quarantine\"", "\"release\""] {
        assert!(audit.contains(command), "{command} missing from {audit}");
    }
}
