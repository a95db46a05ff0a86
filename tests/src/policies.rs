//! Policies shared by the kernel tests.

use filter_user::{Policy, Resolved};

/// A small hospital: pumps and monitors in protected VLANs, nurse stations
/// in an unprotected one. Device slots: 0 = pump-1, 1 = monitor-1.
pub const HOSPITAL: &str = r#"
[settings]
allow_arp = true
allow_ndp = true
allow_dhcp = true

[[vlan]]
id = 110
name = "infusion-pumps"
subnets = ["10.110.0.0/24", "2001:db8:110::/64"]

[[vlan]]
id = 120
name = "monitors"
subnets = ["10.120.0.0/24", "2001:db8:120::/64"]

[[vlan]]
id = 30
name = "nurses"
subnets = ["10.30.0.0/16"]
protected = false

[peers]
nurse-stations = ["10.30.0.0/16", "2001:db8:30::/48"]
drug-library = ["10.20.5.10/32", "2001:db8:20::10/128"]

[[profile]]
name = "infusion-pump"
allow_in = [
  { from = "nurse-stations", proto = "tcp", port = 443 },
  { from = "nurse-stations", proto = "icmp", icmp_type = 8 },
  { from = "nurse-stations", proto = "icmpv6", icmp_type = 128 },
]
allow_out = [
  { to = "drug-library", proto = "tcp", port = "443" },
  { to = "any", proto = "udp", port = "123" },
  { to = "10.120.0.0/24", proto = "udp", port = "5000-5010" },
]

[[device]]
name = "pump-1"
vlan = 110
ip = ["10.110.0.7", "2001:db8:110::7"]
mac = "02:00:00:00:00:07"
profile = "infusion-pump"
allow_in = [ { from = "10.30.4.20/32", proto = "tcp", port = "22" } ]

[[device]]
name = "monitor-1"
vlan = 120
ip = ["10.120.0.5", "2001:db8:120::5"]
allow_in = [
  { from = "10.110.0.0/24", proto = "udp", port = "5000-5100" },
  { from = "nurse-stations", proto = "udp" },
]
allow_out = [ { to = "nurse-stations", proto = "tcp", port = "8000-8080" } ]
"#;

pub const PUMP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x07];
pub const PUMP: u32 = 0;
pub const MONITOR: u32 = 1;

/// `HOSPITAL` with `line` added to the pump's table.
pub fn hospital_with_pump(line: &str) -> String {
    HOSPITAL.replacen(
        "profile = \"infusion-pump\"\n",
        &format!("profile = \"infusion-pump\"\n{line}\n"),
        1,
    )
}

pub fn hospital() -> Resolved {
    resolve(HOSPITAL)
}

pub fn resolve(text: &str) -> Resolved {
    Policy::from_toml(text).expect("policy parses").resolve().expect("policy is valid")
}

/// A maker's MUD file (RFC 8520) for `url`: the device may send echo
/// requests to the lab's nurse stations (10.30.0.0/16), nothing else.
pub fn echo_mud_file(url: &str) -> String {
    format!(
        r#"{{
  "ietf-mud:mud": {{
    "mud-version": 1,
    "mud-url": "{url}",
    "last-update": "2026-01-01T00:00:00Z",
    "cache-validity": 48,
    "is-supported": true,
    "systeminfo": "a device that pings nurse stations",
    "from-device-policy": {{ "access-lists": {{ "access-list": [ {{ "name": "from-dev" }} ] }} }},
    "to-device-policy": {{ "access-lists": {{ "access-list": [ {{ "name": "to-dev" }} ] }} }}
  }},
  "ietf-access-control-list:acls": {{
    "acl": [
      {{
        "name": "from-dev",
        "type": "ipv4-acl-type",
        "aces": {{ "ace": [ {{
          "name": "echo",
          "matches": {{
            "ipv4": {{ "protocol": 1, "destination-ipv4-network": "10.30.0.0/16" }},
            "icmp": {{ "type": 8 }}
          }},
          "actions": {{ "forwarding": "accept" }}
        }} ] }}
      }},
      {{ "name": "to-dev", "type": "ipv4-acl-type", "aces": {{ "ace": [] }} }}
    ]
  }}
}}"#
    )
}
