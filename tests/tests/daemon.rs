//! The real daemon in a namespace lab with real traffic: enforcement that
//! survives `kill -9`, adoption by a new daemon, `detach` leaving nothing
//! behind, SIGHUP reloads under load, and refusals of bad input.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use aya::{maps::MapInfo, programs::ProgramInfo};
use vlanguard_tests::{
    lab::{self, Lab, NURSE, PUMP, ROUTER_IFACES},
    privileged,
};

fn pump_port(port: u16) -> SocketAddr {
    format!("{PUMP}:{port}").parse().expect("address")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn enforcement_survives_kill_9_and_a_new_daemon_adopts_it() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    assert_eq!(lab.ping("nurse", PUMP, 3), 3, "pings allowed by the policy");
    assert_eq!(lab.ping("rogue", NURSE, 2), 0, "the unknown host is dropped");

    // A steady stream to an allowed port and one to a blocked port, with
    // the daemon killed in the middle.
    let allowed = lab
        .in_ns("pump", || lab::udp_receive(5000, Duration::from_secs(2), Duration::from_secs(30)));
    let blocked = lab
        .in_ns("pump", || lab::udp_receive(6000, Duration::from_secs(2), Duration::from_secs(8)));
    thread::sleep(Duration::from_millis(300));
    let to_allowed =
        lab.in_ns("nurse", || lab::udp_send(pump_port(5000), 600, Duration::from_millis(5)));
    let to_blocked =
        lab.in_ns("nurse", || lab::udp_send(pump_port(6000), 300, Duration::from_millis(10)));
    thread::sleep(Duration::from_millis(1000));
    lab.stop_daemon(libc::SIGKILL);
    assert!(ROUTER_IFACES.iter().all(|i| lab.xdp_attached(i)), "still attached with no daemon");
    to_allowed.join().expect("sender");
    to_blocked.join().expect("sender");
    let allowed = allowed.join().expect("receiver");
    let blocked = blocked.join().expect("receiver");
    assert_eq!(allowed.len(), 600, "every allowed datagram arrived across the kill");
    assert!(blocked.is_empty(), "{} blocked datagrams got through", blocked.len());
    assert_eq!(lab.ping("rogue", NURSE, 2), 0, "still dropped while no daemon runs");

    let log = lab.start_daemon();
    assert!(log.contains("adopted the pinned program"), "{log}");
    assert!(log.contains("newly attached: none"), "adoption re-attached something: {log}");
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);

    // detach: no pin, no link, no map left.
    lab.stop_daemon(libc::SIGTERM);
    let map_ids = ProgramInfo::from_pin(lab.pin_dir.join("prog"))
        .expect("pinned program")
        .map_ids()
        .expect("map ids")
        .expect("the kernel reports map ids");
    assert!(map_ids.len() >= 9, "{map_ids:?}");
    let out = lab.vlanguard(&["detach", "--pin-dir", &lab.pin_dir.to_string_lossy()]);
    assert!(out.status.success(), "detach: {}", stderr(&out));
    assert!(!lab.pin_dir.exists(), "pin directory left behind");
    assert!(!ROUTER_IFACES.iter().any(|i| lab.xdp_attached(i)), "still attached after detach");
    // Maps are freed after an RCU grace period; give it a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while map_ids.iter().any(|id| MapInfo::from_id(*id).is_ok()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = map_ids.into_iter().filter(|id| MapInfo::from_id(*id).is_ok()).collect();
    assert!(left.is_empty(), "maps {left:?} outlived detach");
    assert_eq!(lab.ping("rogue", NURSE, 2), 2, "unfiltered after detach");
}

