//! The etcd harness itself: a 3-member cluster reached from a lab's
//! router namespace survives the loss of its leader (a new one is elected,
//! data stays readable and writable), takes the old leader back, compacts,
//! and an attached namespace cut off by `partition` sees timeouts until
//! `heal`. Dropping the cluster leaves no namespace, veth, process or
//! directory behind.

use std::{
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{etcd::EtcdCluster, lab::Lab, privileged};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[track_caller]
fn ok(etcd: &EtcdCluster, out: &Output) -> String {
    assert!(out.status.success(), "etcdctl failed: {}\n{}", text(out), etcd.logs());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The processes whose command line names `dir` (the cluster's members:
/// their `--data-dir`); other etcds on the machine are not ours.
fn processes_using(dir: &std::path::Path) -> String {
    let out = Command::new("pgrep").arg("-af").arg(dir).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn etcd_cluster_elects_rejoins_compacts_and_partitions() {
    if !privileged() {
        return;
    }
    let t = Instant::now();
    let lab = Lab::pair();
    let router = lab.ns("r");
    let mut etcd = EtcdCluster::start(3);
    eprintln!("etcd: 3 members healthy after {:?}", t.elapsed());
    let prefix = etcd.prefix.clone();
    let dir = etcd.dir.clone();
    assert_eq!(
        etcd.endpoints(),
        "http://10.251.0.1:2379,http://10.251.0.2:2379,http://10.251.0.3:2379"
    );

    // The router reaches the cluster over its new link.
    let addr = etcd.attach(&router);
    assert_eq!(addr, "10.251.0.100");
    ok(&etcd, &etcd.etcdctl_from(&router, &["put", "vlanguard/policy", "rev-1"]));
    let got = ok(&etcd, &etcd.etcdctl_from(&router, &["get", "vlanguard/policy"]));
    assert_eq!(got, "vlanguard/policy\nrev-1\n");
    assert_eq!(etcd.get("vlanguard/policy").as_deref(), Some("rev-1"));
    assert_eq!(etcd.get("vlanguard/absent"), None);

    // The leader dies: the others elect one of themselves.
    let old = etcd.leader();
    eprintln!("etcd: leader is m{old}");
    etcd.kill(old);
    let killed = Instant::now();
    let new = etcd.leader();
    let election = killed.elapsed();
    eprintln!("etcd: m{old} killed, m{new} elected leader after {election:?}");
    assert_ne!(new, old);
    assert!(election < Duration::from_secs(10), "election took {election:?}");
    let got = ok(&etcd, &etcd.etcdctl_from(&router, &["get", "vlanguard/policy"]));
    assert_eq!(got, "vlanguard/policy\nrev-1\n", "readable without the old leader");
    ok(&etcd, &etcd.etcdctl_from(&router, &["put", "vlanguard/policy", "rev-2"]));
    assert_eq!(etcd.get("vlanguard/policy").as_deref(), Some("rev-2"));

    // The old leader comes back on its data and catches up.
    let t = Instant::now();
    etcd.restart(old);
    eprintln!("etcd: m{old} rejoined after {:?}", t.elapsed());
    let got = ok(&etcd, &etcd.etcdctl_member(old, &["get", "vlanguard/policy"]));
    assert_eq!(got, "vlanguard/policy\nrev-2\n", "the restarted member serves the new value");
    let leader = etcd.leader();
    eprintln!("etcd: leader after the rejoin is m{leader}");

    // Compaction removes the history before the current revision.
    let early = etcd.revision();
    for v in ["rev-3", "rev-4", "rev-5"] {
        etcd.put("vlanguard/policy", v);
    }
    let rev = etcd.compact();
    assert!(rev >= early + 3, "compacted at {rev}, wrote after {early}");
    assert_eq!(etcd.compact(), rev, "compacting again is a no-op");
    let out = etcd.etcdctl(&["get", "vlanguard/policy", &format!("--rev={early}")]);
    assert!(!out.status.success(), "history before {rev} still there: {}", text(&out));
    assert!(text(&out).contains("compacted"), "{}", text(&out));
    assert_eq!(etcd.get("vlanguard/policy").as_deref(), Some("rev-5"));

    // Cut off, the router's requests time out (not refused at once)...
    etcd.partition(&router);
    etcd.partition(&router);
    let t = Instant::now();
    let out = etcd.etcdctl_from(
        &router,
        &["--dial-timeout=2s", "--command-timeout=2s", "get", "vlanguard/policy"],
    );
    let took = t.elapsed();
    eprintln!("etcd: partitioned router's get failed after {took:?}: {}", text(&out).trim());
    assert!(!out.status.success(), "reached etcd through a partition: {}", text(&out));
    assert!(text(&out).contains("deadline exceeded"), "{}", text(&out));
    assert!(took >= Duration::from_millis(1500), "failed at once ({took:?}): {}", text(&out));
    // ...while the cluster carries on.
    etcd.put("vlanguard/policy", "rev-6");

    // Healed, the router is back.
    etcd.heal(&router);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = etcd.etcdctl_from(&router, &["--command-timeout=2s", "get", "vlanguard/policy"]);
        if out.status.success() {
            assert_eq!(text(&out), "vlanguard/policy\nrev-6\n");
            break;
        }
        assert!(Instant::now() < deadline, "router never reached etcd again: {}", text(&out));
        thread::sleep(Duration::from_millis(200));
    }
    etcd.heal(&router);

    // Dropping the cluster leaves nothing behind, in the router either.
    drop(etcd);
    let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip netns");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout).into_owned();
    assert!(!namespaces.contains(&prefix), "namespaces left: {namespaces}");
    let links = Command::new("ip").args(["-n", &router, "-o", "link"]).output().expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains(&format!("{prefix}e0")), "veth left in the router: {links}");
    assert!(!dir.exists(), "{} left", dir.display());
    let left = processes_using(&dir);
    assert!(left.is_empty(), "etcd processes left: {left}");
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    if !privileged() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let caught = std::panic::catch_unwind(move || {
        let mut etcd = EtcdCluster::start(1);
        let _ = tx.send((etcd.prefix.clone(), etcd.dir.clone()));
        etcd.kill(0);
        etcd.kill(0);
    });
    let message = caught.expect_err("killing a killed member panics");
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("kill m0: it does not run"), "{message}");
    let (prefix, dir) = rx.recv().expect("the cluster started");
    let left = processes_using(&dir);
    assert!(left.is_empty(), "etcd processes left: {left}");
    let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip netns");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout).into_owned();
    assert!(!namespaces.contains(&prefix), "namespaces left: {namespaces}");
    assert!(!dir.exists(), "{} left", dir.display());
}
