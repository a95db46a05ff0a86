//! Identity reports with real frames: the program reports DHCP client
//! messages and ARP of hosts on protected VLANs, and the inventory shows
//! what they say (host name, vendor class, requested options, MUD URL, the
//! address a known device uses); a host adopted with the MUD file of the
//! URL it announced passes what the file allows. Devices declared by MAC
//! alone get their addresses learned, and a second claim is refused.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use vlanguard_tests::{
    lab::{Lab, NURSE, PUMP, ROGUE, sh},
    privileged,
};

/// Baxter International's MA-L assignment 58:46:E1, as the IEEE lists it.
const PUMP_MAC: &str = "58:46:e1:00:07:42";
/// The MUD URL it announces; its maker's file (in the daemon's --mud-dir)
/// allows echo requests to the nurse stations.
const MUD_URL: &str = "https://mud.example.com/baxter/sigma-spectrum.json";

/// A DHCPREQUEST (RFC 2131) from `mac` asking for `requested`, with host
/// name (option 12), vendor class (60), parameter request list (55) and
/// MUD URL (161, RFC 8520 §10).
fn dhcp_request(mac: [u8; 6], requested: Ipv4Addr) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&[99, 130, 83, 99]);
    let mut option = |code: u8, value: &[u8]| {
        m.push(code);
        m.push(value.len() as u8);
        m.extend_from_slice(value);
    };
    option(53, &[3]);
    option(50, &requested.octets());
    option(12, b"infusion-07");
    option(60, b"Baxter Sigma Spectrum 8.0");
    option(55, &[1, 3, 6, 15, 42]);
    option(161, MUD_URL.as_bytes());
    m.push(255);
    m
}

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex");
    }
    mac
}

/// Sends `payload` from `role`'s eth0 as a DHCP client does: from port 68
/// to the limited broadcast address, port 67.
fn send_dhcp(lab: &Lab, role: &str, payload: Vec<u8>) {
    lab.in_ns(role, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).expect("port 68");
        s.set_broadcast(true).expect("SO_BROADCAST");
        let dev = b"eth0\0";
        // SAFETY: setsockopt on a socket we own, with a NUL-terminated name.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_BINDTODEVICE: {}", std::io::Error::last_os_error());
        s.send_to(&payload, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)).expect("send");
    })
    .join()
    .expect("sender");
}