#[test]
fn a_second_daemon_on_the_same_pins_refuses() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let out = lab.vlanguard(&[
        "run",
        "--iface",
        "uplink",
        "--iface",
        "trunk0",
        "--config",
        &lab.policy_file.to_string_lossy(),
        "--pin-dir",
        &lab.pin_dir.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another vlanguard daemon is running on pin directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.ping("nurse", PUMP, 2), 2, "the first daemon's filter is untouched");

    // Detaching behind the daemon's back (not through its socket) is
    // refused while it holds the pins.
    let out = std::process::Command::new(lab::vlanguard_bin())
        .args(["--socket", "/nonexistent/vlanguard.sock", "detach", "--pin-dir"])
        .arg(&lab.pin_dir)
        .output()
        .expect("vlanguard");
    assert!(!out.status.success(), "detach under a running daemon must refuse");
    assert!(stderr(&out).contains("another vlanguard daemon"), "{}", stderr(&out));
    assert_eq!(lab.ping("nurse", PUMP, 2), 2, "still enforcing");

    // Through the socket, the daemon detaches everything and stops.
    let out = lab.cli(&["detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!lab.pin_dir.exists());
    assert_eq!(lab.ping("rogue", NURSE, 2), 2, "nothing filters any more");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !privileged() {
        return;
    }
    let lab = Lab::new();
    let pins = lab.pin_dir.to_string_lossy().into_owned();
    let policy = lab.policy_file.to_string_lossy().into_owned();
    let up = "uplink";

    let out = lab.vlanguard(&["run", "--iface", "nope0", "--config", &policy, "--pin-dir", &pins]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("interface \"nope0\" does not exist"), "{}", stderr(&out));

    std::fs::write(
        &lab.policy_file,
        "[[vlan]]\nid = 110\nname = \"x\"\nsubnets = [\"10.110.0.0/33\"]\n",
    )
    .expect("write");
    let out = lab.vlanguard(&["run", "--iface", up, "--config", &policy, "--pin-dir", &pins]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("policy.toml: TOML parse error at line 4"), "{}", stderr(&out));

    std::fs::write(&lab.policy_file, "[[vlan]]\nid = 110\nname = \"x\"\n\n[[device]]\nname = \"d\"\nvlan = 120\nip = [\"10.1.1.1\"]\n")
        .expect("write");
    let out = lab.vlanguard(&["run", "--iface", up, "--config", &policy, "--pin-dir", &pins]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("policy.toml:5:1: device \"d\": vlan 120 is not declared"),
        "{}",
        stderr(&out)
    );

    // An interface whose driver has no native XDP (a bridge): the error names
    // it and suggests generic mode, which then works.
    let r = lab.ns("r");
    let ok = std::process::Command::new("ip")
        .args(["-n", &r, "link", "add", "nox0", "type", "bridge"])
        .status()
        .expect("ip");
    assert!(ok.success());
    std::fs::write(&lab.policy_file, lab::policy("")).expect("write");
    let out = lab.vlanguard(&["run", "--iface", "nox0", "--config", &policy, "--pin-dir", &pins]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot attach to nox0")
            && stderr(&out).contains("--xdp-mode generic"),
        "{}",
        stderr(&out)
    );
    assert!(!lab.pin_dir.exists(), "a refused start must not pin anything");
    assert!(!lab.xdp_attached(up));
    let out = lab.vlanguard(&["detach", "--pin-dir", &pins]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nothing to detach"), "{}", stderr(&out));
}

/// Sends `count` datagrams to the pump's `port` while `during` runs, and
/// returns how many arrived.
fn stream_while(lab: &Lab, port: u16, count: u32, gap: Duration, during: impl FnOnce()) -> usize {
    // Long enough for the whole stream (and the applies that run meanwhile).
    let limit = gap * count + Duration::from_secs(30);
    let rx = lab.in_ns("pump", move || lab::udp_receive(port, Duration::from_secs(2), limit));
    thread::sleep(Duration::from_millis(300));
    let tx = lab.in_ns("nurse", move || lab::udp_send(pump_port(port), count, gap));
    during();
    tx.join().expect("sender");
    rx.join().expect("receiver").len()
}

#[test]
fn sighup_reloads_under_load_without_loss_and_revokes_at_once() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    let pid = lab.daemon_pid().expect("daemon") as i32;
    let log = lab.dir.join("daemon-0.log");
    let applied =
        || std::fs::read_to_string(&log).unwrap_or_default().matches("applied as revision").count();

    // Reloads, each of a policy that keeps UDP 5000 allowed, during a
    // steady stream: nothing may be lost.
    let reloads = 20;
    let got = stream_while(&lab, 5000, 1000, Duration::from_millis(1), || {
        for i in 0..reloads {
            let before = applied();
            // Alternate between two policies so each apply really changes the maps.
            lab.write_policy(if i % 2 == 0 {
                "\n  { from = \"nurses\", proto = \"tcp\", port = 443 },"
            } else {
                ""
            });
            // SAFETY: kill(2) on the daemon we spawned.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while applied() == before {
                assert!(Instant::now() < deadline, "reload {i} not applied");
                thread::sleep(Duration::from_millis(2));
            }
        }
    });
    assert_eq!(applied(), reloads + 1);
    let times: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit_once(" in ")?.1.strip_suffix(" ms")?.parse().ok())
        .collect();
    eprintln!("apply times (ms): {times:?}");
    assert_eq!(got, 1000, "datagrams lost during {reloads} reloads");

    // Revoke the UDP rule: once the reload is applied, nothing gets through.
    let text = std::fs::read_to_string(&lab.policy_file).expect("policy");
    std::fs::write(
        &lab.policy_file,
        text.replace("{ from = \"nurses\", proto = \"udp\", port = \"5000-5010\" },", ""),
    )
    .expect("write");
    let before = applied();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied() == before {
        assert!(Instant::now() < deadline, "revoking reload not applied");
        thread::sleep(Duration::from_millis(2));
    }
    let rx = lab
        .in_ns("pump", || lab::udp_receive(5000, Duration::from_secs(2), Duration::from_secs(3)));
    thread::sleep(Duration::from_millis(300));
    lab.in_ns("nurse", || lab::udp_send(pump_port(5000), 200, Duration::from_millis(2)))
        .join()
        .expect("sender");
    let got = rx.join().expect("receiver").len();
    assert_eq!(got, 0, "datagrams got through after the revoking apply");

    // An invalid file is reported and the running policy stays.
    std::fs::write(&lab.policy_file, "this is not toml [").expect("write");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("the running policy stays") {
        assert!(Instant::now() < deadline, "invalid reload not reported");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.ping("nurse", PUMP, 2), 2, "the running policy still allows pings");
}

