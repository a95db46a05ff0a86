//! Tables that are full, through the real daemon and CLI: a clear refusal,
//! nothing half-done, the policy in force and its traffic untouched.
//!
//! - the blocklist at its capacity (filled behind the daemon's back, on the
//!   pinned map, then one more `vlanguard block`);
//! - a policy with more new devices than the counters' free slots
//!   (`--device-capacity`);
//! - a policy whose peer sets need more networks than `PEER_NETS` holds.
//!
//! Flows have a defined eviction instead of a refusal: a full bucket gives
//! the entry of the flow closest to expiring to the new one, counted as
//! `evicted` (`datapath.rs`, `a_full_flow_bucket_gives_way_...`).

use std::{fs, process::Output};

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use filter_common::{BlockEntry, MAX_BLOCKS, MAX_PEER_NETS, PeerData, maps};
use vlanguard_tests::{
    lab::{self, Lab, PUMP},
    privileged,
};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn revision(lab: &Lab) -> serde_json::Value {
    json(&lab.cli(&["status", "--json"]))["revision"].clone()
}

/// Applies `policy` through the CLI and checks it is refused with `says`,
/// leaving the file, the revision and the pump's traffic as they were.
fn refused_apply(lab: &Lab, policy: &str, says: &str) {
    let before_file = fs::read_to_string(&lab.policy_file).expect("policy file");
    let before_revision = revision(lab);
    let candidate = lab.dir.join("too-big.toml");
    fs::write(&candidate, policy).expect("write candidate");
    let out = lab.cli(&["policy", "apply", &candidate.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1), "refused: {}", text(&out));
    assert!(text(&out).contains(says), "{}", text(&out));
    assert_eq!(fs::read_to_string(&lab.policy_file).expect("policy file"), before_file);
    assert_eq!(revision(lab), before_revision, "nothing applied");
    assert_eq!(
        lab.udp("nurse", "pump", PUMP, 5001),
        20,
        "the policy in force still lets nurses in"
    );
    assert_eq!(lab.udp("core", "pump", PUMP, 5001), 0, "and still keeps servers out");
}

#[test]
fn a_full_blocklist_refuses_the_next_block_and_keeps_every_entry() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    // All but one entry, straight into the pinned map: IPv6 hosts no lab
    // traffic comes from.
    let path = lab.pin_dir.join("maps").join(maps::BLOCKS);
    let mut trie: LpmTrie<MapData, PeerData, BlockEntry> =
        LpmTrie::try_from(aya::maps::Map::LpmTrie(MapData::from_pin(&path).expect("pinned")))
            .expect("BLOCKS is an LPM trie");
    let entry = BlockEntry { expires_ns: 0, created_unix: 0, reason: [0; 48] };
    for i in 0..MAX_BLOCKS - 1 {
        let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, i as u16);
        trie.insert(&Key::new(128, addr.octets()), entry, 0).expect("room for it");
    }

    let out = lab.cli(&["block", "2001:db8:eeee::1", "--reason", "the last place"]);
    assert!(out.status.success(), "the last entry fits: {}", text(&out));
    let out = lab.cli(&["block", lab::NURSE, "--reason", "one too many"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("the blocklist is full ({MAX_BLOCKS} entries)")),
        "{}",
        text(&out)
    );

    let blocks = json(&lab.cli(&["blocks", "--json"]));
    let listed = blocks["blocks"].as_array().expect("blocks");
    assert_eq!(listed.len(), MAX_BLOCKS as usize, "every entry kept");
    assert!(listed.iter().all(|b| b["what"] != lab::NURSE), "nothing half-added");
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5001), 20, "the refused block changed nothing");
    // Room again after an unblock.
    assert!(lab.cli(&["unblock", "2001:db8:eeee::1"]).status.success());
    assert!(lab.cli(&["block", lab::NURSE, "--reason", "now it fits"]).status.success());
    assert_eq!(lab.udp("nurse", "pump", PUMP, 5001), 0, "blocked");
}

#[test]
fn a_policy_beyond_the_device_capacity_is_refused_and_the_running_one_stays() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    // The lab's two devices fill counters sized for two.
    lab.start_daemon_with(&["--device-capacity", "2"]);
    let third = format!(
        "{}\n[[device]]\nname = \"monitor2\"\nvlan = 120\nip = [\"10.120.0.12\"]\n",
        lab::policy("")
    );
    refused_apply(&lab, &third, "1 new device(s), 0 free counter slot(s)");
}

#[test]
fn a_policy_whose_peer_sets_overflow_the_map_is_refused_and_the_running_one_stays() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    let nets: Vec<String> = (0..=MAX_PEER_NETS)
        .map(|i| format!("\"10.{}.{}.{}/32\"", 200 + (i >> 16), (i >> 8) & 0xff, i & 0xff))
        .collect();
    let policy = lab::policy("\n  { from = \"huge\", proto = \"udp\", port = 9 },")
        .replace("[peers]\n", &format!("[peers]\nhuge = [{}]\n", nets.join(", ")));
    refused_apply(
        &lab,
        &policy,
        &format!("need {} of them; the maps hold {MAX_PEER_NETS}", MAX_PEER_NETS + 1),
    );
}
