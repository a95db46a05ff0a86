//! What changes between two policies, in operator terms: devices added,
//! removed or changed (VLAN, addresses, MAC binding), rules added and
//! removed per device (after profiles are merged), settings.

use std::{collections::BTreeMap, fmt};

use filter_common::{Direction, ipproto};
use serde::{Deserialize, Serialize};

use crate::policy::{L4, Peer, Resolved, ResolvedDevice, Rule};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    DeviceAdded {
        device: String,
    },
    DeviceRemoved {
        device: String,
    },
    DeviceChanged {
        device: String,
        what: String,
    },
    RuleAdded {
        device: String,
        #[serde(with = "rules_key")]
        direction: Direction,
        rule: String,
    },
    RuleRemoved {
        device: String,
        #[serde(with = "rules_key")]
        direction: Direction,
        rule: String,
    },
    Setting {
        setting: String,
        from: String,
        to: String,
    },
}

/// A direction as the policy's key names it (`allow_in`, `allow_out`): how
/// a diff's rule changes have always read.
mod rules_key {
    use filter_common::Direction;
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.rules_key())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
        let key = String::deserialize(d)?;
        [Direction::In, Direction::Out]
            .into_iter()
            .find(|d| d.rules_key() == key)
            .ok_or_else(|| D::Error::custom(format!("{key:?} is not allow_in or allow_out")))
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::DeviceAdded { device } => write!(f, "+ device {device}"),
            Change::DeviceRemoved { device } => write!(f, "- device {device}"),
            Change::DeviceChanged { device, what } => write!(f, "~ device {device}: {what}"),
            Change::RuleAdded { device, direction, rule } => {
                write!(f, "+ {device} {}: {rule}", direction.rules_key())
            }
            Change::RuleRemoved { device, direction, rule } => {
                write!(f, "- {device} {}: {rule}", direction.rules_key())
            }
            Change::Setting { setting, from, to } => {
                write!(f, "~ setting {setting}: {from} -> {to}")
            }
        }
    }
}

