//! Upgrades without a gap: with traffic flowing, the daemon is replaced by
//! a build whose eBPF program differs (`VLANGUARD_VARIANT_BIN`, built by
//! `cargo xtask test` with `VLANGUARD_EBPF_VARIANT=1`); the new daemon swaps
//! its program into the pinned links in place. Not one allowed datagram is
//! lost, not one blocked datagram gets through, `status` shows the new
//! program; a downgrade back works the same way.

use std::{path::PathBuf, thread, time::Duration};

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

#[test]
fn a_new_program_takes_over_without_losing_or_leaking_a_packet() {
    if !privileged() {
        return;
    }
    let Some(variant) = std::env::var_os("VLANGUARD_VARIANT_BIN").map(PathBuf::from) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true: VLANGUARD_VARIANT_BIN must name the second build (`cargo xtask test` makes it)"
        );
        eprintln!("skipped: VLANGUARD_VARIANT_BIN is not set");
        return;
    };
    let mut lab = Lab::new();
    lab.start_daemon();
    let first = tag(&lab);

    let (allowed, blocked, log) = replace_under_traffic(&mut lab, &variant);
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
    assert_eq!((allowed, blocked), (SENT as usize, 0));
    assert_eq!(tag(&lab), first);
    // A restart of the same version adopts the program as it is.
    lab.stop_daemon(libc::SIGTERM);
    let log = lab.start_daemon();
    assert!(log.contains("adopted the pinned program"), "{log}");
}
