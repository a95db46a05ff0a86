//! What each reply carries in `Reply::data`, typed. The daemon builds these
//! and the CLI reads them back, so neither side spells a field name twice.
//!
//! The JSON is the protocol: `--json` prints it and operators' scripts read
//! it, so names and shapes are fixed (`tests/tests/cli.rs` and friends read
//! them). `Reply::data` stays a `serde_json::Value`, so objects' keys come
//! out sorted whatever the field order here.
//!
//! A diff's changes and blocklist entries are the types the daemon works
//! with (`diff::Change`, `actions::Described`). The metrics samples are not
//! (their names are `&'static str`, so a scrape of many devices allocates
//! none): `DeviceCounters` and `FrameCounters` are their owned twins, and a
//! test checks that twin and original serialise alike.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::{datapath::actions::Described as Entry, diff::Change};
use crate::{
    diff,
    edit::{Direction, RuleSpec},
    events::Event,
    metrics,
};

/// `status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pin_dir: PathBuf,
    pub policy_file: PathBuf,
    pub revision: u64,
    /// RFC 3339, seconds.
    pub applied_at: String,
    /// The XDP attach mode asked for (`skb`, `drv`, ...).
    pub mode: String,
    pub interfaces: Vec<Interface>,
    /// Devices in the policy.
    pub devices: usize,
    /// The daemon's effective capabilities among those it uses.
    pub capabilities: Vec<String>,
    /// `None` when the program's tag cannot be read.
    pub program_tag: Option<String>,
    /// DNS names in the rules and the addresses they resolved to.
    pub names: BTreeMap<String, Vec<IpAddr>>,
    pub dns_refresh_secs: u64,
    pub maps: MapUse,
    #[serde(default)]
    pub inventory: InventorySummary,
    /// Addresses bound to devices declared by MAC alone, by device.
    #[serde(default)]
    pub learned: BTreeMap<String, Vec<String>>,
    /// Fleet mode: the site followed and how it stands (absent otherwise).
    #[serde(default)]
    pub fleet: Option<FleetStatus>,
}

/// A fleet router's view of its site, in `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FleetStatus {
    pub site: String,
    pub router: String,
    pub endpoints: String,
    /// The fleet version in force (None: still the local policy).
    pub applied_version: Option<u64>,
    pub applied_at: Option<String>,
    /// Key ids of the approvals of the version in force.
    pub approvers: Vec<String>,
    /// The newest version seen in etcd.
    pub newest_version: Option<u64>,
    /// How many versions the newest seen is ahead of the one in force.
    #[serde(default)]
    pub behind: u64,
    pub connected: bool,
    pub last_contact_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When the metadata in force expires unless refreshed.
    pub fresh_until: Option<String>,
    /// Versions rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// The inventory in `status` (and `top`), as counted after its last write.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InventorySummary {
    pub hosts: u64,
    /// Hosts that are no declared device.
    pub unknown: u64,
    /// The unknown hosts seen last, the latest first (a few).
    pub recent_unknown: Vec<crate::inventory::view::Entry>,
}

/// One `--iface`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    /// The filter is on the interface of that name (or on the device that
    /// had it, renamed since).
    pub attached: bool,
    /// `xdp` or `tc`; `None` when nothing is attached.
    pub hook: Option<String>,
    /// How the filter sees VLAN tags (`TagPath::name`); `None` as `hook`.
    pub tags: Option<String>,
    /// The device's name now, when it was renamed (and is still filtered).
    #[serde(default)]
    pub renamed_to: Option<String>,
    /// Since when it has been without the filter (RFC 3339), and why.
    #[serde(default)]
    pub unfiltered_since: Option<String>,
    #[serde(default)]
    pub unfiltered_reason: Option<String>,
    /// Times it lost the filter (deleted, re-created) since the daemon
    /// started, and the time without it in all, the current gap included.
    #[serde(default)]
    pub gaps: u64,
    #[serde(default)]
    pub unfiltered_seconds: f64,
}

/// Entries in use in the maps a policy fills.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapUse {
    pub device_addresses: usize,
    pub protected_networks: usize,
    pub rules: usize,
    pub peer_networks: usize,
}

/// `stats`: every row, zeros included (the text leaves zeros out).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub devices: Vec<DeviceCounters>,
    pub global: Vec<FrameCounters>,
    /// With a device asked for: its recent drop events by reason (a
    /// sample, events are rate-limited); else empty.
    pub recent_drop_reasons: BTreeMap<String, u64>,
}

/// `metrics::DeviceSample`, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    pub device: String,
    pub vlan: u16,
    pub direction: String,
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

