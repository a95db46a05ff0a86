//! What each reply carries in `Reply::data`, typed. The daemon builds these
//! and the CLI reads them back, so neither side spells a field name twice.
//!
//! The JSON is the protocol: `--json` prints it and operators' scripts read
//! it, so names and shapes are fixed (`tests/tests/cli.rs` and friends read
//! them). `Reply::data` stays a `serde_json::Value`, so objects' keys come
//! out sorted whatever the field order here.
//!
//! Types the data is made from that are not `Deserialize` themselves (their
//! names are `&'static str`: `diff::Change`, `metrics::DeviceSample`,
//! `actions::Described`) have an owned twin here, converted with `From`;
//! a test checks that twin and original serialise alike.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    datapath::actions,
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
}

/// One `--iface`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub attached: bool,
    /// `xdp` or `tc`; `None` when nothing is attached.
    pub hook: Option<String>,
    /// How the filter sees VLAN tags (`TagPath::name`); `None` as `hook`.
    pub tags: Option<String>,
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

/// `diff::Change`, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    DeviceAdded { device: String },
    DeviceRemoved { device: String },
    DeviceChanged { device: String, what: String },
    RuleAdded { device: String, direction: String, rule: String },
    RuleRemoved { device: String, direction: String, rule: String },
    Setting { setting: String, from: String, to: String },
}

impl From<&diff::Change> for Change {
    fn from(c: &diff::Change) -> Change {
        use diff::Change as D;
        match c.clone() {
            D::DeviceAdded { device } => Change::DeviceAdded { device },
            D::DeviceRemoved { device } => Change::DeviceRemoved { device },
            D::DeviceChanged { device, what } => Change::DeviceChanged { device, what },
            D::RuleAdded { device, direction, rule } => {
                Change::RuleAdded { device, direction: direction.into(), rule }
            }
            D::RuleRemoved { device, direction, rule } => {
                Change::RuleRemoved { device, direction: direction.into(), rule }
            }
            D::Setting { setting, from, to } => {
                Change::Setting { setting: setting.into(), from, to }
            }
        }
    }
}

/// The changes of a diff, for a reply.
pub fn changes(list: &[diff::Change]) -> Vec<Change> {
    list.iter().map(Change::from).collect()
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

/// A blocklist entry or a quarantine: `actions::Described`, owned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The address or network, or the device.
    pub what: String,
    pub reason: String,
    pub since: String,
    /// RFC 3339, or "never".
    pub expires: String,
    /// Seconds left, `None` for never.
    pub remaining_secs: Option<u64>,
}

impl From<actions::Described> for Entry {
    fn from(d: actions::Described) -> Entry {
        let actions::Described { what, reason, since, expires, remaining_secs } = d;
        Entry { what, reason, since, expires, remaining_secs }
    }
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

    /// The owned twins serialise exactly as the types they stand for.
    #[test]
    fn twins_serialise_alike() {
        let changes = [
            diff::Change::DeviceAdded { device: "a".into() },
            diff::Change::DeviceRemoved { device: "a".into() },
            diff::Change::DeviceChanged { device: "a".into(), what: "vlan 1 -> 2".into() },
            diff::Change::RuleAdded { device: "a".into(), direction: "in", rule: "tcp".into() },
            diff::Change::RuleRemoved { device: "a".into(), direction: "out", rule: "udp".into() },
            diff::Change::Setting { setting: "mode", from: "x".into(), to: "y".into() },
        ];
        for c in &changes {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::to_value(Change::from(c)).unwrap()
            );
        }
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
        let e = actions::Described {
            what: "10.0.0.1/32".into(),
            reason: "test".into(),
            since: "2026-01-01T00:00:00Z".into(),
            expires: "never".into(),
            remaining_secs: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::to_value(Entry::from(e.clone())).unwrap()
        );
    }
}
