//! `cargo xtask demo`: the test lab (tests/src/lab.rs) — a router with an
//! uplink to nurse stations, an uplink to core servers and an 802.1Q trunk
//! carrying the pump and monitor VLANs — enforcing examples/hospital.toml
//! with the real daemon and CLI. Sends allowed and blocked flows, shows
//! what vlanguard counted, changes a rule live, survives `kill -9` of the
//! daemon, and detaches. Everything is torn down at the end, on failure and
//! on Ctrl-C.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Output,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use vlanguard_tests::lab::{self, CORE, Lab, MONITOR, NURSE, PUMP, PUMP6};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn step(title: &str) -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; tearing the lab down");
    }
    println!("\n\x1b[1m== {title}\x1b[0m");
    Ok(())
}

struct Expect {
    failed: usize,
}

impl Expect {
    fn check(&mut self, what: &str, want: bool, got: bool) {
        let word = |b| if b { "passes" } else { "dropped" };
        if want == got {
            println!("  \x1b[32mas expected\x1b[0m  {what:<62} {}", word(got));
        } else {
            println!(
                "  \x1b[31mUNEXPECTED\x1b[0m   {what:<62} {} (wanted: {})",
                word(got),
                word(want)
            );
            self.failed += 1;
        }
    }
}

fn show(out: &Output) {
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("  {line}");
    }
}

/// Whether a UDP datagram from `from` reaches `to_role`'s `addr:port`.
fn udp_arrives(lab: &Lab, from: &str, to_role: &str, addr: &str, port: u16) -> bool {
    let rx = lab.in_ns(to_role, move || {
        lab::udp_receive(port, Duration::from_millis(500), Duration::from_secs(2))
    });
    thread::sleep(Duration::from_millis(200));
    let dst: SocketAddr = format!("{addr}:{port}").parse().expect("address");
    lab.in_ns(from, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..3 {
            let _ = sock.send_to(b"demo", dst);
        }
    })
    .join()
    .expect("sender");
    !rx.join().expect("receiver").is_empty()
}

fn tcp_connects(lab: &Lab, from: &str, addr: &str, port: u16) -> bool {
    let dst: SocketAddr = format!("{addr}:{port}").parse().expect("address");
    lab.in_ns(from, move || {
        std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(2)).is_ok()
    })
    .join()
    .expect("connect")
}

fn flows(lab: &Lab, e: &mut Expect) {
    e.check(
        "nurse station pings pump-icu-07 (VLAN 110, on the trunk)",
        true,
        lab.ping("nurse", PUMP, 2) == 2,
    );
    e.check("nurse station pings pump-icu-07 over IPv6", true, lab.ping("nurse", PUMP6, 2) == 2);
    e.check(
        "pump-icu-07 sends NTP to its time server",
        true,
        udp_arrives(lab, "pump", "core", "10.20.1.123", 123),
    );
    e.check("nurse station opens telnet on the pump", false, tcp_connects(lab, "nurse", PUMP, 23));
    e.check("core server opens ssh on the pump", false, tcp_connects(lab, "core", PUMP, 22));
    e.check("pump-icu-07 pings a nurse station (no rule)", false, lab.ping("pump", NURSE, 2) > 0);
    e.check(
        "nurse station pings monitor-icu-01 (VLAN 120)",
        false,
        lab.ping("nurse", MONITOR, 2) > 0,
    );
    e.check(
        "unknown host 10.110.0.99 on the pump VLAN reaches out",
        false,
        lab.ping("rogue", NURSE, 2) > 0,
    );
    e.check(
        "nurse station reaches the core server (no device involved)",
        true,
        lab.ping("nurse", CORE, 2) == 2,
    );
}

fn main() -> anyhow::Result<()> {
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let policy = std::env::args().nth(1).context("usage: demo POLICY_FILE")?;
    let mut e = Expect { failed: 0 };

    step("building the lab: router, uplinks, 802.1Q trunk with VLANs 110 and 120")?;
    let mut lab = Lab::new();
    std::fs::copy(&policy, &lab.policy_file).with_context(|| format!("copying {policy}"))?;
    println!("  namespaces {}-*, router interfaces {}", lab.prefix, lab::ROUTER_IFACES.join(", "));

    step(&format!("starting vlanguard run with {policy}"))?;
    for line in lab.start_daemon().lines() {
        println!("  {line}");
    }

    step("traffic")?;
    flows(&lab, &mut e);

    step("vlanguard status")?;
    show(&lab.cli(&["status"]));
    step("vlanguard stats")?;
    show(&lab.cli(&["stats"]));

    step("an operator lets pump-icu-07 ping nurse stations, then revokes it")?;
    // Only the request needs a rule: the reply belongs to the flow it opens,
    // and revoking the rule ends that flow too.
    let rules = [("out", "8")];
    let change = |verb: &str| {
        for (direction, icmp_type) in rules {
            show(&lab.cli(&[
                verb,
                "pump-icu-07",
                direction,
                "nurse-stations",
                "--proto",
                "icmp",
                "--icmp-type",
                icmp_type,
            ]));
        }
    };
    change("allow");
    e.check("pump-icu-07 pings a nurse station", true, lab.ping("pump", NURSE, 2) == 2);
    change("revoke");
    e.check("and is stopped again", false, lab.ping("pump", NURSE, 2) > 0);
    println!("  audit log:");
    for line in std::fs::read_to_string(&lab.audit_log).unwrap_or_default().lines() {
        println!("    {line}");
    }

    step("kill -9 the daemon: the filter keeps enforcing")?;
    lab.stop_daemon(libc::SIGKILL);
    flows(&lab, &mut e);

    step("a new daemon adopts the pinned filter without a gap")?;
    for line in lab.start_daemon().lines().filter(|l| l.contains("adopted")) {
        println!("  {line}");
    }
    e.check("nurse station pings pump-icu-07", true, lab.ping("nurse", PUMP, 2) == 2);

    step("vlanguard detach: links, program and maps removed")?;
    show(&lab.cli(&["detach"]));
    e.check(
        "unknown host now reaches out: nothing filters any more",
        true,
        lab.ping("rogue", NURSE, 2) == 2,
    );

    step("tearing the lab down")?;
    drop(lab);
    if e.failed > 0 {
        bail!("{} flows did not behave as expected", e.failed);
    }
    println!("  done: every flow behaved as the policy says");
    Ok(())
}
