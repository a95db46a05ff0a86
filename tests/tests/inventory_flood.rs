//! A flood of 100,000 random source MACs on a protected VLAN (half IPv4
//! datagrams from unknown hosts, half ARP requests), sent as raw frames
//! from an access port: the daemon keeps answering (`status` within a
//! second throughout), the inventory stays within its capacity, and what
//! could not be kept is counted.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    frame::{Frame, L4},
    lab::{Lab, NURSE, sh},
    privileged, sample,
};

const MACS: usize = 100_000;
/// The inventory's capacity in this test (`--inventory-capacity`), below
/// the flood's distinct hosts so that eviction happens.
const CAPACITY: usize = 5_000;

/// The flood's frames: each from its own random, locally administered MAC;
/// the datagrams to the gateway's MAC `gateway`, as hosts send them.
fn frames(gateway: [u8; 6]) -> Vec<Vec<u8>> {
    (0..MACS)
        .map(|i| {
            let mut mac: [u8; 6] = rand::random();
            mac[0] = (mac[0] & 0xfc) | 0x02;
            let host = std::net::Ipv4Addr::new(10, 110, 0, 100 + (i % 150) as u8);
            if i % 2 == 0 {
                let mut f =
                    Frame::ip(host.into(), NURSE.parse().expect("address"), L4::udp(40_000, 5000))
                        .from_mac(mac);
                f.dst_mac = gateway;
                with_ip_checksum(f.padded())
            } else {
                Frame::arp(mac, host, std::net::Ipv4Addr::new(10, 110, 0, 1)).padded()
            }
        })
        .collect()
}

/// The frame with its IPv4 header checksum set: the lab switch is a Linux
/// bridge, and with br_netfilter loaded (Docker loads it) the bridge drops
/// IPv4 packets whose header does not check out, as a router would.
fn with_ip_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    const IP: usize = 14;
    let header_len = usize::from(frame[IP] & 0x0f) * 4;
    frame[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = frame[IP..IP + header_len]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[IP + 10..IP + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame
}

/// Sends `frames` out of `role`'s eth0 through a packet socket; returns
/// how many were sent and how long that took.
fn send_raw(lab: &Lab, role: &str, frames: Vec<Vec<u8>>) -> (usize, Duration) {
    lab.in_ns(role, move || {
        // SAFETY: socket(2) with constant arguments; the descriptor is
        // owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor this thread owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(ifindex, 0, "eth0: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) with a sockaddr_ll of its size.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let start = Instant::now();
        let mut sent = 0;
        for f in &frames {
            // SAFETY: send(2) of a buffer we own, of its length.
            let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            if n == f.len() as isize {
                sent += 1;
            }
        }
        (sent, start.elapsed())
    })
    .join()
    .expect("sender")
}

#[test]
fn a_flood_of_random_macs_leaves_the_daemon_responsive_and_the_inventory_bounded() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    // Drop events as fast as they come, so the daemon, not the program's
    // rate limit, is what the flood tests.
    let policy = vlanguard_tests::lab::policy("")
        .replace("[settings]\n", "[settings]\nevents_per_second = 1000000\n");
    std::fs::write(&lab.policy_file, policy).expect("policy");
    lab.start_daemon_with(&["--inventory-capacity", &CAPACITY.to_string()]);
    let frames = frames(gateway_mac(&lab));

    // `status` asked every 50 ms while the flood runs (bounded).
    let socket = lab.socket.clone();
    let ns = lab.ns("r");
    let bin = vlanguard_tests::lab::vlanguard_bin();
    let asking = thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let mut answered = 0;
        let until = Instant::now() + Duration::from_secs(8);
        for _ in 0..200 {
            if Instant::now() > until {
                break;
            }
            let t = Instant::now();
            let out = Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(&bin)
                .args(["status", "--socket"])
                .arg(&socket)
                .output()
                .expect("vlanguard status");
            slowest = slowest.max(t.elapsed());
            answered += usize::from(out.status.success());
            thread::sleep(Duration::from_millis(50));
        }
        (answered, slowest)
    });
    let (sent, took) = send_raw(&lab, "rogue", frames);
    let (answered, slowest) = asking.join().expect("status thread");

    eprintln!(
        "flood: {sent} frames from {MACS} MACs in {took:?}; status answered {answered} times, \
         slowest {slowest:?}"
    );
    assert!(sent >= MACS * 9 / 10, "only {sent} frames sent");
    assert!(answered >= 10, "status answered {answered} times");
    assert!(slowest < Duration::from_secs(1), "status took {slowest:?} during the flood");

    // Once the last batch is written: within the capacity, the rest
    // counted.
    thread::sleep(Duration::from_secs(3));
    let out = lab.cli(&["inventory", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let hosts = data["hosts"].as_array().map_or(0, Vec::len);
    let metrics = lab.scrape();
    let evicted = sample(&metrics, "vlanguard_inventory_evictions_total", &[]);
    let dropped = sample(&metrics, "vlanguard_inventory_sightings_dropped_total", &[]);
    let reports = |outcome: &str| {
        sample(&metrics, "vlanguard_identity_reports_total", &[&format!("outcome=\"{outcome}\"")])
    };
    let events = |outcome: &str| {
        sample(&metrics, "vlanguard_drop_events_total", &[&format!("outcome=\"{outcome}\"")])
    };
    eprintln!(
        "flood: inventory {hosts} hosts (capacity {CAPACITY}), {evicted} evicted, {dropped} \
         sightings dropped; drop events sent {} lost {} delivered {}; identity reports sent {} \
         suppressed {} lost {}; daemon {}",
        events("sent"),
        events("lost"),
        events("delivered"),
        reports("sent"),
        reports("suppressed"),
        reports("lost"),
        rss(&lab),
    );
    assert!(hosts <= CAPACITY, "{hosts} hosts");
    assert!(hosts >= CAPACITY / 2, "the flood's hosts were not inventoried: {hosts}");
    assert!(evicted > 0.0, "nothing was evicted");
    assert!(reports("suppressed") > 0.0, "the program's report limit never acted");
    // And the daemon still works.
    assert!(lab.cli(&["status"]).status.success());
}

/// The MAC the rogue's gateway (the router's VLAN 110 interface) answers
/// ARP with: its ping is dropped, its ARP is not.
fn gateway_mac(lab: &Lab) -> [u8; 6] {
    assert_eq!(lab.ping("rogue", NURSE, 1), 0);
    let out = sh(Command::new("ip").args(["-n", &lab.ns("rogue"), "neigh", "show", "10.110.0.1"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = text.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).expect("lladdr");
    let mut bytes = [0u8; 6];
    for (b, part) in bytes.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex");
    }
    bytes
}

/// The daemon's resident memory, as /proc says.
fn rss(lab: &Lab) -> String {
    let pid = lab.daemon_pid().expect("daemon running");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS")).map(|l| l.replace('\t', " ")))
        .unwrap_or_default()
}
