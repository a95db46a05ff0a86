//! Flow tracking in the namespace lab, with real sockets: the pump may open
//! connections to its server and gets the answers without any rule for
//! them; the server may not open connections to the pump; UDP and ICMP echo
//! likewise, IPv6 too; an idle flow expires; revoking the rule cuts an
//! established connection.

use std::{
    fs,
    net::{SocketAddr, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{self, CORE, Lab, PUMP, round_trip, tcp_echo, tcp_works},
    privileged, sample,
};

const CORE6: &str = "2001:db8:20::10";
const PUMP6: &str = "2001:db8:110::7";

/// The pump may open TCP 8443, UDP 5353 and echo to the servers; nothing
/// may reach it unasked. UDP flows idle out after 2 s.
fn policy(with_tcp: bool) -> String {
    let tcp = if with_tcp { r#"{ to = "servers", proto = "tcp", port = 8443 },"# } else { "" };
    format!(
        r#"
[settings]
allow_arp = true
allow_ndp = true

[settings.flow_timeouts]
udp = "2s"

{vlans}
[peers]
servers = ["10.20.0.0/16", "2001:db8:20::/48"]

[[device]]
name = "pump"
vlan = 110
ip = ["10.110.0.7", "2001:db8:110::7"]
mac = "02:00:00:00:00:07"
allow_out = [
  {tcp}
  {{ to = "servers", proto = "udp", port = 5353 }},
  {{ to = "servers", proto = "icmp", icmp_type = 8 }},
  {{ to = "servers", proto = "icmpv6", icmp_type = 128 }},
]

[[device]]
name = "monitor"
vlan = 120
ip = ["10.120.0.11", "2001:db8:120::11"]
"#,
        vlans = lab::VLANS
    )
}

/// A UDP echo in `role`'s namespace on `addr` answering each datagram after
/// `delay`, for `life`.
fn udp_echo(lab: &Lab, role: &str, addr: SocketAddr, delay: Duration, life: Duration) {
    let _ = lab.in_ns(role, move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let end = Instant::now() + life;
        let mut buf = [0u8; 64];
        while Instant::now() < end {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                thread::sleep(delay);
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
}

/// From `role`: one datagram to `to`; whether the answer came within `wait`.
fn udp_answered(lab: &Lab, role: &str, to: SocketAddr, wait: Duration) -> bool {
    lab.in_ns(role, move || {
        let bind = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let s = UdpSocket::bind(bind).expect("bind");
        s.set_read_timeout(Some(wait)).expect("timeout");
        s.send_to(b"q", to).expect("send");
        let mut buf = [0u8; 8];
        s.recv_from(&mut buf).is_ok()
    })
    .join()
    .expect("udp client")
}

fn flows_metric(lab: &Lab, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    sample(&lab.scrape(), "vlanguard_flows_total", &[&label]) as u64
}

#[test]
fn replies_pass_unsolicited_traffic_does_not() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    fs::write(&lab.policy_file, policy(true)).expect("policy");
    lab.start_daemon();

    // TCP, v4 and v6: the pump opens, the server answers.
    let server = tcp_echo(&lab, "core", lab::socket_addr(CORE, 8443));
    assert!(
        tcp_works(&lab, "pump", lab::socket_addr(CORE, 8443)),
        "pump -> server TCP and its replies"
    );
    server.join().expect("server");
    let server = tcp_echo(&lab, "core", lab::socket_addr(CORE6, 8443));
    assert!(tcp_works(&lab, "pump", lab::socket_addr(CORE6, 8443)), "IPv6 pump -> server TCP");
    server.join().expect("server");
    // The server may not open a connection to the pump.
    let pump_server = tcp_echo(&lab, "pump", lab::socket_addr("0.0.0.0", 8443));
    assert!(
        !tcp_works(&lab, "core", lab::socket_addr(PUMP, 8443)),
        "server -> pump must be dropped"
    );
    assert!(
        !tcp_works(&lab, "core", lab::socket_addr(PUMP6, 8443)),
        "IPv6 server -> pump must be dropped"
    );
    drop(pump_server);

    // UDP request and response; the server's own datagram is not one.
    udp_echo(&lab, "core", lab::socket_addr(CORE, 5353), Duration::ZERO, Duration::from_secs(4));
    thread::sleep(Duration::from_millis(200));
    assert!(
        udp_answered(&lab, "pump", lab::socket_addr(CORE, 5353), Duration::from_secs(2)),
        "UDP answer"
    );
    udp_echo(
        &lab,
        "pump",
        lab::socket_addr("0.0.0.0", 5353),
        Duration::ZERO,
        Duration::from_secs(3),
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        !udp_answered(&lab, "core", lab::socket_addr(PUMP, 5353), Duration::from_secs(1)),
        "server -> pump UDP must be dropped"
    );

    // ICMP echo: the pump's pings are answered, the server's are not.
    assert_eq!(lab.ping("pump", CORE, 2), 2, "pump pings the server");
    assert_eq!(lab.ping("pump", CORE6, 2), 2, "pump pings the server over IPv6");
    assert_eq!(lab.ping("core", PUMP, 1), 0, "server pings the pump");

    // An idle UDP flow expires after its 2 s: an answer 3 s late is dropped.
    thread::sleep(Duration::from_secs(3));
    udp_echo(
        &lab,
        "core",
        lab::socket_addr(CORE, 5354),
        Duration::from_secs(3),
        Duration::from_secs(5),
    );
    let late = policy(true).replace("port = 5353", "port = \"5353-5354\"");
    fs::write(&lab.policy_file, late).expect("policy");
    assert!(lab.cli(&["policy", "apply"]).status.success());
    thread::sleep(Duration::from_millis(200));
    assert!(
        !udp_answered(&lab, "pump", lab::socket_addr(CORE, 5354), Duration::from_secs(4)),
        "an answer after the flow timed out must be dropped"
    );
    assert!(flows_metric(&lab, "expired") >= 1, "expired flows are counted");
    assert!(flows_metric(&lab, "created") >= 5, "created flows are counted");
}

#[test]
fn revoking_the_rule_cuts_an_established_connection() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    fs::write(&lab.policy_file, policy(true)).expect("policy");
    lab.start_daemon();
    let server = tcp_echo(&lab, "core", lab::socket_addr(CORE, 8443));
    thread::sleep(Duration::from_millis(200));
    let policy_file = lab.policy_file.clone();
    let socket = lab.socket.clone();
    let (before, after) = lab
        .in_ns("pump", move || {
            let mut c =
                TcpStream::connect_timeout(&lab::socket_addr(CORE, 8443), Duration::from_secs(3))
                    .expect("connect");
            let before = round_trip(&mut c, b"one");
            fs::write(&policy_file, policy(false)).expect("policy");
            let out = std::process::Command::new(vlanguard_tests::lab::vlanguard_bin())
                .arg("--socket")
                .arg(&socket)
                .args(["policy", "apply"])
                .output()
                .expect("apply");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            (before, round_trip(&mut c, b"two"))
        })
        .join()
        .expect("client");
    assert!(before, "the connection works while the rule is there");
    assert!(!after, "no data may pass on the connection once its rule is revoked");
    assert!(flows_metric(&lab, "revoked") >= 1, "revoked flows are counted");
    drop(server);
}

/// Multi-queue veths, like a NIC with RSS: each frame is decided on the CPU
/// that sent it. The nurse opens a UDP flow to the pump from CPU 0; the
/// pump answers from CPU 1, which no rule allows: the answers pass on the
/// flow the other CPU recorded (the flow cache is shared by all CPUs). The
/// program's own per-CPU counters show which CPU decided what.
#[test]
fn a_flow_opened_on_one_cpu_carries_its_replies_on_another() {
    if !privileged() {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(cpus >= 2, "this test needs two CPUs; the machine has {cpus}");
    let mut lab = Lab::multiqueue();
    lab.start_daemon();
    let per_cpu = |lab: &Lab, reason: filter_common::Reason| -> Vec<u64> {
        use aya::maps::{Map, MapData, PerCpuArray};
        let path = lab.pin_dir.join("maps").join(filter_common::maps::GLOBAL_STATS);
        let map = Map::from_map_data(MapData::from_pin(&path).expect("pinned map")).expect("map");
        let stats: PerCpuArray<MapData, filter_common::Counter> =
            PerCpuArray::try_from(map).expect("per-CPU array");
        let index = filter_common::global_stat_index(filter_common::Verdict::Pass, reason);
        stats.get(&index, 0).expect("counter").iter().map(|c| c.packets).collect()
    };
    let (allowed0, established0) = (
        per_cpu(&lab, filter_common::Reason::Allowed),
        per_cpu(&lab, filter_common::Reason::Established),
    );

    let on_cpu = |cpu: usize| {
        vlanguard_tests::pin_to_cpu(0, cpu).expect("pin to CPU");
    };
    // The pump's side: answers every datagram, from CPU 1.
    let pump = lab.in_ns("pump", move || {
        on_cpu(1);
        let sock = UdpSocket::bind("0.0.0.0:5000").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let mut buf = [0u8; 64];
        let mut answered = 0;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
            answered += 1;
            if answered == 20 {
                break;
            }
        }
        answered
    });
    thread::sleep(Duration::from_millis(200));
    let pump_addr: SocketAddr = format!("{PUMP}:5000").parse().expect("address");
    let answers = lab
        .in_ns("nurse", move || {
            on_cpu(0);
            let sock = UdpSocket::bind("0.0.0.0:41000").expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
            let mut got = 0;
            let mut buf = [0u8; 64];
            for seq in 0..20u32 {
                let _ = sock.send_to(&seq.to_be_bytes(), pump_addr);
                if sock.recv(&mut buf).is_ok() {
                    got += 1;
                }
            }
            got
        })
        .join()
        .expect("nurse");
    assert_eq!(pump.join().expect("pump"), 20, "every request reached the pump");
    assert_eq!(answers, 20, "every answer came back on the flow");
    let allowed: Vec<u64> = per_cpu(&lab, filter_common::Reason::Allowed)
        .iter()
        .zip(&allowed0)
        .map(|(a, b)| a - b)
        .collect();
    let established: Vec<u64> = per_cpu(&lab, filter_common::Reason::Established)
        .iter()
        .zip(&established0)
        .map(|(a, b)| a - b)
        .collect();
    assert!(allowed[0] >= 1, "the flow opened on CPU 0: allowed per CPU {allowed:?}");
    assert!(
        established[1] >= 20,
        "the answers passed on CPU 1 as the flow's: established per CPU {established:?}"
    );
}