#[test]
fn an_interface_running_another_xdp_program_is_named_as_such() {
    if !privileged() {
        return;
    }
    let lab = Lab::new();
    // Another tool's XDP program on the uplink, held while the daemon starts.
    let (attached, release) = std::sync::mpsc::channel();
    let (done, hold) = std::sync::mpsc::channel::<()>();
    let holder = lab.in_ns("r", move || {
        let mut ebpf = aya::Ebpf::load(filter_user::test_objects::BENCH_OBJECT).expect("object");
        let prog: &mut aya::programs::Xdp =
            ebpf.program_mut("pass_floor").expect("pass_floor").try_into().expect("xdp");
        prog.load().expect("load");
        prog.attach("uplink", aya::programs::xdp::XdpMode::Driver).expect("attach");
        attached.send(()).expect("signal");
        let _ = hold.recv_timeout(Duration::from_secs(30));
    });
    release.recv_timeout(Duration::from_secs(10)).expect("attached");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("r")])
        .arg(lab::vlanguard_bin())
        .args(lab.run_args())
        .output()
        .expect("vlanguard run");
    let _ = done.send(());
    holder.join().expect("holder");
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("cannot attach to uplink: another XDP program is attached"), "{text}");
    assert!(text.contains("ip link set dev uplink xdp off"), "{text}");
    // Nothing of ours was left on the interfaces it did attach to first.
    assert!(!lab.pin_dir.join("prog").exists(), "pins left behind");
}

/// A pin directory that is the BPF filesystem's mount point itself (which
/// also holds the kernel's own `maps.debug`/`progs.debug` on some kernels):
/// `detach` removes what vlanguard pinned, leaves the mount point, succeeds,
/// and the daemon stops without claiming a filter that is gone.
#[test]
fn detach_on_the_bpf_filesystem_root_succeeds_and_stops_the_daemon() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.pin_dir = lab.dir.join("bpf");
    lab.start_daemon();
    assert!(lab.xdp_attached("trunk0"));
    let out = lab.cli(&["detach"]);
    assert!(out.status.success(), "detach: {}", stderr(&out));
    assert!(!ROUTER_IFACES.iter().any(|i| lab.xdp_attached(i)), "still attached after detach");
    for pin in ["prog", "maps", "links"] {
        assert!(!lab.pin_dir.join(pin).exists(), "{pin} outlived detach");
    }
    assert!(lab.pin_dir.exists(), "the mount point stays");
    // The daemon stopped by itself, and said what is true.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lab.daemon_running() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!lab.daemon_running(), "the daemon stops after detach");
    let log = lab.daemon_log();
    assert!(log.contains("detached on request"), "{log}");
    assert!(!log.contains("stays attached and enforcing"), "{log}");
}

/// A second daemon refused because its control socket is taken creates no
/// pin directory (nor anything else) on its way out.
#[test]
fn a_refused_start_leaves_nothing_behind() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let other = lab.dir.join("bpf/other");
    let out = lab.vlanguard(&[
        "run",
        "--iface",
        "uplink",
        "--config",
        &lab.policy_file.to_string_lossy(),
        "--pin-dir",
        &other.to_string_lossy(),
    ]);
    assert!(!out.status.success(), "the socket is taken");
    assert!(stderr(&out).contains(&lab.socket.to_string_lossy().to_string()), "{}", stderr(&out));
    assert!(!other.exists(), "the refused daemon left {}", other.display());
    assert_eq!(lab.ping("nurse", PUMP, 2), 2, "the first daemon's filter is untouched");
}