impl From<&metrics::DeviceSample> for DeviceCounters {
    fn from(s: &metrics::DeviceSample) -> DeviceCounters {
        DeviceCounters {
            device: s.device.clone(),
            vlan: s.vlan,
            direction: s.direction.to_string(),
            verdict: s.verdict.to_string(),
            packets: s.packets,
            bytes: s.bytes,
        }
    }
}

/// `metrics::FrameSample`, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameCounters {
    pub verdict: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

impl From<&metrics::FrameSample> for FrameCounters {
    fn from(s: &metrics::FrameSample) -> FrameCounters {
        FrameCounters {
            verdict: s.verdict.to_string(),
            reason: s.reason.to_string(),
            packets: s.packets,
            bytes: s.bytes,
        }
    }
}

/// `policy show`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyText {
    pub file: PathBuf,
    pub revision: u64,
    pub text: String,
}

/// `policy diff`: what applying would change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Changes {
    pub changes: Vec<Change>,
}

/// Anything that applied a policy: `policy apply`, `policy merge`, `mud
/// import`, `device add/remove`, `allow`, `revoke`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub revision: u64,
    pub changes: Vec<Change>,
}

/// The changes of a diff, for a reply.
pub fn changes(list: &[diff::Change]) -> Vec<Change> {
    list.to_vec()
}

/// `device list`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub vlan: u16,
    pub ip: Vec<String>,
    /// `aa:bb:..`, or `None` when the device is not bound to a MAC.
    pub mac: Option<String>,
    /// For a device declared by MAC alone: the addresses learned for it
    /// (`None` for others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Vec<String>>,
    /// Rule counts.
    pub allow_in: usize,
    pub allow_out: usize,
}

/// `events` (without `--follow`, and the first line with it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Events {
    pub events: Vec<Event>,
}

/// `policy suggest`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Suggestions {
    pub suggestions: Vec<Suggested>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Suggested {
    pub device: String,
    pub direction: Direction,
    pub rule: RuleSpec,
    /// Observed frames the rule would have let through.
    pub frames: u64,
}

/// `inventory`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inventory {
    pub hosts: Vec<crate::inventory::view::Entry>,
}

/// `block`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Blocked {
    pub blocked: Entry,
}

/// `unblock`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unblocked {
    pub unblocked: ipnet::IpNet,
}

/// `blocks`: what is in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Blocks {
    pub blocks: Vec<Entry>,
    pub quarantined: Vec<Entry>,
}

/// `quarantine`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quarantined {
    pub quarantined: Entry,
}

/// `release`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Released {
    pub released: String,
}

/// `detach`: the interfaces the filter was removed from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Detached {
    pub detached: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diff's changes and a blocklist entry read back as written; a rule
    /// change's direction is the policy's key, as it always read.
    #[test]
    fn changes_and_entries_round_trip() {
        let changes = vec![
            Change::DeviceAdded { device: "a".into() },
            Change::DeviceRemoved { device: "a".into() },
            Change::DeviceChanged { device: "a".into(), what: "vlan 1 -> 2".into() },
            Change::RuleAdded { device: "a".into(), direction: Direction::In, rule: "tcp".into() },
            Change::RuleRemoved {
                device: "a".into(),
                direction: Direction::Out,
                rule: "udp".into(),
            },
            Change::Setting { setting: "monitor".into(), from: "x".into(), to: "y".into() },
        ];
        let json = serde_json::to_value(&changes).unwrap();
        assert_eq!(json[3]["direction"], "allow_in");
        assert_eq!(json[4]["direction"], "allow_out");
        assert_eq!(json[3]["change"], "rule-added");
        assert_eq!(serde_json::from_value::<Vec<Change>>(json).unwrap(), changes);
        let e = Entry {
            what: "10.0.0.1/32".into(),
            reason: "test".into(),
            since: "2026-01-01T00:00:00Z".into(),
            expires: "never".into(),
            remaining_secs: None,
        };
        assert_eq!(serde_json::from_value::<Entry>(serde_json::to_value(&e).unwrap()).unwrap(), e);
    }

    /// The metrics samples' owned twins serialise exactly as the samples.
    #[test]
    fn twins_serialise_alike() {
        let d = metrics::DeviceSample {
            device: "pump".into(),
            vlan: 110,
            direction: "in",
            verdict: "drop",
            packets: 3,
            bytes: 180,
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::to_value(DeviceCounters::from(&d)).unwrap()
        );
        let f =
            metrics::FrameSample { verdict: "drop", reason: "not-allowed", packets: 1, bytes: 2 };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::to_value(FrameCounters::from(&f)).unwrap()
        );
    }
}
