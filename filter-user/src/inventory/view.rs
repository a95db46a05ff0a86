//! The inventory as operators see it (`vlanguard inventory`): each host
//! with the declared device it is, if any, the local MUD file its DHCP
//! client announced, and what `inventory adopt` writes for it (with
//! `--mud`: the profile imported from that file).

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::store::Host;
use crate::{
    Resolved,
    edit::{Direction, NewDevice, RuleSpec},
    mud, time,
};

/// Where operators put MUD files for `inventory adopt --mud` unless the
/// daemon is told otherwise (`--mud-dir`); a file is found by the
/// `mud-url` it holds.
pub const MUD_DIR: &str = "/etc/vlanguard/mud";

/// How `inventory adopt --mud` imports the host's MUD file: as `mud
/// import` takes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MudOptions {
    /// `ABSTRACTION=SET` each, as `--abstraction`.
    #[serde(default)]
    pub abstractions: Vec<String>,
    #[serde(default)]
    pub accept_stricter: bool,
}

/// The profile `inventory adopt --mud` writes: named by the MUD URL (every
/// host announcing it shares the profile), with the file's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MudImport {
    pub url: String,
    pub file: PathBuf,
    pub rules: Vec<(Direction, RuleSpec)>,
}

/// One host, for `inventory` (its JSON is the `--json` output).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub mac: String,
    pub vendor: Option<String>,
    pub vlan: u16,
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// The declared device this host is (same VLAN, and its MAC or one of
    /// its addresses), `None` for an unknown host.
    pub device: Option<String>,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    pub frames: u64,
    pub dhcp: Option<Dhcp>,
}

/// What the host's DHCP client said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dhcp {
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    pub mud_url: Option<String>,
    /// The local MUD file for `mud_url`, when `MUD_DIR` holds one.
    pub mud_file: Option<PathBuf>,
    pub parameters: Vec<u16>,
}

/// Which hosts to show.
#[derive(Clone, Copy, Debug, Default)]
pub struct Select {
    /// Only hosts that are no declared device.
    pub unknown: bool,
    pub vlan: Option<u16>,
}

/// The hosts `select` asks for, each matched to its device and MUD file.
pub fn entries(
    hosts: &[Host],
    policy: &Resolved,
    select: Select,
    mud_files: &HashMap<String, PathBuf>,
) -> Vec<Entry> {
    hosts
        .iter()
        .filter(|h| select.vlan.is_none_or(|v| v == h.vlan))
        .map(|h| Entry {
            mac: h.mac.clone(),
            vendor: h.vendor.clone(),
            vlan: h.vlan,
            interface: h.interface.clone(),
            addresses: h.addresses.clone(),
            device: device_of(h, policy),
            first_seen: time::date(at(h.first_seen)),
            last_seen: time::date(at(h.last_seen)),
            frames: h.frames,
            dhcp: h.dhcp.as_ref().map(|d| Dhcp {
                hostname: d.hostname.clone(),
                vendor_class: d.vendor_class.clone(),
                mud_file: d.mud_url.as_ref().and_then(|u| mud_files.get(u).cloned()),
                mud_url: d.mud_url.clone(),
                parameters: d.parameters.clone(),
            }),
        })
        .filter(|e| !select.unknown || e.device.is_none())
        .collect()
}

/// The declared device on the host's VLAN with the host's MAC, else with
/// one of its addresses.
fn device_of(h: &Host, policy: &Resolved) -> Option<String> {
    let on_vlan = || policy.devices.iter().filter(|d| d.vlan == h.vlan);
    on_vlan()
        .find(|d| d.mac.is_some_and(|m| crate::addr::mac_text(m) == h.mac))
        .or_else(|| on_vlan().find(|d| d.addrs.iter().any(|a| h.addresses.contains(a))))
        .map(|d| d.name.clone())
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

/// The MUD files in `dir`, by the `mud-url` each holds; files that are not
/// MUD files are left out.
pub fn mud_files(dir: &Path) -> HashMap<String, PathBuf> {
    let Ok(list) = std::fs::read_dir(dir) else { return HashMap::new() };
    list.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            Some((mud::parse(&text).ok()?.url, p))
        })
        .collect()
}

/// The `[[device]]` that `inventory adopt` writes for `host`: bound to its
/// MAC, with the addresses it uses that lie in its VLAN's subnets (not
/// link-local ones, which every host has).
pub fn adoption(host: &Entry, policy: &Resolved, name: &str, profile: Option<&str>) -> NewDevice {
    let subnets: Vec<_> =
        policy.vlans.iter().filter(|v| v.id == host.vlan).flat_map(|v| &v.subnets).collect();
    NewDevice {
        name: name.to_string(),
        vlan: host.vlan,
        ip: host
            .addresses
            .iter()
            .filter(|a| subnets.iter().any(|n| n.contains(*a)))
            .map(ToString::to_string)
            .collect(),
        mac: Some(host.mac.clone()),
        profile: profile.map(str::to_string),
    }
}