/// The changes that turn `old` into `new`, devices in name order.
pub fn diff(old: &Resolved, new: &Resolved) -> Vec<Change> {
    let mut out = Vec::new();
    for (setting, a, b) in [
        ("allow_arp", old.allow_arp, new.allow_arp),
        ("allow_ndp", old.allow_ndp, new.allow_ndp),
        ("allow_dhcp", old.allow_dhcp, new.allow_dhcp),
        ("debug_log", old.debug_log, new.debug_log),
        ("monitor", old.monitor, new.monitor),
    ] {
        if a != b {
            out.push(Change::Setting {
                setting: setting.to_string(),
                from: a.to_string(),
                to: b.to_string(),
            });
        }
    }
    let old_devices: BTreeMap<&str, &ResolvedDevice> =
        old.devices.iter().map(|d| (d.name.as_str(), d)).collect();
    let new_devices: BTreeMap<&str, &ResolvedDevice> =
        new.devices.iter().map(|d| (d.name.as_str(), d)).collect();
    for (name, d) in &old_devices {
        if !new_devices.contains_key(name) {
            out.push(Change::DeviceRemoved { device: d.name.clone() });
        }
    }
    for (name, n) in &new_devices {
        let Some(o) = old_devices.get(name) else {
            out.push(Change::DeviceAdded { device: n.name.clone() });
            continue;
        };
        let device = || n.name.clone();
        if o.vlan != n.vlan {
            out.push(Change::DeviceChanged {
                device: device(),
                what: format!("vlan {} -> {}", o.vlan, n.vlan),
            });
        }
        if o.addrs != n.addrs {
            let list = |a: &[std::net::IpAddr]| {
                a.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            out.push(Change::DeviceChanged {
                device: device(),
                what: format!("ip [{}] -> [{}]", list(&o.addrs), list(&n.addrs)),
            });
        }
        if o.mac != n.mac {
            out.push(Change::DeviceChanged {
                device: device(),
                what: format!("mac {} -> {}", mac_text(o.mac), mac_text(n.mac)),
            });
        }
        if o.monitor != n.monitor {
            let mode = |m: bool| if m { "monitor" } else { "enforce" };
            out.push(Change::DeviceChanged {
                device: device(),
                what: format!("mode {} -> {}", mode(o.monitor), mode(n.monitor)),
            });
        }
        for (dir, a, b) in [
            (Direction::In, &o.allow_in, &n.allow_in),
            (Direction::Out, &o.allow_out, &n.allow_out),
        ] {
            for r in a.iter().filter(|r| !b.contains(r)) {
                out.push(Change::RuleRemoved {
                    device: device(),
                    direction: dir,
                    rule: rule_text(r, dir),
                });
            }
            for r in b.iter().filter(|r| !a.contains(r)) {
                out.push(Change::RuleAdded {
                    device: device(),
                    direction: dir,
                    rule: rule_text(r, dir),
                });
            }
        }
    }
    out
}

fn mac_text(mac: Option<[u8; 6]>) -> String {
    mac.map_or_else(|| "none".to_string(), crate::addr::mac_text)
}

/// A rule as the operator would write it.
pub fn rule_text(rule: &Rule, direction: Direction) -> String {
    let peer = match &rule.peer {
        Peer::Any => "any".to_string(),
        Peer::Nets(nets) => nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
    };
    let l4 = match rule.l4 {
        L4::Any => "any protocol".to_string(),
        L4::Proto(p) => proto_name(p),
        L4::Ports { proto, lo, hi } if lo == hi => format!("{} port {lo}", proto_name(proto)),
        L4::Ports { proto, lo, hi } => format!("{} ports {lo}-{hi}", proto_name(proto)),
        L4::IcmpType { proto, icmp_type } => format!("{} type {icmp_type}", proto_name(proto)),
    };
    let side = direction.peer_key();
    let sport = match rule.sport {
        Rule::ANY_SPORT => String::new(),
        (lo, hi) if lo == hi => format!(" from port {lo}"),
        (lo, hi) => format!(" from ports {lo}-{hi}"),
    };
    format!("{side} {peer} {l4}{sport}")
}

fn proto_name(p: u8) -> String {
    match p {
        ipproto::ICMP | ipproto::TCP | ipproto::UDP | ipproto::ICMPV6 => {
            crate::policy::proto_name(p)
        }
        p => format!("proto {}", crate::policy::proto_name(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const BASE: &str = r#"
[settings]
allow_arp = true
[[vlan]]
id = 110
name = "pumps"
subnets = ["10.110.0.0/24"]
[peers]
nurses = ["10.30.0.0/16"]
[[profile]]
name = "pump"
allow_in = [ { from = "nurses", proto = "tcp", port = 443 } ]
[[device]]
name = "a"
vlan = 110
ip = ["10.110.0.1"]
profile = "pump"
[[device]]
name = "b"
vlan = 110
ip = ["10.110.0.2"]
"#;

    fn resolve(text: &str) -> Resolved {
        Policy::from_toml(text).expect("parses").resolve().expect("valid")
    }

    fn lines(old: &str, new: &str) -> Vec<String> {
        diff(&resolve(old), &resolve(new)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn diffs_in_operator_terms() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (BASE.to_string(), vec![]),
            (BASE.replace("allow_arp = true", "allow_arp = false"), vec!["~ setting allow_arp: true -> false"]),
            (
                BASE.replace("port = 443 }", "port = 8443 }"),
                vec!["- a allow_in: from 10.30.0.0/16 tcp port 443", "+ a allow_in: from 10.30.0.0/16 tcp port 8443"],
            ),
            (
                BASE.replace("[[device]]\nname = \"b\"\nvlan = 110\nip = [\"10.110.0.2\"]\n", ""),
                vec!["- device b"],
            ),
            (
                format!("{BASE}[[device]]\nname = \"c\"\nvlan = 110\nip = [\"10.110.0.3\"]\n"),
                vec!["+ device c"],
            ),
            (
                BASE.replace("ip = [\"10.110.0.2\"]", "ip = [\"10.110.0.2\"]\nmac = \"02:00:00:00:00:02\"\nallow_out = [ { to = \"any\", proto = \"udp\", port = \"5000-5010\" } ]"),
                vec!["~ device b: mac none -> 02:00:00:00:00:02", "+ b allow_out: to any udp ports 5000-5010"],
            ),
            (
                BASE.replace("ip = [\"10.110.0.1\"]", "ip = [\"10.110.0.9\"]"),
                vec!["~ device a: ip [10.110.0.1] -> [10.110.0.9]"],
            ),
        ];
        for (new, expected) in cases {
            assert_eq!(lines(BASE, &new), expected, "for\n{new}");
        }
    }
}
