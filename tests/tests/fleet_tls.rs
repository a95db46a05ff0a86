//! Fleet mode as a hospital runs etcd: the members serve their clients
//! over TLS only (`https://IP:2379`) and accept only clients that show a
//! certificate of the site's CA (`--client-cert-auth`); see
//! `EtcdCluster::start_tls`. The `fleet` commands and the daemons are given
//! `--fleet-ca`, `--fleet-cert` and `--fleet-key`.
//!
//! The probe is the one of `fleet.rs`: the core server sending UDP to the
//! pump on port 7000, which the approved version allows and the lab's own
//! policy does not.
//!
//! The tests share the machine's two CPUs badly, so they run one at a time.

use std::{
    process::Output,
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    etcd::Ca,
    fleet::{CONVERGE, FleetLab, UDP_7000, serial},
    lab::policy,
    privileged,
};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Proposes the lab's policy with UDP 7000 allowed and approves it with
/// alice's and bob's keys; its version.
fn approve_udp_7000(f: &FleetLab) -> u64 {
    let version = f.propose(&policy(UDP_7000));
    f.approve(version, "alice");
    f.approve(version, "bob");
    version
}

/// Waits until router `i` says it is connected to etcd.
#[track_caller]
fn wait_connected(f: &FleetLab, i: usize) {
    let deadline = Instant::now() + CONVERGE;
    while f.status(i)["connected"] != true {
        assert!(
            Instant::now() < deadline,
            "router {i} never reached etcd over TLS: {:#}\n{}",
            f.status(i),
            f.labs[i].daemon_log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until router `i` reports a failed connection; its last error.
/// Never connected in between, and nothing applied.
#[track_caller]
fn wait_refused(f: &FleetLab, i: usize) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let s = f.status(i);
        assert_eq!(s["connected"], false, "router {i} reached etcd: {s:#}");
        assert_eq!(s["applied_version"], serde_json::Value::Null, "router {i}: {s:#}");
        if let Some(e) = s["last_error"].as_str() {
            return e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "router {i} reported no failed connection within {CONVERGE:?}: {s:#}\n{}",
            f.labs[i].daemon_log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn routers_reach_a_tls_site_with_client_certificates_and_apply_a_version_two_keys_approved() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let t = Instant::now();
    // `new_tls` already ran `fleet init` over TLS.
    let mut f = FleetLab::new_tls(2);
    eprintln!("fleet tls: cluster, routers and site ready after {:?}", t.elapsed());
    let endpoints = f.etcd.endpoints();
    assert!(
        endpoints.split(',').all(|u| u.starts_with("https://") && u.ends_with(":2379")),
        "{endpoints}"
    );
    f.start_daemons();
    for i in 0..2 {
        wait_connected(&f, i);
        let s = f.status(i);
        assert_eq!(s["applied_version"], serde_json::Value::Null, "{s}");
        assert_eq!(f.core_to_pump(i, 7000), 0, "the lab's own policy does not allow 7000");
    }

    let approved = Instant::now();
    let version = approve_udp_7000(&f);
    assert_eq!(version, 1);
    let times: Vec<String> = (0..2)
        .map(|i| {
            f.wait_version(i, version, CONVERGE);
            format!("{:.0} ms", approved.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    eprintln!(
        "fleet tls: version 1 proposed, approved and applied by the routers after {}",
        times.join(", ")
    );
    for i in 0..2 {
        assert_eq!(f.core_to_pump(i, 7000), 20, "router {i} enforces version 1");
        assert_eq!(f.core_to_pump(i, 7001), 0, "router {i}: only what version 1 allows");
        assert_eq!(f.status(i)["connected"], true, "router {i}");
    }

    // The routers' status keys went over TLS too.
    let status = f.fleet_status();
    assert_eq!(status["approved_version"], 1, "{status:#}");
    let routers = status["routers"].as_array().expect("routers");
    assert_eq!(routers.len(), 2, "{status:#}");
    for r in routers {
        assert_eq!(r["applied_version"], 1, "{r}");
        assert_eq!(r["alive"], true, "{r}");
    }
    let log = f.ok(&["log"]);
    assert!(log.contains("approved by alice") && log.contains("approved by bob"), "{log}");
}

#[test]
fn a_router_without_a_client_certificate_of_the_site_cannot_reach_etcd_and_keeps_enforcing() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let mut f = FleetLab::new_tls(2);
    f.start_daemon(0);
    let version = approve_udp_7000(&f);
    f.wait_version(0, version, CONVERGE);
    assert_eq!(f.core_to_pump(0, 7000), 20, "router 0 enforces version {version}");
    let ca = f.etcd.tls().expect("a TLS cluster").ca.display().to_string();

    // Router 1 trusts the site's CA but shows no certificate of its own.
    let mut args = f.run_args_without_tls(1);
    args.extend(["--fleet-ca".to_string(), ca.clone()]);
    f.start_daemon_args(1, &args);
    let e = wait_refused(&f, 1);
    eprintln!("fleet tls: router without a client certificate: {e}");
    assert!(e.contains("unreachable") && e.contains("the local policy"), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "the TLS problem is named: {e}");
    // A few more seconds: still nothing, the lab's own policy in force.
    thread::sleep(Duration::from_secs(3));
    let s = f.status(1);
    assert_eq!(s["connected"], false, "{s:#}");
    assert_eq!(s["applied_version"], serde_json::Value::Null, "{s:#}");
    assert_eq!(f.core_to_pump(1, 7000), 0, "router 1 keeps its own policy");
    f.labs[1].stop_daemon(libc::SIGTERM);

    // A client certificate of another CA: refused as well.
    let rogue = Ca::new(&f.dir.join("rogue"), "rogue-ca");
    let (cert, key) = rogue.issue("rogue-client", None);
    let mut args = f.run_args_without_tls(1);
    args.extend([
        "--fleet-ca".to_string(),
        ca,
        "--fleet-cert".to_string(),
        cert.display().to_string(),
        "--fleet-key".to_string(),
        key.display().to_string(),
    ]);
    f.start_daemon_args(1, &args);
    let e = wait_refused(&f, 1);
    eprintln!("fleet tls: router with another CA's client certificate: {e}");
    assert!(e.contains("unreachable") && e.contains("the local policy"), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "the TLS problem is named: {e}");
    thread::sleep(Duration::from_secs(3));
    assert_eq!(f.status(1)["applied_version"], serde_json::Value::Null);
    assert_eq!(f.core_to_pump(1, 7000), 0, "router 1 keeps its own policy");
    // Neither daemon got as far as its status key.
    let status = f.fleet_status();
    let routers = status["routers"].as_array().expect("routers");
    assert!(routers.iter().all(|r| r["router"] != "r1"), "{status:#}");
    f.labs[1].stop_daemon(libc::SIGTERM);

    // The site's client certificate: the same router applies the version.
    f.start_daemon(1);
    f.wait_version(1, version, CONVERGE);
    assert_eq!(f.status(1)["connected"], true);
    assert_eq!(f.core_to_pump(1, 7000), 20, "router 1 enforces version {version}");
}

#[test]
fn fleet_commands_without_the_sites_ca_or_client_certificate_fail_naming_the_tls_problem() {
    if !privileged() {
        return;
    }
    let _one = serial();
    let f = FleetLab::new_tls(0);
    let t = f.etcd.tls().expect("a TLS cluster");
    let (ca, cert, key) = (
        t.ca.display().to_string(),
        t.client_cert.display().to_string(),
        t.client_key.display().to_string(),
    );
    // With everything: fine (the site exists, nothing proposed yet).
    let out = f.fleet(&["status"]);
    assert!(out.status.success(), "{}", text(&out));

    let rogue = Ca::new(&f.dir.join("rogue"), "rogue-ca");
    let (rogue_cert, rogue_key) = rogue.issue("rogue-client", None);
    let (rogue_ca, rogue_cert, rogue_key) = (
        rogue.cert.display().to_string(),
        rogue_cert.display().to_string(),
        rogue_key.display().to_string(),
    );

    for (what, tls) in [
        ("no --fleet-ca", vec!["--fleet-cert", &cert, "--fleet-key", &key]),
        ("no client certificate", vec!["--fleet-ca", &ca]),
        ("nothing", vec![]),
        (
            "another CA's client certificate",
            vec!["--fleet-ca", &ca, "--fleet-cert", &rogue_cert, "--fleet-key", &rogue_key],
        ),
        // Another CA given as the members': their certificates fail.
        (
            "the wrong --fleet-ca",
            vec!["--fleet-ca", &rogue_ca, "--fleet-cert", &cert, "--fleet-key", &key],
        ),
    ] {
        let start = Instant::now();
        let out = f.fleet_with(&tls, &["status"]);
        let took = start.elapsed();
        let said = text(&out);
        eprintln!(
            "fleet tls: `fleet status` with {what}: {:?} after {took:?}:\n{said}",
            out.status
        );
        assert!(!out.status.success(), "{what}: {said}");
        assert_eq!(out.status.code(), Some(1), "{what}: {said}");
        assert!(said.contains("https://10.251.0.1:2379"), "{what}: the endpoint is named: {said}");
        assert!(said.to_lowercase().contains("certificate"), "{what}: {said}");
    }
}
