//! Least privilege: the real daemon runs with only CAP_BPF, CAP_NET_ADMIN
//! and CAP_PERFMON (through `setpriv`, as the systemd unit grants them),
//! serves the CLI and metrics and enforces; started as root it gives up
//! everything else once attached; without one of them it says which; and
//! it tells systemd when it is ready (`Type=notify`).

use std::{fs, os::unix::net::UnixDatagram, process::Command, time::Duration};

use vlanguard_tests::{
    lab::{Lab, NURSE, PUMP},
    privileged,
};

/// CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
const NEEDED_MASK: u64 = (1 << 12) | (1 << 38) | (1 << 39);
/// CAP_SYS_RESOURCE (24), kept when present.
const OPTIONAL_MASK: u64 = 1 << 24;
const ONLY_NEEDED: &str = "--bounding-set=-all,+bpf,+net_admin,+perfmon";

/// A capability set of the daemon's main thread from /proc.
fn caps(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("capability line");
    u64::from_str_radix(line.split_whitespace().nth(1).expect("mask"), 16).expect("hex")
}

fn enforces(lab: &Lab) {
    assert_eq!(lab.ping("nurse", PUMP, 3), 3, "the nurse station reaches the pump");
    assert_eq!(lab.ping("rogue", NURSE, 3), 0, "the unknown host is dropped");
}

#[test]
fn runs_with_only_the_listed_capabilities() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon_wrapped(&["setpriv", ONLY_NEEDED, "--inh-caps=-all"], &[]);
    let pid = lab.daemon_pid().expect("pid");
    assert_eq!(caps(pid, "CapEff:"), NEEDED_MASK);
    let status = lab.cli(&["status", "--json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        json["capabilities"],
        serde_json::json!(["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"])
    );
    assert!(lab.scrape().contains("vlanguard_policy_last_apply_success 1"), "metrics served");
    enforces(&lab);
    // A policy change still applies (it creates maps: CAP_BPF).
    let apply = lab.cli(&["policy", "apply"]);
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stderr));
    enforces(&lab);
}

#[test]
fn started_as_root_it_gives_up_everything_else() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    let notify = lab.dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&notify).expect("notify socket");
    systemd.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let env = format!("NOTIFY_SOCKET={}", notify.display());
    lab.start_daemon_wrapped(&["env", &env], &[]);

    // Type=notify: ready once attached and applied.
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.starts_with("READY=1\nSTATUS=enforcing policy revision"), "{message}");

    let pid = lab.daemon_pid().expect("pid");
    let kept = caps(pid, "CapEff:");
    assert_eq!(kept & !OPTIONAL_MASK, NEEDED_MASK, "effective {kept:x}");
    assert_eq!(caps(pid, "CapPrm:") & !(NEEDED_MASK | OPTIONAL_MASK), 0);
    assert_eq!(caps(pid, "CapBnd:") & !(NEEDED_MASK | OPTIONAL_MASK), 0, "bounding set");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    enforces(&lab);
}

#[test]
fn a_missing_capability_is_named() {
    if !privileged() {
        return;
    }
    let lab = Lab::new();
    for (bounding, missing) in [
        ("--bounding-set=-all,+net_admin,+perfmon", "CAP_BPF"),
        ("--bounding-set=-all,+bpf,+perfmon", "CAP_NET_ADMIN"),
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns("r"), "setpriv", bounding, "--inh-caps=-all"])
            .arg(vlanguard_tests::lab::vlanguard_bin())
            .args(lab.run_args())
            .output()
            .expect("vlanguard run");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without {missing}: {text}");
        assert!(text.contains(&format!("missing capability {missing}")), "{text}");
        assert!(!lab.xdp_attached("uplink"), "nothing attached without {missing}");
    }
}