/// The local MUD file (in `dir`) for the MUD URL `host` announced, or why
/// there is none, saying what to do instead.
pub fn mud_source<'a>(host: &'a Entry, dir: &Path) -> Result<(&'a str, &'a Path), String> {
    let dhcp = host.dhcp.as_ref();
    let Some(url) = dhcp.and_then(|d| d.mud_url.as_deref()) else {
        return Err(format!(
            "{} announced no MUD URL (DHCP option 161, DHCPv6 option 112); adopt it with \
             --profile",
            host.mac
        ));
    };
    let file = dhcp.and_then(|d| d.mud_file.as_deref()).ok_or_else(|| {
        format!(
            "{} announced the MUD URL {url}, and no MUD file in {} holds that mud-url; put \
             the maker's file there (`vlanguard mud show FILE` checks it) or adopt it with \
             --profile",
            host.mac,
            dir.display()
        )
    })?;
    Ok((url, file))
}

/// What `inventory adopt --mud` imports for `host`: its MUD file read,
/// checked and converted as `vlanguard mud import` does (the file's own
/// errors, unmapped abstractions, entries enforced more strictly than it
/// says and a file that allows nothing are refused).
pub fn mud_import(host: &Entry, dir: &Path, options: &MudOptions) -> anyhow::Result<MudImport> {
    let (url, file) = mud_source(host, dir).map_err(anyhow::Error::msg)?;
    let data = mud::read_file(file, None)?;
    let (parsed, conversion) = mud::check_file(file, data, &options.abstractions)?;
    // The directory was read before this file: it may have changed since.
    if parsed.url != url {
        anyhow::bail!("{}: holds mud-url {}, not {url} any more", file.display(), parsed.url);
    }
    let rules = conversion.into_import(file, options.accept_stricter)?;
    Ok(MudImport { url: url.to_string(), file: file.to_path_buf(), rules })
}

