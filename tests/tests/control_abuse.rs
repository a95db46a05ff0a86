//! The control socket under abuse: 1,000 connections that send nothing,
//! request lines of 10 MB and 70 MB, invalid UTF-8 and invalid JSON. Each gets a
//! defined answer or is cut off after the request timeout; meanwhile other
//! clients are served, and the daemon's memory stays bounded.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use vlanguard_tests::{lab::Lab, privileged};

fn rss_kb(lab: &Lab) -> u64 {
    let pid = lab.daemon_pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Sends `bytes` as one request and returns the reply line (bounded wait).
fn ask_raw(lab: &Lab, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(&lab.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    // A reply may come before everything is written (a line that is too
    // long is refused at the limit): a failed write is part of the test.
    let _ = s.write_all(bytes);
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

#[test]
fn abuse_of_the_control_socket_leaves_other_clients_served_and_memory_bounded() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let before = rss_kb(&lab);

    // 1,000 connections that send nothing (a slowloris).
    let idle: Vec<UnixStream> =
        (0..1000).map(|_| UnixStream::connect(&lab.socket).expect("connect")).collect();
    let t = Instant::now();
    let status = lab.cli(&["status"]);
    let took = t.elapsed();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    eprintln!("status with 1,000 idle connections open: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Bad requests get a defined refusal.
    let reply = ask_raw(&lab, b"\xff\xfe\xfd not utf-8\n");
    assert!(reply.contains("\"ok\":false") && reply.contains("reading the request"), "{reply}");
    let reply = ask_raw(&lab, b"{\"this is\": not json\n");
    assert!(reply.contains("bad request"), "{reply}");
    // 10 MB (within the limit for whole policy files) is read and refused
    // as what it is; 70 MB is cut off at the limit.
    let mut big = vec![b'x'; 10 << 20];
    big.push(b'\n');
    assert!(ask_raw(&lab, &big).contains("bad request"));
    drop(big);
    let huge = vec![b'x'; 70 << 20];
    let reply = ask_raw(&lab, &huge);
    assert!(reply.contains("longer than"), "{}", &reply[..reply.len().min(300)]);
    drop(huge);

    // The idle connections are cut off after the request timeout, with a
    // reply saying so.
    let mut first = idle.into_iter().next().expect("one");
    first.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut reply = String::new();
    let _ = first.read_to_string(&mut reply);
    assert!(reply.contains("no whole request within"), "{reply}");

    let after = rss_kb(&lab);
    eprintln!("daemon RSS {before} kB before, {after} kB after");
    assert!(after < before + 200 * 1024, "RSS grew from {before} kB to {after} kB");
    assert!(lab.cli(&["status"]).status.success());
}
