//! A daemon killed (SIGKILL) at each step of an apply, through the crash
//! points of the lab's build (`filter_user::failpoints`): while no daemon
//! runs, the program enforces the old policy or the new one as a whole,
//! never a mix; the next daemon recovers to the policy file's; and a flow
//! both policies allow loses no datagram throughout.
//!
//! Policy A lets nurses reach the pump on UDP 7000; policy B on UDP 6000
//! instead, drops the monitor and adds two devices (new counter slots, the
//! monitor's released), so every step of the swap has work to do.

use std::{
    collections::HashSet,
    fs,
    net::UdpSocket,
    os::unix::process::ExitStatusExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use vlanguard_tests::{
    lab::{self, Lab, PUMP, socket_addr, udp_receive},
    privileged,
};

const A_ONLY: u16 = 7000;
const B_ONLY: u16 = 6000;
/// In both policies' 5000-5010: the flow that must not lose a datagram.
const BOTH: u16 = 5001;
/// The flow: a datagram every 4 ms from before the change until after the
/// next daemon's checks; at most this many (80 s).
const FLOW_LIMIT: u32 = 20_000;

fn policy_a() -> String {
    lab::policy(&format!("\n  {{ from = \"nurses\", proto = \"udp\", port = {A_ONLY} }},"))
}

fn policy_b() -> String {
    let with_pump =
        lab::policy(&format!("\n  {{ from = \"nurses\", proto = \"udp\", port = {B_ONLY} }},"));
    let (before_monitor, _) =
        with_pump.split_once("[[device]]\nname = \"monitor\"").expect("the lab's monitor");
    format!(
        "{before_monitor}[[device]]
name = \"monitor2\"
vlan = 120
ip = [\"10.120.0.12\"]
allow_in = [ {{ from = \"10.110.0.7\", proto = \"udp\", port = 5000 }} ]

[[device]]
name = \"monitor3\"
vlan = 120
ip = [\"10.120.0.13\"]
allow_in = [ {{ from = \"10.110.0.7\", proto = \"udp\", port = 5000 }} ]
"
    )
}

/// Which policy the nurse-to-pump probes see in force: `Some('A')`,
/// `Some('B')`, or `None` for a mix (or neither).
fn enforced(lab: &Lab) -> (Option<char>, String) {
    let a = lab.udp("nurse", "pump", PUMP, A_ONLY);
    let b = lab.udp("nurse", "pump", PUMP, B_ONLY);
    let seen = format!("udp/{A_ONLY} {a}/20, udp/{B_ONLY} {b}/20");
    let which = match (a, b) {
        (20, 0) => Some('A'),
        (0, 20) => Some('B'),
        _ => None,
    };
    (which, seen)
}

/// Kills the daemon at `point` in the apply of B over A, then checks what
/// the module says. `flipped`: whether B is in force once the point is
/// passed (the generation word was written).
fn crash_at(point: &str, flipped: bool) {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    fs::write(&lab.policy_file, policy_a()).expect("write policy A");
    lab.daemon_env.push(("VLANGUARD_CRASH_AT".into(), point.into()));
    let log = lab.start_daemon();
    assert!(log.contains(&format!("the next pass through {point} kills")), "{log}");
    assert_eq!(enforced(&lab).0, Some('A'), "A in force before the change");

    // The flow both policies allow, from before the change until after the
    // next daemon's checks.
    let rx =
        lab.in_ns("pump", || udp_receive(BOTH, Duration::from_secs(3), Duration::from_secs(120)));
    thread::sleep(Duration::from_millis(200));
    let dst = socket_addr(PUMP, BOTH);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let tx = lab.in_ns("nurse", move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind sender");
        let mut sent = 0;
        while sent < FLOW_LIMIT && !stopped.load(Ordering::Relaxed) {
            sock.send_to(&sent.to_be_bytes(), dst).expect("send");
            sent += 1;
            thread::sleep(Duration::from_millis(4));
        }
        sent
    });
    thread::sleep(Duration::from_millis(500));

    let b_file = lab.dir.join("policy-b.toml");
    fs::write(&b_file, policy_b()).expect("write policy B");
    let out = lab.cli(&["policy", "apply", &b_file.to_string_lossy()]);
    assert!(!out.status.success(), "the apply cannot succeed: the daemon dies in it");
    let status = lab.daemon_exit(Duration::from_secs(10)).expect("the daemon died at the point");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed at {point}: {status}");

    // No daemon: the pinned program enforces one whole policy.
    let (which, seen) = enforced(&lab);
    let expected = if flipped { 'B' } else { 'A' };
    assert_eq!(which, Some(expected), "with no daemon after a crash at {point}: {seen}");

    // The next daemon (no crash point) applies the policy file, which the
    // request had replaced with B before installing it.
    assert_eq!(fs::read_to_string(&lab.policy_file).expect("policy file"), policy_b());
    lab.daemon_env.clear();
    lab.start_daemon();
    let (which, seen) = enforced(&lab);
    assert_eq!(which, Some('B'), "after the restart: {seen}");
    let devices = lab.cli(&["device", "list"]);
    let listed = String::from_utf8_lossy(&devices.stdout);
    assert!(
        listed.contains("monitor2") && listed.contains("monitor3") && !listed.contains("monitor "),
        "{listed}"
    );

    // Nothing of the interrupted apply is left to get in the way of the next.
    let a_file = lab.dir.join("policy-a.toml");
    fs::write(&a_file, policy_a()).expect("write policy A");
    let out = lab.cli(&["policy", "apply", &a_file.to_string_lossy()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (which, seen) = enforced(&lab);
    assert_eq!(which, Some('A'), "A applied again: {seen}");

    stop.store(true, Ordering::Relaxed);
    let sent = tx.join().expect("sender");
    assert!(sent < FLOW_LIMIT, "the flow ran out before the checks were done");
    let got: HashSet<u32> = rx.join().expect("receiver").into_iter().collect();
    let mut missing: Vec<u32> = (0..sent).collect();
    missing.retain(|s| !got.contains(s));
    eprintln!("{point}: the allowed flow: {}/{sent} datagrams arrived", got.len());
    assert!(missing.is_empty(), "allowed datagrams lost around a crash at {point}: {missing:?}");
}

#[test]
fn crash_after_the_policy_file_is_written() {
    crash_at("commit::file-written", false);
}

#[test]
fn crash_with_new_device_slots_half_assigned() {
    crash_at("apply::slots-half-assigned", false);
}

#[test]
fn crash_with_the_inactive_generation_half_written() {
    crash_at("apply::generation-half-written", false);
}

#[test]
fn crash_before_the_flip() {
    crash_at("apply::before-flip", false);
}

#[test]
fn crash_right_after_the_flip() {
    crash_at("apply::after-flip", true);
}

#[test]
fn crash_before_the_old_generation_is_cleared() {
    crash_at("apply::before-cleanup", true);
}

#[test]
fn crash_before_removed_devices_release_their_slots() {
    crash_at("apply::before-slot-release", true);
}
