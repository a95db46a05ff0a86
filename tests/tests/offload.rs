//! VLAN offload, as real NICs do it: the router's trunk port takes 802.1Q
//! tags out of received frames (rx VLAN offload on, veth's default) and
//! the switch sends them beside the frame (its `txvlan` on, veth's
//! default), so an XDP program sees every device VLAN frame untagged. The
//! daemon enforces such a port at TC ingress, where the tag stays with the
//! packet, and decides exactly as on a port whose tags are in the frame;
//! told to refuse such ports it attaches nothing and says what to do; told
//! to disable the offload it does, and uses XDP.

use std::process::Command;

use vlanguard_tests::{
    lab::{Lab, MONITOR, NURSE, PUMP, ROGUE, sh, socket_addr, tcp_echo, tcp_works},
    privileged,
};

/// What the lab's policy lets through between the VLANs, probed for real:
/// (what, how many of the probe's packets arrived).
fn probe(lab: &Lab) -> Vec<(&'static str, u32)> {
    let server = tcp_echo(lab, "pump", socket_addr(PUMP, 443));
    let tcp = tcp_works(lab, "nurse", socket_addr(PUMP, 443));
    server.join().expect("echo server");
    vec![
        ("nurse pings the pump (VLAN 110)", lab.ping("nurse", PUMP, 2)),
        ("nurse -> pump UDP 5000 (allowed)", lab.udp("nurse", "pump", PUMP, 5000) as u32),
        ("nurse -> pump UDP 6000 (not allowed)", lab.udp("nurse", "pump", PUMP, 6000) as u32),
        ("unknown host on VLAN 110 -> nurse", lab.udp("rogue", "nurse", NURSE, 7000) as u32),
        (
            "pump -> monitor UDP 5000 (VLAN 110 to 120)",
            lab.udp("pump", "mon", MONITOR, 5000) as u32,
        ),
        ("nurse pings the monitor (not allowed)", lab.ping("nurse", MONITOR, 2)),
        ("core pings the unknown host", lab.ping("core", ROGUE, 1)),
        ("nurse -> pump TCP 443 (and its answers)", u32::from(tcp)),
    ]
}

/// The lab's allowlist, as the probes must find it.
const EXPECTED: [u32; 8] = [2, 20, 0, 0, 20, 0, 0, 1];

fn status(lab: &Lab) -> serde_json::Value {
    let out = lab.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// `trunk0`'s entry in `status --json`.
fn trunk(lab: &Lab) -> serde_json::Value {
    status(lab)["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "trunk0").cloned())
        .expect("trunk0 in status")
}

/// The router's trunk port takes tags out of frames, the switch sends them
/// beside the frames.
fn offloading_trunk(lab: &Lab) {
    lab.ethtool("r", "trunk0", "rxvlan", true);
    lab.ethtool("sw", "trs", "txvlan", true);
}

fn rx_vlan_offload(lab: &Lab, dev: &str) -> bool {
    let out = sh(Command::new("ip").args(["netns", "exec", &lab.ns("r"), "ethtool", "-k", dev]));
    String::from_utf8_lossy(&out.stdout).contains("rx-vlan-offload: on")
}

#[test]
fn tags_beside_the_frame_decide_as_tags_in_it() {
    if !privileged() {
        return;
    }
    // Tags in the frame: XDP on every port.
    let mut lab = Lab::new();
    lab.start_daemon();
    assert_eq!(trunk(&lab)["hook"], "xdp");
    assert_eq!(trunk(&lab)["tags"], "in-frame");
    let in_frame = probe(&lab);
    drop(lab);

    // Tags beside the frame on the trunk.
    let mut lab = Lab::new();
    offloading_trunk(&lab);
    let log = lab.start_daemon();
    assert!(
        log.contains("trunk0: the NIC takes 802.1Q tags out of received frames"),
        "the daemon says how it enforces the trunk:\n{log}"
    );
    assert_eq!(trunk(&lab)["hook"], "tc");
    assert_eq!(trunk(&lab)["tags"], "metadata");
    assert!(!lab.xdp_attached("trunk0"), "no XDP program that cannot see the tags");
    assert!(lab.xdp_attached("uplink"), "ports without offload keep XDP");
    let beside = probe(&lab);

    let counts = |p: &[(&str, u32)]| p.iter().map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(counts(&in_frame), EXPECTED, "tags in the frame: {in_frame:?}");
    assert_eq!(counts(&beside), counts(&in_frame), "tags beside the frame: {beside:?}");
    let metrics = lab.scrape();
    assert!(
        metrics.lines().any(|l| l.starts_with("vlanguard_interface_attached{")
            && l.contains("interface=\"trunk0\"")
            && l.contains("mode=\"tc\"")
            && l.contains("tags=\"metadata\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    // Nothing was taken for the wrong VLAN.
    assert!(
        !metrics.lines().any(|l| l.contains("reason=\"wrong-vlan\"") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // A restarted daemon adopts the TC link as it is.
    lab.stop_daemon(libc::SIGTERM);
    let log = lab.start_daemon();
    assert!(log.contains("adopted the pinned program"), "{log}");
    assert_eq!(trunk(&lab)["tags"], "metadata");
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
}

#[test]
fn an_offloading_port_is_refused_when_told_to() {
    if !privileged() {
        return;
    }
    let lab = Lab::new();
    offloading_trunk(&lab);
    let mut args = lab.run_args();
    args.extend(["--vlan-offload".to_string(), "refuse".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.vlanguard(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the daemon must not run: {stderr}");
    for needle in ["trunk0", "rx VLAN offload", "ethtool -K trunk0 rxvlan off", "--vlan-offload"] {
        assert!(stderr.contains(needle), "the refusal names {needle:?}: {stderr}");
    }
    for iface in ["uplink", "core0", "trunk0"] {
        assert!(!lab.xdp_attached(iface), "{iface}: nothing stays attached");
    }
    assert!(!lab.pin_dir.join("prog").exists(), "no program left pinned");
}

#[test]
fn disable_turns_the_offload_off_and_filters_with_xdp() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    // The router's port would take tags out; the switch sends them in the
    // frame (as before this offload was on).
    lab.ethtool("r", "trunk0", "rxvlan", true);
    assert!(rx_vlan_offload(&lab, "trunk0"));
    let log = lab.start_daemon_with(&["--vlan-offload", "disable"]);
    assert!(log.contains("trunk0: turned the NIC's rx VLAN offload off"), "{log}");
    assert!(!rx_vlan_offload(&lab, "trunk0"), "the offload is off");
    assert!(lab.xdp_attached("trunk0"));
    assert_eq!(trunk(&lab)["hook"], "xdp");
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    assert_eq!(lab.udp("nurse", "pump", PUMP, 6000), 0);
}