/// The operator's table.
pub fn text(entries: &[Entry]) -> String {
    let mut out = format!(
        "{:<17}  {:<24}  {:>4}  {:<28}  {:<16}  {:<16}  {}\n",
        "MAC", "VENDOR", "VLAN", "ADDRESSES", "DEVICE", "DHCP HOST NAME", "LAST SEEN"
    );
    for e in entries {
        let addrs = e.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        out.push_str(&format!(
            "{:<17}  {:<24}  {:>4}  {:<28}  {:<16}  {:<16}  {}\n",
            e.mac,
            cut(e.vendor.as_deref().unwrap_or("-"), 24),
            e.vlan,
            if addrs.is_empty() { "-".to_string() } else { addrs },
            e.device.as_deref().unwrap_or("(unknown)"),
            cut(e.dhcp.as_ref().and_then(|d| d.hostname.as_deref()).unwrap_or("-"), 16),
            e.last_seen,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::store::HostDhcp;

    const POLICY: &str = r#"
[[vlan]]
id = 110
name = "pumps"
subnets = ["10.110.0.0/24", "2001:db8:110::/64"]

[[device]]
name = "pump-1"
vlan = 110
ip = ["10.110.0.10"]
mac = "00:1b:63:00:00:01"

[[device]]
name = "pump-2"
vlan = 110
ip = ["10.110.0.11"]
"#;

    fn host(last: u8, addrs: &[&str]) -> Host {
        Host {
            mac: format!("00:1b:63:00:00:{last:02x}"),
            vendor: Some("Apple Inc".into()),
            vlan: 110,
            interface: "trunk0".into(),
            addresses: addrs.iter().map(|a| a.parse().expect("address")).collect(),
            first_seen: 1_764_000_000,
            last_seen: 1_764_000_060,
            frames: 3,
            dhcp: None,
        }
    }

    fn policy() -> Resolved {
        crate::resolve_policy(POLICY).expect("policy")
    }

    #[test]
    fn hosts_are_matched_to_devices_by_mac_then_address() {
        let hosts = [
            host(1, &["10.110.0.99"]),
            host(2, &["10.110.0.11"]),
            host(3, &["10.110.0.50", "fe80::3"]),
        ];
        let all = entries(&hosts, &policy(), Select::default(), &HashMap::new());
        let devices: Vec<_> = all.iter().map(|e| e.device.as_deref()).collect();
        assert_eq!(devices, [Some("pump-1"), Some("pump-2"), None]);
        assert_eq!(all[0].last_seen, "2025-11-24T16:01:00Z");
        let unknown =
            entries(&hosts, &policy(), Select { unknown: true, vlan: Some(110) }, &HashMap::new());
        assert_eq!(unknown.len(), 1);
        assert!(
            entries(&hosts, &policy(), Select { unknown: false, vlan: Some(120) }, &HashMap::new())
                .is_empty()
        );
        let json = serde_json::to_value(&unknown[0]).expect("json");
        for field in
            ["mac", "vendor", "vlan", "addresses", "device", "first_seen", "last_seen", "dhcp"]
        {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(text(&unknown).contains("00:1b:63:00:00:03  Apple Inc"));
    }

    #[test]
    fn adopting_binds_the_mac_and_keeps_the_vlans_addresses() {
        let e = &entries(
            &[host(3, &["10.110.0.50", "fe80::3", "2001:db8:110::50"])],
            &policy(),
            Select::default(),
            &HashMap::new(),
        )[0];
        let d = adoption(e, &policy(), "pump-3", Some("infusion"));
        assert_eq!(d.ip, ["10.110.0.50", "2001:db8:110::50"]);
        assert_eq!(d.mac.as_deref(), Some("00:1b:63:00:00:03"));
        assert_eq!((d.vlan, d.profile.as_deref()), (110, Some("infusion")));
    }

    /// A MUD file of the filter-policy tests copied into a directory of
    /// this test's own.
    fn mud_dir(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vlanguard-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        dir
    }

    const PLUG: &str = include_str!("../../policy/tests/mud/generated-plug.json");
    const PLUG_URL: &str = "https://plug.example.net/plug-p1";
    const ALL: &str = include_str!("../../policy/tests/mud/all-constructs.json");
    const ALL_URL: &str = "https://pumps.example.com/p1";

    /// Host 5's entry, its DHCP client having announced `url`.
    fn announcing(url: Option<&str>, dir: &Path) -> Entry {
        let mut h = host(5, &["10.110.0.55"]);
        h.dhcp = url.map(|u| HostDhcp { mud_url: Some(u.into()), ..HostDhcp::default() });
        entries(&[h], &policy(), Select::default(), &mud_files(dir)).remove(0)
    }

    #[test]
    fn adopting_with_mud_imports_the_file_the_host_announced() {
        let dir = mud_dir("adopt-mud", &[("plug.json", PLUG)]);
        let import = mud_import(&announcing(Some(PLUG_URL), &dir), &dir, &MudOptions::default());
        let missing = mud_import(&announcing(Some(ALL_URL), &dir), &dir, &MudOptions::default());
        let silent = mud_import(&announcing(None, &dir), &dir, &MudOptions::default());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let import = import.expect("imported");
        assert_eq!((import.url.as_str(), import.file), (PLUG_URL, dir.join("plug.json")));
        assert_eq!(import.rules.len(), 4, "{:?}", import.rules);
        assert!(import.rules.iter().any(|(d, r)| *d == Direction::Out && r.peer == "pool.ntp.org"));
        let missing = missing.expect_err("no file").to_string();
        assert!(
            missing.contains(&format!("announced the MUD URL {ALL_URL}, and no MUD file in"))
                && missing.contains("--profile"),
            "{missing}"
        );
        let silent = silent.expect_err("no URL").to_string();
        assert!(silent.contains("00:1b:63:00:00:05 announced no MUD URL"), "{silent}");
    }

    #[test]
    fn adopting_with_mud_keeps_the_checks_of_mud_import() {
        let dir = mud_dir("adopt-mud-checks", &[("p1.json", ALL)]);
        let host = announcing(Some(ALL_URL), &dir);
        let unmapped = mud_import(&host, &dir, &MudOptions::default());
        let abstractions: Vec<String> = [
            "my-controller=central-station",
            "local-networks=nurse-stations",
            "same-manufacturer=vendor",
            "manufacturer:pumps.example.com=pump-vendor",
            "model:https://pumps.example.com/p1=p1",
            "controller:https://ctl.example.com/x=ctl",
        ]
        .map(String::from)
        .to_vec();
        let mapped = MudOptions { abstractions, accept_stricter: false };
        let stricter = mud_import(&host, &dir, &mapped);
        let accepted = mud_import(&host, &dir, &MudOptions { accept_stricter: true, ..mapped });
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let unmapped = unmapped.expect_err("abstractions unmapped").to_string();
        assert!(unmapped.contains("cannot be enforced as written"), "{unmapped}");
        let stricter = format!("{:#}", stricter.expect_err("stricter entries"));
        assert!(stricter.contains("--accept-stricter"), "{stricter}");
        assert_eq!(accepted.expect("accepted").rules.len(), 12);
    }

    #[test]
    fn a_mud_url_finds_the_local_file_that_holds_it() {
        let dir = std::env::temp_dir().join(format!("vlanguard-mud-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = "https://pumps.example.com/mud/infusion-7.json";
        let file = dir.join("infusion-7.json");
        std::fs::write(
            &file,
            format!(r#"{{"ietf-mud:mud": {{"mud-version": 1, "mud-url": "{url}"}}}}"#),
        )
        .expect("write");
        std::fs::write(dir.join("notes.json"), "not a MUD file").expect("write");
        let files = mud_files(&dir);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(files.len(), 1);
        let mut h = host(4, &[]);
        h.dhcp = Some(HostDhcp { mud_url: Some(url.into()), ..HostDhcp::default() });
        let e = &entries(&[h], &policy(), Select::default(), &files)[0];
        assert_eq!(e.dhcp.as_ref().and_then(|d| d.mud_file.as_deref()), Some(file.as_path()));
    }
}
