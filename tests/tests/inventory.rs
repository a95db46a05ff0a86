//! The passive inventory with real frames: an unknown host on a protected
//! VLAN, sending from a MAC of a real IEEE assignment, appears in
//! `vlanguard inventory --unknown --json` with its MAC, vendor, VLAN and
//! address, not as a device; declared devices are not unknown; the
//! inventory survives a daemon restart; `inventory adopt` makes the host a
//! device whose allowed traffic passes; `inventory adopt --mud` gives it
//! the profile of the MUD file for the URL its DHCP client announced.

use filter_policy::identity::dhcp::DhcpClient;
use filter_user::inventory::store::{Sighting, Store};
use vlanguard_tests::{
    lab::{Lab, NURSE, ROGUE},
    privileged,
};

/// Apple's MA-L assignment 00:1B:63, as the IEEE lists it.
const ROGUE_MAC: &str = "00:1b:63:84:45:e6";

#[test]
fn an_unknown_host_is_inventoried_with_its_mac_vendor_vlan_and_address() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.set_mac("rogue", ROGUE_MAC);
    lab.start_daemon();
    // Dropped as unknown-device: the rogue is in VLAN 110's subnet.
    assert_eq!(lab.ping("rogue", NURSE, 2), 0);
    let h = lab.wait_for_host(&["--unknown"], ROGUE_MAC, |_| true);
    assert_eq!((h["vlan"].as_u64(), h["device"].as_str()), (Some(110), None), "{h}");
    let addrs: Vec<&str> =
        h["addresses"].as_array().expect("addresses").iter().filter_map(|a| a.as_str()).collect();
    assert!(addrs.contains(&ROGUE), "{h}");
    assert_eq!(h["interface"].as_str(), Some("trunk0"), "{h}");
    for field in ["first_seen", "last_seen"] {
        assert!(h[field].as_str().is_some_and(|t| t.ends_with('Z')), "{field}: {h}");
    }
    // The vendor comes from Debian's ieee-data, which `cargo xtask test`
    // installs; without it the host is listed all the same.
    if std::path::Path::new("/usr/share/ieee-data/oui.csv").exists() {
        assert!(h["vendor"].as_str().is_some_and(|v| v.contains("Apple")), "{h}");
    }
    // The table names it too.
    let text =
        String::from_utf8_lossy(&lab.cli(&["inventory", "--vlan", "110"]).stdout).into_owned();
    assert!(text.contains(ROGUE_MAC) && text.contains("(unknown)"), "{text}");
    assert!(lab.inventory(&["--vlan", "120"]).iter().all(|h| h["mac"] != ROGUE_MAC));

    // A restart keeps what was seen.
    lab.stop_daemon(libc::SIGTERM);
    lab.start_daemon();
    let h = lab.inventory(&["--unknown"]).into_iter().find(|h| h["mac"] == ROGUE_MAC);
    assert!(h.is_some(), "the inventory after a restart: {:?}", lab.inventory(&[]));

    // Adopted with a profile that lets it ping the nurse stations.
    let profile = "\n[[profile]]\nname = \"pinger\"\nallow_out = [ { to = \"nurses\", proto = \"icmp\", icmp_type = 8 } ]\n";
    std::fs::write(&lab.policy_file, vlanguard_tests::lab::policy("") + profile).expect("policy");
    assert!(lab.cli(&["policy", "apply"]).status.success());
    let unknown = lab.cli(&["inventory", "adopt", "00:1b:63:00:00:99", "--name", "x"]);
    assert_eq!(unknown.status.code(), Some(1), "a MAC not in the inventory is refused");
    let out =
        lab.cli(&["inventory", "adopt", ROGUE_MAC, "--name", "rogue-1", "--profile", "pinger"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy = std::fs::read_to_string(&lab.policy_file).expect("policy");
    assert!(
        policy.contains("rogue-1") && policy.contains(ROGUE_MAC) && policy.contains(ROGUE),
        "{policy}"
    );
    assert_eq!(lab.ping("rogue", NURSE, 2), 2, "the adopted device's allowed traffic passes");
    let h = lab.inventory(&[]).into_iter().find(|h| h["mac"] == ROGUE_MAC).expect("listed");
    assert_eq!(h["device"].as_str(), Some("rogue-1"), "{h}");
    assert!(lab.inventory(&["--unknown"]).iter().all(|h| h["mac"] != ROGUE_MAC));
    let audit = std::fs::read_to_string(&lab.audit_log).expect("audit log");
    assert!(audit.contains("inventory-adopt"), "{audit}");
}

/// The MUD URL the rogue announced, and its maker's file: echo requests to
/// the nurse stations.
const MUD_URL: &str = "https://pumps.example.com/mud/pinger-1.json";

/// Hosts in the lab's inventory database before the daemon starts, as
/// the DHCP capture would record them: (MAC, address, MUD URL).
fn seed(lab: &Lab, hosts: &[(&str, &str, Option<&str>)]) {
    let mut store = Store::open(&lab.dir.join("inventory.db"), 1000).expect("inventory db");
    let batch: Vec<Sighting> = hosts
        .iter()
        .map(|(mac, address, url)| Sighting {
            mac: filter_user::policy::parse_mac(mac).expect("MAC"),
            vlan: 110,
            interface: "trunk0".into(),
            address: Some(address.parse().expect("address")),
            at: std::time::SystemTime::now(),
            frames: 1,
            vendor: None,
            dhcp: Some(DhcpClient {
                message: "request".into(),
                mud_url: url.map(String::from),
                ..DhcpClient::default()
            }),
        })
        .collect();
    store.record(&batch, &Default::default()).expect("seed");
}

#[test]
fn adopting_with_mud_imports_the_profile_of_the_announced_url() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.set_mac("rogue", ROGUE_MAC);
    let (silent, unfiled) = ("00:1b:63:00:00:51", "00:1b:63:00:00:52");
    seed(
        &lab,
        &[
            (ROGUE_MAC, ROGUE, Some(MUD_URL)),
            (silent, "10.110.0.51", None),
            (unfiled, "10.110.0.52", Some("https://other.example.com/x.json")),
        ],
    );
    std::fs::create_dir_all(lab.mud_dir()).expect("mud dir");
    let file = lab.mud_dir().join("pinger-1.json");
    std::fs::write(&file, vlanguard_tests::policies::echo_mud_file(MUD_URL)).expect("MUD file");
    lab.start_daemon();

    // The inventory names the file from the daemon's --mud-dir.
    let h = lab.wait_for_host(&["--unknown"], ROGUE_MAC, |_| true);
    assert_eq!(h["dhcp"]["mud_file"].as_str(), Some(file.to_str().expect("path")), "{h}");

    let refused = |mac: &str, want: &str| {
        let out = lab.cli(&["inventory", "adopt", mac, "--name", "x", "--mud"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    };
    refused(silent, "announced no MUD URL");
    refused(unfiled, "no MUD file in");
    let both = ["inventory", "adopt", ROGUE_MAC, "--name", "x", "--mud", "--profile", "p"];
    assert_eq!(lab.cli(&both).status.code(), Some(2), "--mud and --profile exclude each other");

    assert_eq!(lab.ping("rogue", NURSE, 2), 0, "unknown: dropped");
    let out = lab.cli(&["inventory", "adopt", ROGUE_MAC, "--name", "pinger-1", "--mud"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy = std::fs::read_to_string(&lab.policy_file).expect("policy");
    assert!(policy.contains(&format!("name = \"{MUD_URL}\"")), "the profile: {policy}");
    assert!(policy.contains(&format!("profile = \"{MUD_URL}\"")), "the device's: {policy}");
    assert_eq!(lab.ping("rogue", NURSE, 2), 2, "the MUD file's echo requests pass");
    let audit = std::fs::read_to_string(&lab.audit_log).expect("audit log");
    let adopted = |l: &&str| l.contains("inventory-adopt") && l.contains("\"ok\":true");
    let line = audit.lines().find(adopted).expect("audited");
    assert!(line.contains("pinger-1") && line.contains("\"mud\":{"), "{line}");
    assert!(audit.contains(&format!("\"result\":\"{silent} announced no MUD URL")), "{audit}");
}