#[test]
fn dhcp_client_messages_and_arp_are_inventoried() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.set_mac("rogue", PUMP_MAC);
    std::fs::create_dir_all(lab.mud_dir()).expect("mud dir");
    let mud_file = lab.mud_dir().join("sigma-spectrum.json");
    std::fs::write(&mud_file, vlanguard_tests::policies::echo_mud_file(MUD_URL)).expect("MUD file");
    lab.start_daemon();

    send_dhcp(&lab, "rogue", dhcp_request(parse_mac(PUMP_MAC), ROGUE.parse().expect("address")));
    let h = lab.wait_for_host(&[], PUMP_MAC, |h| h["dhcp"].is_object());
    let dhcp = &h["dhcp"];
    assert_eq!(dhcp["hostname"].as_str(), Some("infusion-07"), "{h}");
    assert_eq!(dhcp["vendor_class"].as_str(), Some("Baxter Sigma Spectrum 8.0"), "{h}");
    assert_eq!(dhcp["mud_url"].as_str(), Some(MUD_URL), "{h}");
    let parameters: Vec<u64> = dhcp["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p.as_u64())
        .collect();
    assert_eq!(parameters, [1, 3, 6, 15, 42], "{h}");
    assert_eq!((h["vlan"].as_u64(), h["device"].as_str()), (Some(110), None), "{h}");
    assert_eq!(h["interface"].as_str(), Some("trunk0"), "{h}");
    let addrs: Vec<&str> =
        h["addresses"].as_array().expect("addresses").iter().filter_map(|a| a.as_str()).collect();
    assert!(addrs.contains(&ROGUE), "{h}");
    if std::path::Path::new("/usr/share/ieee-data/oui.csv").exists() {
        assert!(h["vendor"].as_str().is_some_and(|v| v.contains("Baxter")), "{h}");
    }
    // The MUD URL it announced has a file here: adopting with it makes the
    // host a device with the maker's rules, and its echo requests pass.
    assert_eq!(dhcp["mud_file"].as_str(), Some(mud_file.to_str().expect("path")), "{h}");
    assert_eq!(lab.ping("rogue", NURSE, 2), 0, "unknown: dropped");
    let out = lab.cli(&["inventory", "adopt", PUMP_MAC, "--name", "infusion-07", "--mud"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lab.ping("rogue", NURSE, 2), 2, "the MUD file's echo requests pass");

    // The pump, a declared device, answers ARP for its address before it
    // answers an allowed ping: seen by that, under its name.
    assert_eq!(lab.ping("nurse", PUMP, 2), 2);
    // (Its IPv6 neighbour discovery from a link-local address may list it
    // first, without an address of its VLAN's subnets.)
    let h = lab.wait_for_host(&[], "02:00:00:00:00:07", |h| {
        h["addresses"].as_array().is_some_and(|a| a.iter().any(|a| a == PUMP))
    });
    assert_eq!(h["device"].as_str(), Some("pump"), "{h}");

    // The program counted what it reported.
    let metrics = lab.scrape();
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("vlanguard_identity_reports_total{outcome=\"sent\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(sent.is_some_and(|n| n >= 2), "{metrics}");
}

/// The learning device: a Baxter MAC, declared without an address.
const LEARNER_MAC: &str = "58:46:e1:00:07:43";
const LEARNER_DEVICE: &str = r#"
[[device]]
name = "learner"
vlan = 110
mac = "58:46:e1:00:07:43"
allow_out = [ { to = "nurses", proto = "icmp", icmp_type = 8 } ]
"#;

/// `device list --json`'s learned addresses of `name`.
fn learned(lab: &Lab, name: &str) -> Vec<String> {
    let out = lab.cli(&["device", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let devices = data["devices"].as_array().expect("devices");
    let d = devices.iter().find(|d| d["name"] == name).expect("the device is listed");
    d["learned"]
        .as_array()
        .expect("learned")
        .iter()
        .filter_map(|a| a.as_str())
        .map(String::from)
        .collect()
}

fn wait_learned(lab: &Lab, name: &str, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !learned(lab, name).iter().any(|a| a == addr) {
        assert!(Instant::now() < deadline, "{addr} never learned: {:?}", learned(lab, name));
        thread::sleep(Duration::from_millis(50));
    }
}

fn ip_in(lab: &Lab, role: &str, args: &[&str]) {
    let ns = lab.ns(role);
    let mut all = vec!["-n", ns.as_str()];
    all.extend(args);
    sh(Command::new("ip").args(&all));
}

#[test]
fn a_device_declared_by_mac_learns_its_addresses_and_a_second_claim_is_refused() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.set_mac("rogue", LEARNER_MAC);
    std::fs::write(&lab.policy_file, vlanguard_tests::lab::policy("") + LEARNER_DEVICE)
        .expect("policy");
    lab.start_daemon();
    assert!(learned(&lab, "learner").is_empty());

    // Its first exchange (ARP for the gateway, or the ping itself, dropped
    // as `learning`) binds its address; its allowed pings then pass.
    let first = lab.ping("rogue", NURSE, 3);
    wait_learned(&lab, "learner", ROGUE);
    assert!(first >= 2, "{first} of 3 pings passed while learning");
    assert_eq!(lab.ping("rogue", NURSE, 2), 2);

    // A second address, its neighbour already resolved: the first frame is
    // held back as `learning` and the address bound within milliseconds.
    ip_in(&lab, "rogue", &["addr", "add", "10.110.0.98/24", "dev", "eth0"]);
    let before =
        vlanguard_tests::sample(&lab.scrape(), "vlanguard_frames_total", &["reason=\"learning\""]);
    assert!(lab.ping_from("rogue", Some("10.110.0.98"), NURSE, 3) >= 2);
    wait_learned(&lab, "learner", "10.110.0.98");
    let after =
        vlanguard_tests::sample(&lab.scrape(), "vlanguard_frames_total", &["reason=\"learning\""]);
    assert!(after > before, "no frame was dropped as learning ({before} -> {after})");
    let log = lab.daemon_log();
    let took =
        log.lines().filter(|l| l.contains("learned 10.110.0.98 for device learner")).find_map(
            |l| l.split(" ms after its frame").next()?.rsplit(' ').next()?.parse::<u64>().ok(),
        );
    eprintln!("learning took {took:?} ms from the frame to the binding");
    assert!(took.is_some(), "{log}");

    // The pump's MAC claims the learned address: dropped (spoofed-mac),
    // reported as a conflict, and the binding stays the learner's.
    ip_in(&lab, "pump", &["addr", "add", "10.110.0.99/24", "dev", "eth0"]);
    assert_eq!(lab.ping_from("pump", Some("10.110.0.99"), NURSE, 2), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let conflict = loop {
        let out = lab.cli(&["events", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("\"address-conflict\"")) {
            break serde_json::from_str::<serde_json::Value>(line).expect("event JSON");
        }
        assert!(Instant::now() < deadline, "no address-conflict event: {text}");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(conflict["src"].as_str(), Some(ROGUE), "{conflict}");
    assert_eq!(conflict["src_mac"].as_str(), Some("02:00:00:00:00:07"), "{conflict}");
    assert_eq!(conflict["device"].as_str(), Some("learner"), "{conflict}");
    assert!(
        vlanguard_tests::sample(&lab.scrape(), "vlanguard_address_conflicts_total", &[]) >= 1.0
    );
    assert!(learned(&lab, "learner").iter().any(|a| a == ROGUE));

    // A restart keeps the bindings, and the learner's traffic passes at once.
    lab.stop_daemon(libc::SIGTERM);
    lab.start_daemon();
    let kept = learned(&lab, "learner");
    assert!(kept.iter().any(|a| a == ROGUE) && kept.iter().any(|a| a == "10.110.0.98"), "{kept:?}");
    let status = lab.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let in_status = status["learned"]["learner"].as_array().expect("learned in status");
    assert!(in_status.iter().any(|a| a == ROGUE), "{status}");
    assert_eq!(lab.ping("rogue", NURSE, 2), 2);
}
