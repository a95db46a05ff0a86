//! The declarative policy (ARCHITECTURE §2) as Rust types, and its resolution into
//! a flat, validated form that both the compiler and the reference evaluator
//! consume: profiles merged into devices, peer sets expanded to CIDRs.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::IpAddr,
    ops::Range,
    str::FromStr,
};

use filter_common::{Direction, MAX_RULES, ipproto};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::error::PolicyError;

/// The policy file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default, rename = "vlan")]
    pub vlans: Vec<Spanned<Vlan>>,
    /// Named address sets, IPv4 and IPv6 mixed.
    #[serde(default)]
    pub peers: BTreeMap<String, Spanned<Vec<IpNet>>>,
    /// DNS names with fixed addresses (closed networks): rules naming them
    /// use these instead of asking a resolver.
    #[serde(default)]
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// DNS names rules use, as resolved when the policy is applied (filled
    /// by `crate::resolve_policy`, not read from the file).
    #[serde(skip)]
    pub names: BTreeMap<String, Vec<IpAddr>>,
    #[serde(default, rename = "profile")]
    pub profiles: Vec<Spanned<Profile>>,
    #[serde(default, rename = "device")]
    pub devices: Vec<Spanned<Device>>,
    /// Interfaces whose untagged frames belong to one VLAN.
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Spanned<Interface>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    /// Let ARP to and from protected VLANs through.
    #[serde(default)]
    pub allow_arp: bool,
    /// Let IPv6 neighbour discovery (ICMPv6 133-137) through.
    #[serde(default)]
    pub allow_ndp: bool,
    /// Let DHCP (UDP 67/68) and DHCPv6 (UDP 546/547) through.
    #[serde(default)]
    pub allow_dhcp: bool,
    /// Drop events each CPU sends per second at most (the rest are counted
    /// as suppressed). Default 100; 0 sends none.
    #[serde(default)]
    pub events_per_second: Option<u32>,
    /// Log every frame the program decides (verdict, reason, interface,
    /// VLAN, addresses, ports) through aya-log to the daemon's standard
    /// error, prefixed `program:`. For troubleshooting on a quiet link:
    /// every frame costs a log record. Off by default.
    #[serde(default)]
    pub debug_log: bool,
    /// Idle timeouts of tracked flows (durations such as "30s", "1h").
    #[serde(default)]
    pub flow_timeouts: FlowTimeouts,
    /// How often the daemon resolves the DNS names rules use again (a
    /// duration such as "5m", the default). A changed answer is applied
    /// like a policy change.
    #[serde(default)]
    pub dns_refresh: Option<String>,
    /// How long an address learned for a device declared by MAC alone stays
    /// bound to it after the device was last seen using it (a duration
    /// such as "1h", the default). After that the next frame from the
    /// address is learned again.
    #[serde(default)]
    pub learned_address_ttl: Option<String>,
    /// What a quarantined device may still reach (and be reached from):
    /// addresses, CIDRs or `[peers]` sets. Empty: nothing.
    #[serde(default)]
    pub management: Vec<String>,
    /// Block sources that probe many denied targets. Off without it.
    #[serde(default)]
    pub scan_detection: Option<ScanDetectionToml>,
}

/// `[settings.scan_detection]` as written; unset keys take the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanDetectionToml {
    /// Distinct denied targets (address and port) that make a scan.
    /// Default 20.
    pub targets: Option<u32>,
    /// Within this long. Default "10s".
    pub window: Option<String>,
    /// How long the scanner is blocked. Default "10m".
    pub block_for: Option<String>,
}

/// Scan detection, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanDetection {
    pub targets: u32,
    pub window: std::time::Duration,
    pub block_for: std::time::Duration,
}

impl ScanDetectionToml {
    fn resolve(&self) -> Result<ScanDetection, PolicyError> {
        let what = "settings.scan_detection";
        let duration = |name: &str, text: &Option<String>, default: u64| match text {
            None => Ok(std::time::Duration::from_secs(default)),
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(d),
                Ok(_) => Err(PolicyError::invalid(what, format!("{name} {t:?} is under 1s"))),
                Err(e) => Err(PolicyError::invalid(
                    what,
                    format!("{name} {t:?} is not a duration ({e}); write e.g. \"10s\""),
                )),
            },
        };
        let targets = self.targets.unwrap_or(20);
        if targets < 2 {
            return Err(PolicyError::invalid(
                what,
                format!("targets = {targets} would block any client denied once; use 2 or more"),
            ));
        }
        Ok(ScanDetection {
            targets,
            window: duration("window", &self.window, 10)?,
            block_for: duration("block_for", &self.block_for, 600)?,
        })
    }
}

/// `[settings.flow_timeouts]`; unset entries take
/// `filter_common::DEFAULT_FLOW_TIMEOUTS`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTimeouts {
    /// TCP after the SYN until the other side answers.
    pub tcp_opening: Option<String>,
    pub tcp_established: Option<String>,
    /// TCP after a FIN or RST.
    pub tcp_closing: Option<String>,
    pub udp: Option<String>,
    /// ICMP and ICMPv6 echo.
    pub icmp: Option<String>,
}

impl FlowTimeouts {
    /// Seconds, in `filter_common::FlowTimeout` order.
    fn resolve(&self) -> Result<[u32; filter_common::FLOW_TIMEOUTS], PolicyError> {
        let mut out = filter_common::DEFAULT_FLOW_TIMEOUTS;
        let given = [
            ("tcp_opening", &self.tcp_opening),
            ("tcp_established", &self.tcp_established),
            ("tcp_closing", &self.tcp_closing),
            ("udp", &self.udp),
            ("icmp", &self.icmp),
        ];
        for (slot, (name, value)) in out.iter_mut().zip(given) {
            let Some(text) = value else { continue };
            let what = format!("settings.flow_timeouts.{name}");
            let d = humantime::parse_duration(text).map_err(|e| {
                PolicyError::invalid(
                    &what,
                    format!("{text:?} is not a duration ({e}); write e.g. \"30s\" or \"1h\""),
                )
            })?;
            let secs = d.as_secs();
            if !(1..=7 * 24 * 3600).contains(&secs) {
                return Err(PolicyError::invalid(
                    &what,
                    format!("{text:?} is outside 1 second to 7 days"),
                ));
            }
            *slot = secs as u32;
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    pub id: u16,
    pub name: String,
    #[serde(default)]
    pub subnets: Vec<IpNet>,
    /// Default deny to and from every host in the VLAN's subnets.
    #[serde(default = "yes")]
    pub protected: bool,
}

const fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub allow_in: Vec<Spanned<InRule>>,
    #[serde(default)]
    pub allow_out: Vec<Spanned<OutRule>>,
    /// For the profile's devices, unless a device sets its own.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// Limits on traffic towards a device, enforced by the program per second
/// (reason `rate-limited`). Unset: no limit.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Frames per second the device may receive (allowed ones; what the
    /// policy drops anyway is not counted).
    pub packets_per_second: Option<u32>,
    /// New TCP connections (SYN) per second towards the device.
    pub new_tcp_per_second: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    pub vlan: u16,
    /// Its addresses; none with a `mac`: they are learned (ARCHITECTURE §5).
    #[serde(default)]
    pub ip: Vec<IpAddr>,
    /// Bind the device's addresses to this MAC (anti-spoofing).
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub allow_in: Vec<Spanned<InRule>>,
    #[serde(default)]
    pub allow_out: Vec<Spanned<OutRule>>,
    /// Overrides `[settings] mode` for this device.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Overrides its profile's `rate_limit`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    pub untagged_vlan: u16,
}

/// `allow_in` entry: traffic from `from` to the device.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRule {
    pub from: String,
    #[serde(flatten)]
    pub m: Match,
}

/// `allow_out` entry: traffic from the device to `to`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutRule {
    pub to: String,
    #[serde(flatten)]
    pub m: Match,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Match {
    /// A name (`"tcp"`, `"gre"`) or an IP protocol number (`47`, `"47"`).
    #[serde(default)]
    pub proto: Option<ProtoSpec>,
    /// A port (`443`, `"443"`) or range (`"8000-8100"`).
    #[serde(default)]
    pub port: Option<PortSpec>,
    /// The source port or range (TCP, UDP), as `port`.
    #[serde(default)]
    pub sport: Option<PortSpec>,
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// Only the peer's addresses inside this network: `"0.0.0.0/0"` or
    /// `"::/0"` for one address family, or a network a name or set must
    /// also lie in (a MUD entry that matches both, README "MUD files").
    #[serde(default)]
    pub within: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ProtoSpec {
    /// Range-checked in validation, for a clear message.
    Number(i64),
    Text(String),
}

impl ProtoSpec {
    fn parse(&self) -> Result<Proto, String> {
        match self {
            ProtoSpec::Number(n) => u8::try_from(*n)
                .map_err(|_| format!("proto {n} is not an IP protocol number (0-255)"))
                .and_then(Proto::from_number),
            ProtoSpec::Text(t) => t.parse(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// Range-checked in validation, for a clear message.
    Number(i64),
    Text(String),
}

// ---------------------------------------------------------------------------
// Resolved form

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol, by number: matched on the protocol alone.
    Other(u8),
}

/// IP protocols known by name (IANA protocol numbers); others are given
/// by number.
const PROTO_NAMES: [(&str, u8); 16] = [
    ("icmp", 1),
    ("igmp", 2),
    ("ipip", 4),
    ("tcp", 6),
    ("udp", 17),
    ("ipv6", 41),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("eigrp", 88),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
];

/// IPv6 extension headers: the program walks past them to the transport
/// protocol, so a rule naming one would never match.
const IPV6_EXTENSION_HEADERS: [u8; 4] =
    [ipproto::HOPOPTS, ipproto::ROUTING, ipproto::FRAGMENT, ipproto::DSTOPTS];

/// The name of IP protocol `p` (its number when it has none here).
pub fn proto_name(p: u8) -> String {
    PROTO_NAMES
        .iter()
        .find(|(_, n)| *n == p)
        .map_or_else(|| p.to_string(), |(name, _)| (*name).to_string())
}

impl Proto {
    /// IP protocol number; `None` for `any`.
    pub const fn number(self) -> Option<u8> {
        match self {
            Proto::Any => None,
            Proto::Tcp => Some(ipproto::TCP),
            Proto::Udp => Some(ipproto::UDP),
            Proto::Icmp => Some(ipproto::ICMP),
            Proto::Icmpv6 => Some(ipproto::ICMPV6),
            Proto::Other(n) => Some(n),
        }
    }

    /// The protocol with number `n`.
    pub fn from_number(n: u8) -> Result<Proto, String> {
        if IPV6_EXTENSION_HEADERS.contains(&n) {
            return Err(format!(
                "proto {n} is an IPv6 extension header, not a transport protocol: frames are \
                 matched on the protocol after their extension headers"
            ));
        }
        Ok(match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            n => Proto::Other(n),
        })
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "any" {
            return Ok(Proto::Any);
        }
        if let Some((_, n)) = PROTO_NAMES.iter().find(|(name, _)| *name == s) {
            return Proto::from_number(*n);
        }
        match s.parse::<u8>() {
            Ok(n) => Proto::from_number(n),
            Err(_) => Err(format!(
                "unknown proto {s:?}: use any, a name (tcp, udp, icmp, icmpv6, igmp, gre, esp, \
                 ah, ospf, pim, vrrp, sctp, ...) or an IP protocol number 0-255"
            )),
        }
    }
}

/// What a rule matches besides the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// Any protocol.
    Any,
    /// One protocol, any port or type.
    Proto(u8),
    /// TCP or UDP, destination port in `lo..=hi`.
    Ports { proto: u8, lo: u16, hi: u16 },
    /// ICMP or ICMPv6 message type.
    IcmpType { proto: u8, icmp_type: u8 },
}

/// Peer of a rule: `any`, or a list of networks (a CIDR or an expanded set).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Any,
    Nets(Vec<IpNet>),
}

impl Peer {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match self {
            Peer::Any => true,
            Peer::Nets(nets) => nets.iter().any(|n| n.contains(&addr)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub peer: Peer,
    pub l4: L4,
    /// Source ports (TCP, UDP) the packet must come from, inclusive;
    /// [`Rule::ANY_SPORT`] for any.
    pub sport: (u16, u16),
}

impl Rule {
    pub const ANY_SPORT: (u16, u16) = (0, u16::MAX);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedDevice {
    pub name: String,
    pub vlan: u16,
    pub addrs: Vec<IpAddr>,
    pub mac: Option<[u8; 6]>,
    /// Declared by MAC alone: its addresses are learned from what it sends
    /// (`addrs` holds the ones bound to it now, given by the daemon).
    pub learns: bool,
    pub allow_in: Vec<Rule>,
    pub allow_out: Vec<Rule>,
    /// How many leading rules of `allow_in` / `allow_out` are its profile's:
    /// the program holds those once for every device of the profile.
    pub profile_in: usize,
    pub profile_out: usize,
    /// Monitor mode (its own `mode`, else the policy's): what it would deny
    /// passes and is reported as would-drop.
    pub monitor: bool,
    /// Its own `rate_limit`, else its profile's.
    pub rate_limit: RateLimit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedVlan {
    pub id: u16,
    pub name: String,
    pub subnets: Vec<IpNet>,
    pub protected: bool,
}

/// A validated policy: what the compiler and the reference evaluator take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub allow_arp: bool,
    pub allow_ndp: bool,
    pub allow_dhcp: bool,
    pub events_per_sec: u32,
    pub debug_log: bool,
    /// `[settings] mode = "monitor"`: frames involving no device (unknown
    /// hosts, malformed frames) are reported, not dropped; devices follow
    /// it unless they set their own mode.
    pub monitor: bool,
    /// Seconds, in `filter_common::FlowTimeout` order.
    pub flow_timeouts: [u32; filter_common::FLOW_TIMEOUTS],
    /// `[settings] management`, resolved.
    pub management: Vec<IpNet>,
    /// `[settings.scan_detection]`, if on.
    pub scan_detection: Option<ScanDetection>,
    pub vlans: Vec<ResolvedVlan>,
    /// Device index = counter slot.
    pub devices: Vec<ResolvedDevice>,
    /// Interface name -> untagged VLAN.
    pub interfaces: Vec<(String, u16)>,
    /// DNS names the rules use (not under `[hosts]`) and their addresses
    /// as resolved for this policy.
    pub names: BTreeMap<String, Vec<IpAddr>>,
    /// `[settings] dns_refresh`, in seconds.
    pub dns_refresh_secs: u64,
    /// `[settings] learned_address_ttl`, in seconds.
    pub learned_address_ttl_secs: u64,
}

/// Whether `s` is a DNS name a rule may use as its peer (not an address).
pub fn is_dns_name(s: &str) -> bool {
    s.contains('.')
        && s.parse::<IpAddr>().is_err()
        && s.parse::<IpNet>().is_err()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A `[settings]` duration in whole seconds (more than 0), `default`
/// unless set.
fn duration_setting(key: &str, text: Option<&str>, default: u64) -> Result<u64, PolicyError> {
    let Some(text) = text else { return Ok(default) };
    humantime::parse_duration(text).ok().map(|d| d.as_secs()).filter(|s| *s > 0).ok_or_else(|| {
        PolicyError::invalid(
            format!("settings.{key}"),
            format!("{text:?} is not a duration such as \"5m\""),
        )
    })
}

/// `[settings] learned_address_ttl` unless set: an hour.
pub const DEFAULT_LEARNED_ADDRESS_TTL_SECS: u64 = 3600;

/// `[settings] dns_refresh` unless set: five minutes.
pub const DEFAULT_DNS_REFRESH_SECS: u64 = 300;

/// A limit of 0 would cut the device off: say so rather than do it.
fn check_rate_limit(limit: &RateLimit) -> Result<(), String> {
    for (name, value) in [
        ("packets_per_second", limit.packets_per_second),
        ("new_tcp_per_second", limit.new_tcp_per_second),
    ] {
        if value == Some(0) {
            return Err(format!(
                "rate_limit {name} = 0 would drop everything; leave it out for no limit, or use \
                 `vlanguard quarantine` to cut a device off"
            ));
        }
    }
    Ok(())
}

/// A device's merged rules, and how many of each list are its profile's.
struct Merged {
    allow_in: Vec<Rule>,
    allow_out: Vec<Rule>,
    profile_in: usize,
    profile_out: usize,
}

/// Profiles by name: their rules (in, out) and rate limits.
#[derive(Default)]
struct Profiles<'a> {
    rules: HashMap<&'a str, (Vec<Rule>, Vec<Rule>)>,
    limits: HashMap<&'a str, RateLimit>,
}

impl Policy {
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))
    }

    /// Checks everything and merges profiles into devices. Nothing partial:
    /// any error and there is no result. Errors carry the byte range of the
    /// table or rule at fault ([`PolicyError::render`] turns it into a line).
    pub fn resolve(&self) -> Result<Resolved, PolicyError> {
        let vlan_ids = self.check_vlans()?;
        self.check_peers_and_hosts()?;
        let profiles = self.resolve_profiles()?;
        let mut devices = Vec::new();
        let mut names = HashSet::new();
        let mut addrs: HashMap<IpAddr, &str> = HashMap::new();
        for d in &self.devices {
            devices.push(self.resolve_device(d, &profiles, &mut names, &mut addrs)?);
        }
        self.check_learning_macs(&devices)?;
        let interfaces = self.resolve_interfaces(&vlan_ids)?;
        self.resolved(devices, interfaces)
    }

    /// A device whose addresses are learned is found by its MAC in its
    /// VLAN: no other device there may have that MAC.
    fn check_learning_macs(&self, devices: &[ResolvedDevice]) -> Result<(), PolicyError> {
        for (i, d) in devices.iter().enumerate().filter(|(_, d)| d.learns) {
            if let Some(other) =
                devices.iter().find(|o| o.name != d.name && o.vlan == d.vlan && o.mac == d.mac)
            {
                return Err(PolicyError::invalid(
                    format!("device {:?}", d.name),
                    format!(
                        "has its addresses learned by its mac, which device {:?} in vlan {} has too",
                        other.name, d.vlan
                    ),
                )
                .at(self.devices[i].span()));
            }
        }
        Ok(())
    }

    /// VLAN ids in range and declared once; returns them.
    fn check_vlans(&self) -> Result<HashSet<u16>, PolicyError> {
        let mut vlan_ids = HashSet::new();
        for v in &self.vlans {
            let (at, v) = (v.span(), v.get_ref());
            let what = format!("vlan {:?}", v.name);
            if !(1..=4094).contains(&v.id) {
                return Err(
                    PolicyError::invalid(what, format!("id {} is outside 1-4094", v.id)).at(at)
                );
            }
            if !vlan_ids.insert(v.id) {
                return Err(PolicyError::invalid(
                    what,
                    format!("vlan id {} is declared twice", v.id),
                )
                .at(at));
            }
        }
        Ok(vlan_ids)
    }

    /// Peer sets named and not empty; `[hosts]` names that are DNS names,
    /// with addresses.
    fn check_peers_and_hosts(&self) -> Result<(), PolicyError> {
        for (name, nets) in &self.peers {
            if name == "any" {
                return Err(PolicyError::invalid(
                    "peers",
                    "a peer set cannot be called \"any\"".into(),
                )
                .at(nets.span()));
            }
            if nets.get_ref().is_empty() {
                return Err(PolicyError::invalid(
                    format!("peer set {name:?}"),
                    "is empty: list at least one network".into(),
                )
                .at(nets.span()));
            }
        }
        for (name, addrs) in &self.hosts {
            if !is_dns_name(name) {
                return Err(PolicyError::invalid("hosts", format!("{name:?} is not a DNS name")));
            }
            if addrs.is_empty() {
                return Err(PolicyError::invalid(
                    format!("hosts.{name:?}"),
                    "is empty: list its addresses".into(),
                ));
            }
        }
        Ok(())
    }

    /// Each profile's rules and rate limit, by name.
    fn resolve_profiles(&self) -> Result<Profiles<'_>, PolicyError> {
        let mut profiles = Profiles::default();
        for p in &self.profiles {
            let (at, p) = (p.span(), p.get_ref());
            let what = format!("profile {:?}", p.name);
            let ins = self.rules(&format!("{what} allow_in"), p.allow_in.iter().map(in_rule))?;
            let outs =
                self.rules(&format!("{what} allow_out"), p.allow_out.iter().map(out_rule))?;
            if let Some(limit) = p.rate_limit {
                check_rate_limit(&limit)
                    .map_err(|e| PolicyError::invalid(&what, e).at(at.clone()))?;
                profiles.limits.insert(p.name.as_str(), limit);
            }
            if profiles.rules.insert(p.name.as_str(), (ins, outs)).is_some() {
                return Err(PolicyError::invalid(what, "is declared twice".into()).at(at));
            }
        }
        Ok(profiles)
    }

    /// One device checked (name, VLAN, addresses unique and in the VLAN's
    /// subnets, MAC, profile) and its profile merged in. `names` and
    /// `addrs` hold the devices resolved before it.
    fn resolve_device<'a>(
        &self,
        d: &'a Spanned<Device>,
        profiles: &Profiles<'_>,
        names: &mut HashSet<&'a str>,
        addrs: &mut HashMap<IpAddr, &'a str>,
    ) -> Result<ResolvedDevice, PolicyError> {
        let (at, d) = (d.span(), d.get_ref());
        let what = format!("device {:?}", d.name);
        let fail =
            |problem: String| Err(PolicyError::invalid(what.clone(), problem).at(at.clone()));
        if !names.insert(d.name.as_str()) {
            return fail("is declared twice".into());
        }
        if d.name.is_empty()
            || d.name.len() > filter_common::MAX_DEVICE_NAME
            || !d.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return fail(format!(
                "a device name is 1-{} letters, digits, '.', '_' or '-'",
                filter_common::MAX_DEVICE_NAME
            ));
        }
        let Some(vlan) = self.vlans.iter().map(Spanned::get_ref).find(|v| v.id == d.vlan) else {
            return fail(format!("vlan {} is not declared in a [[vlan]] table", d.vlan));
        };
        if d.ip.is_empty() && d.mac.is_none() {
            return fail(
                "has no ip: list its addresses, or give its mac to have them learned".into(),
            );
        }
        for ip in &d.ip {
            if let Some(other) = addrs.insert(*ip, &d.name) {
                return fail(format!("ip {ip} is already used by device {other:?}"));
            }
            if !vlan.subnets.iter().any(|n| n.contains(ip)) {
                return fail(format!(
                    "ip {ip} is not in any subnet of vlan {} ({})",
                    vlan.id, vlan.name
                ));
            }
        }
        let mac = match d.mac.as_deref().map(parse_mac).transpose() {
            Ok(mac) => mac,
            Err(e) => return fail(e),
        };
        let rules = match &d.profile {
            Some(p) => match profiles.rules.get(p.as_str()) {
                Some(rules) => rules.clone(),
                None => return fail(format!("profile {p:?} is not declared")),
            },
            None => (Vec::new(), Vec::new()),
        };
        let merged = self.merge_rules(d, &what, &at, rules)?;
        let rate_limit = match d.rate_limit {
            Some(limit) => {
                if let Err(e) = check_rate_limit(&limit) {
                    return fail(e);
                }
                limit
            }
            None => d
                .profile
                .as_deref()
                .and_then(|p| profiles.limits.get(p).copied())
                .unwrap_or_default(),
        };
        Ok(ResolvedDevice {
            name: d.name.clone(),
            vlan: d.vlan,
            addrs: d.ip.clone(),
            mac,
            learns: d.ip.is_empty(),
            allow_in: merged.allow_in,
            allow_out: merged.allow_out,
            profile_in: merged.profile_in,
            profile_out: merged.profile_out,
            monitor: d.mode.unwrap_or(self.settings.mode) == Mode::Monitor,
            rate_limit,
        })
    }

    /// A device's rules: its profile's (`profile`, in and out) first, then
    /// its own, duplicates dropped, within the limit per direction.
    fn merge_rules(
        &self,
        d: &Device,
        what: &str,
        at: &Range<usize>,
        profile: (Vec<Rule>, Vec<Rule>),
    ) -> Result<Merged, PolicyError> {
        let (mut allow_in, mut allow_out) = profile;
        // Deduplicating keeps first occurrences: the profile's rules
        // stay the list's head.
        let (profile_in, profile_out) = {
            let (mut i, mut o) = (allow_in.clone(), allow_out.clone());
            dedup(&mut i);
            dedup(&mut o);
            (i.len(), o.len())
        };
        allow_in.extend(self.rules(&format!("{what} allow_in"), d.allow_in.iter().map(in_rule))?);
        allow_out
            .extend(self.rules(&format!("{what} allow_out"), d.allow_out.iter().map(out_rule))?);
        dedup(&mut allow_in);
        dedup(&mut allow_out);
        for (dir, rules) in [(Direction::In, &allow_in), (Direction::Out, &allow_out)] {
            if rules.len() > MAX_RULES {
                return Err(PolicyError::TooManyRules {
                    device: d.name.clone(),
                    direction: dir,
                    count: rules.len(),
                    limit: MAX_RULES,
                    at: Some(at.clone()),
                });
            }
        }
        Ok(Merged { allow_in, allow_out, profile_in, profile_out })
    }

    /// Access ports, each in a declared VLAN.
    fn resolve_interfaces(
        &self,
        vlan_ids: &HashSet<u16>,
    ) -> Result<Vec<(String, u16)>, PolicyError> {
        let mut interfaces = Vec::new();
        for i in &self.interfaces {
            let (at, i) = (i.span(), i.get_ref());
            if !vlan_ids.contains(&i.untagged_vlan) {
                return Err(PolicyError::invalid(
                    format!("interface {:?}", i.name),
                    format!(
                        "untagged_vlan {} is not declared in a [[vlan]] table",
                        i.untagged_vlan
                    ),
                )
                .at(at));
            }
            interfaces.push((i.name.clone(), i.untagged_vlan));
        }
        Ok(interfaces)
    }

    /// The resolved policy: the settings checked and the parts resolved.
    fn resolved(
        &self,
        devices: Vec<ResolvedDevice>,
        interfaces: Vec<(String, u16)>,
    ) -> Result<Resolved, PolicyError> {
        Ok(Resolved {
            allow_arp: self.settings.allow_arp,
            allow_ndp: self.settings.allow_ndp,
            allow_dhcp: self.settings.allow_dhcp,
            events_per_sec: self
                .settings
                .events_per_second
                .unwrap_or(filter_common::DEFAULT_EVENTS_PER_SEC),
            debug_log: self.settings.debug_log,
            monitor: self.settings.mode == Mode::Monitor,
            flow_timeouts: self.settings.flow_timeouts.resolve()?,
            management: self.management()?,
            scan_detection: self
                .settings
                .scan_detection
                .as_ref()
                .map(ScanDetectionToml::resolve)
                .transpose()?,
            vlans: self
                .vlans
                .iter()
                .map(Spanned::get_ref)
                .map(|v| ResolvedVlan {
                    id: v.id,
                    name: v.name.clone(),
                    subnets: v.subnets.clone(),
                    protected: v.protected,
                })
                .collect(),
            devices,
            interfaces,
            names: self
                .dns_names()
                .into_iter()
                .filter_map(|n| Some((n.clone(), self.names.get(&n)?.clone())))
                .collect(),
            dns_refresh_secs: duration_setting(
                "dns_refresh",
                self.settings.dns_refresh.as_deref(),
                DEFAULT_DNS_REFRESH_SECS,
            )?,
            learned_address_ttl_secs: duration_setting(
                "learned_address_ttl",
                self.settings.learned_address_ttl.as_deref(),
                DEFAULT_LEARNED_ADDRESS_TTL_SECS,
            )?,
        })
    }

    fn rules<'a>(
        &self,
        what: &str,
        rules: impl Iterator<Item = (&'a String, &'a Match, Range<usize>)>,
    ) -> Result<Vec<Rule>, PolicyError> {
        rules
            .enumerate()
            .map(|(i, (peer, m, span))| {
                let what = format!("{what} rule {}", i + 1);
                let peer = self
                    .peer(peer)
                    .and_then(|p| within(p, m.within.as_deref()))
                    .map_err(|e| PolicyError::invalid(what.clone(), e).at(span.clone()))?;
                let l4 =
                    l4(m).map_err(|e| PolicyError::invalid(what.clone(), e).at(span.clone()))?;
                let sport = sport(m, &l4).map_err(|e| PolicyError::invalid(what, e).at(span))?;
                Ok(Rule { peer, l4, sport })
            })
            .collect()
    }

    fn management(&self) -> Result<Vec<IpNet>, PolicyError> {
        let mut out = Vec::new();
        for text in &self.settings.management {
            match self.peer(text) {
                Ok(Peer::Nets(nets)) => out.extend(nets),
                Ok(Peer::Any) => {
                    return Err(PolicyError::invalid(
                        "settings.management",
                        "\"any\" would make quarantine mean nothing; name the management \
                         networks"
                            .into(),
                    ));
                }
                Err(e) => return Err(PolicyError::invalid("settings.management", e)),
            }
        }
        Ok(out)
    }

    /// DNS names rules and settings use as peers that `[hosts]` does not
    /// fix: what a resolver must answer before the policy can be applied.
    pub fn dns_names(&self) -> Vec<String> {
        let profiles =
            self.profiles.iter().map(Spanned::get_ref).map(|p| (&p.allow_in, &p.allow_out));
        let devices =
            self.devices.iter().map(Spanned::get_ref).map(|d| (&d.allow_in, &d.allow_out));
        let mut names: Vec<String> = profiles
            .chain(devices)
            .flat_map(|(i, o)| {
                i.iter()
                    .map(|r| r.get_ref().from.as_str())
                    .chain(o.iter().map(|r| r.get_ref().to.as_str()))
            })
            .chain(self.settings.management.iter().map(String::as_str))
            .filter(|t| {
                !self.peers.contains_key(*t) && !self.hosts.contains_key(*t) && is_dns_name(t)
            })
            .map(String::from)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn peer(&self, text: &str) -> Result<Peer, String> {
        if text == "any" {
            return Ok(Peer::Any);
        }
        if let Some(nets) = self.peers.get(text) {
            return Ok(Peer::Nets(nets.get_ref().iter().map(IpNet::trunc).collect()));
        }
        if is_dns_name(text) {
            let addrs = self.hosts.get(text).or_else(|| self.names.get(text)).ok_or_else(|| {
                format!(
                    "host name {text:?} has no addresses: the resolver did not answer for it; \
                     list it under [hosts] for a closed network"
                )
            })?;
            return Ok(Peer::Nets(addrs.iter().copied().map(IpNet::from).collect()));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Peer::Nets(vec![net.trunc()]));
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(Peer::Nets(vec![IpNet::from(addr)]));
        }
        Err(format!(
            "peer {text:?} is neither \"any\", an address, a CIDR, a set declared under [peers] \
             nor a DNS name"
        ))
    }
}

/// `peer` restricted to the addresses inside `within`: each network the
/// peer names, cut down to the part inside it (networks are nested or
/// apart). `any` becomes `within` itself. What is left may be nothing: the
/// rule then matches nothing (a name with no address of that family).
fn within(peer: Peer, within: Option<&str>) -> Result<Peer, String> {
    let Some(text) = within else { return Ok(peer) };
    let bound: IpNet = text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        format!("within {text:?} is not a network such as \"0.0.0.0/0\" or \"::/0\"")
    })?;
    Ok(Peer::Nets(match peer {
        Peer::Any => vec![bound],
        Peer::Nets(nets) => nets
            .into_iter()
            .filter_map(|n| {
                if bound.contains(&n) {
                    Some(n)
                } else if n.contains(&bound) {
                    Some(bound)
                } else {
                    None
                }
            })
            .collect(),
    }))
}

fn in_rule(r: &Spanned<InRule>) -> (&String, &Match, Range<usize>) {
    (&r.get_ref().from, &r.get_ref().m, r.span())
}

fn out_rule(r: &Spanned<OutRule>) -> (&String, &Match, Range<usize>) {
    (&r.get_ref().to, &r.get_ref().m, r.span())
}

fn dedup(rules: &mut Vec<Rule>) {
    let mut seen = HashSet::new();
    rules.retain(|r| seen.insert(r.clone()));
}

fn l4(m: &Match) -> Result<L4, String> {
    let proto: Proto = match &m.proto {
        Some(p) => p.parse()?,
        None => Proto::Any,
    };
    match (proto, &m.port, m.icmp_type) {
        (Proto::Other(n), Some(_), None) | (Proto::Other(n), None, Some(_)) => Err(format!(
            "proto {} has no ports or ICMP types here: write the protocol alone",
            proto_name(n)
        )),
        (_, Some(_), Some(_)) => Err("a rule has either a port or an icmp_type, not both".into()),
        (Proto::Any, None, None) => Ok(L4::Any),
        (Proto::Any, _, _) => {
            Err("port and icmp_type need a proto (tcp, udp, icmp or icmpv6)".into())
        }
        (Proto::Tcp | Proto::Udp, Some(spec), None) => {
            let (lo, hi) = parse_ports(spec)?;
            let proto = proto.number().unwrap_or_default();
            Ok(if lo == 0 && hi == u16::MAX {
                L4::Proto(proto)
            } else {
                L4::Ports { proto, lo, hi }
            })
        }
        (Proto::Icmp | Proto::Icmpv6, None, Some(t)) => {
            Ok(L4::IcmpType { proto: proto.number().unwrap_or_default(), icmp_type: t })
        }
        (Proto::Tcp | Proto::Udp, None, Some(_)) => {
            Err("icmp_type needs proto icmp or icmpv6".into())
        }
        (Proto::Icmp | Proto::Icmpv6, Some(_), None) => {
            Err("icmp has no ports: use icmp_type to match a message type".into())
        }
        (p, None, None) => Ok(L4::Proto(p.number().unwrap_or_default())),
    }
}

/// A rule's source ports: TCP and UDP only.
fn sport(m: &Match, l4: &L4) -> Result<(u16, u16), String> {
    let Some(spec) = &m.sport else { return Ok(Rule::ANY_SPORT) };
    match l4 {
        L4::Ports { proto: ipproto::TCP | ipproto::UDP, .. }
        | L4::Proto(ipproto::TCP | ipproto::UDP) => parse_ports(spec),
        _ => Err("sport needs proto tcp or udp".into()),
    }
}

fn parse_ports(spec: &PortSpec) -> Result<(u16, u16), String> {
    let text = match spec {
        PortSpec::Number(n) => {
            let p = u16::try_from(*n).map_err(|_| format!("port {n} is outside 0-65535"))?;
            return Ok((p, p));
        }
        PortSpec::Text(t) => t.trim(),
    };
    let bad = || format!("port {text:?} is not a port (443) or a range (8000-8100) of 0-65535");
    match text.split_once('-') {
        None => {
            let n: u64 = text.parse().map_err(|_| bad())?;
            let p = u16::try_from(n).map_err(|_| format!("port {n} is outside 0-65535"))?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let lo: u16 = a.trim().parse().map_err(|_| bad())?;
            let hi: u16 = b.trim().parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(format!("port range {text:?} is reversed: write {hi}-{lo}"));
            }
            Ok((lo, hi))
        }
    }
}

pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!("mac {text:?} is not six hex bytes like 02:00:00:00:00:07"));
    }
    for (out, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 {
            return Err(format!("mac {text:?} is not six hex bytes like 02:00:00:00:00:07"));
        }
        *out = u8::from_str_radix(part, 16)
            .map_err(|_| format!("mac {text:?} is not six hex bytes like 02:00:00:00:00:07"))?;
    }
    Ok(mac)
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            None => f.write_str("any"),
            Some(n) => f.write_str(&proto_name(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLAN: &str = "[[vlan]]\nid = 110\nname = \"pumps\"\nsubnets = [\"10.110.0.0/24\"]\n";

    fn error(text: &str) -> String {
        match Policy::from_toml(text).and_then(|p| p.resolve()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn device(extra: &str) -> String {
        format!("{VLAN}[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.110.0.7\"]\n{extra}\n")
    }

    #[test]
    fn bad_input_is_refused_with_what_to_fix() {
        let cases = [
            (format!("{VLAN}bogus = 1\n"), "unknown field"),
            (device("colour = \"red\""), "unknown field"),
            (
                format!("{VLAN}[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.110.0.300\"]\n"),
                "invalid",
            ),
            (
                "[[vlan]]\nid = 110\nname = \"x\"\nsubnets = [\"10.110.0.0/33\"]\n".to_string(),
                "invalid",
            ),
            ("[[vlan]]\nid = 4095\nname = \"x\"\n".to_string(), "outside 1-4094"),
            (format!("{VLAN}{VLAN}"), "declared twice"),
            (device("allow_in = [ { from = \"nobody\" } ]"), "neither \"any\""),
            (device("allow_in = [ { from = \"10.0.0.0/40\" } ]"), "neither \"any\""),
            (device("profile = \"ghost\""), "profile \"ghost\" is not declared"),
            (device("mac = \"02:00:00:00:07\""), "six hex bytes"),
            (device("allow_in = [ { from = \"any\", proto = \"bogus\" } ]"), "unknown proto"),
            (device("allow_in = [ { from = \"any\", proto = 256 } ]"), "not an IP protocol number"),
            (device("allow_in = [ { from = \"any\", proto = 44 } ]"), "IPv6 extension header"),
            (
                device("allow_in = [ { from = \"any\", proto = \"gre\", port = 80 } ]"),
                "proto gre has no ports",
            ),
            (
                format!("{VLAN}[[device]]\nname = \"pump 7\"\nvlan = 110\nip = [\"10.110.0.7\"]\n"),
                "a device name is",
            ),
            (
                device("allow_in = [ { from = \"any\", proto = \"tcp\", port = \"90-80\" } ]"),
                "reversed",
            ),
            (
                device("allow_in = [ { from = \"any\", proto = \"tcp\", port = \"http\" } ]"),
                "is not a port",
            ),
            (device("allow_in = [ { from = \"any\", port = 80 } ]"), "need a proto"),
            (device("rate_limit = { packets_per_second = 0 }"), "would drop everything"),
            (device("rate_limit = { packets = 10 }"), "unknown field"),
            (format!("[settings.scan_detection]\ntargets = 1\n{VLAN}"), "use 2 or more"),
            (format!("[settings.scan_detection]\nwindow = \"soon\"\n{VLAN}"), "not a duration"),
            (format!("[settings.flow_timeouts]\nudp = \"0s\"\n{VLAN}"), "outside 1 second"),
            (format!("[settings]\nmanagement = [\"any\"]\n{VLAN}"), "quarantine mean nothing"),
            (format!("[settings]\nmanagement = [\"ghosts\"]\n{VLAN}"), "neither \"any\""),
            (
                device("allow_in = [ { from = \"any\", proto = \"icmp\", port = 80 } ]"),
                "icmp has no ports",
            ),
            (
                device("allow_in = [ { from = \"any\", proto = \"tcp\", icmp_type = 8 } ]"),
                "icmp_type needs",
            ),
            (
                format!("{VLAN}[[device]]\nname = \"p\"\nvlan = 120\nip = [\"10.110.0.7\"]\n"),
                "vlan 120 is not declared",
            ),
            (
                format!("{VLAN}[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.120.0.7\"]\n"),
                "not in any subnet",
            ),
            (
                format!(
                    "{}[[device]]\nname = \"q\"\nvlan = 110\nip = [\"10.110.0.7\"]\n",
                    device("")
                ),
                "already used by device \"p\"",
            ),
            (
                format!(
                    "{}[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.110.0.8\"]\n",
                    device("")
                ),
                "declared twice",
            ),
            (format!("{VLAN}[peers]\nempty = []\n"), "is empty"),
            (
                format!("{VLAN}[[interface]]\nname = \"eth1\"\nuntagged_vlan = 7\n"),
                "untagged_vlan 7",
            ),
        ];
        for (text, expected) in cases {
            let msg = error(&text);
            assert!(msg.contains(expected), "expected {expected:?} in {msg:?} for\n{text}");
        }
    }

    #[test]
    fn source_ports_for_tcp_and_udp() {
        let text = device(
            "allow_in = [ { from = \"any\", proto = \"udp\", port = 514, sport = \"1024-65535\" }, \
             { from = \"any\", proto = \"tcp\", sport = 20 } ]",
        );
        let r = Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        let rules = &r.devices[0].allow_in;
        assert_eq!(rules[0].sport, (1024, 65535));
        assert_eq!(rules[0].l4, L4::Ports { proto: 17, lo: 514, hi: 514 });
        assert_eq!((rules[1].sport, rules[1].l4), ((20, 20), L4::Proto(6)));
        for (bad, why) in [
            ("{ from = \"any\", proto = \"icmp\", sport = 5 }", "sport needs proto tcp or udp"),
            ("{ from = \"any\", sport = 5 }", "sport needs proto tcp or udp"),
            ("{ from = \"any\", proto = \"udp\", sport = \"9-1\" }", "reversed"),
        ] {
            let err = Policy::from_toml(&device(&format!("allow_in = [ {bad} ]")))
                .expect("parses")
                .resolve()
                .expect_err(bad)
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn any_ip_protocol_by_name_or_number() {
        let text = device(
            "allow_in = [ { from = \"any\", proto = \"igmp\" }, { from = \"any\", proto = 47 }, \
             { from = \"any\", proto = \"132\" }, { from = \"any\", proto = 6 } ]",
        );
        let r = Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        let l4: Vec<L4> = r.devices[0].allow_in.iter().map(|r| r.l4).collect();
        assert_eq!(l4, [L4::Proto(2), L4::Proto(47), L4::Proto(132), L4::Proto(6)]);
        assert_eq!(Proto::Other(47).to_string(), "gre");
        assert_eq!(Proto::Other(253).to_string(), "253");
        assert_eq!("17".parse::<Proto>(), Ok(Proto::Udp), "a number names the protocol");
    }

    #[test]
    fn peers_accept_sets_cidrs_addresses_and_any() {
        let text = format!(
            "{VLAN}[peers]\nnurses = [\"10.30.0.0/16\"]\n{}",
            &device(
                "allow_in = [ { from = \"nurses\" }, { from = \"10.9.9.9\" }, { from = \"10.8.0.1/16\" }, { from = \"any\" } ]"
            )[VLAN.len()..]
        );
        let r = Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        let peers: Vec<&Peer> = r.devices[0].allow_in.iter().map(|r| &r.peer).collect();
        assert_eq!(peers[0], &Peer::Nets(vec!["10.30.0.0/16".parse().expect("net")]));
        assert_eq!(peers[1], &Peer::Nets(vec!["10.9.9.9/32".parse().expect("net")]));
        assert_eq!(
            peers[2],
            &Peer::Nets(vec!["10.8.0.0/16".parse().expect("net")]),
            "host bits are cleared"
        );
        assert_eq!(peers[3], &Peer::Any);
    }

    /// `within` keeps the part of the peer inside a network: one address
    /// family of a set or name, `any` as that network, a set cut to a MUD
    /// entry's address; nothing left is a rule that matches nothing.
    #[test]
    fn within_keeps_the_part_of_the_peer_inside_a_network() {
        let text = format!(
            "{VLAN}[peers]\nmixed = [\"10.30.0.0/16\", \"2001:db8:30::/48\", \"10.40.1.0/24\"]\n[hosts]\n\"both.lab.test\" = [\"10.20.1.5\", \"2001:db8:20::5\"]\n{}",
            &device(
                "allow_in = [ { from = \"mixed\", within = \"::/0\" }, \
                 { from = \"any\", within = \"0.0.0.0/0\" }, \
                 { from = \"mixed\", within = \"10.30.7.0/24\" }, \
                 { from = \"mixed\", within = \"10.0.0.0/8\" }, \
                 { from = \"both.lab.test\", within = \"::/0\" }, \
                 { from = \"mixed\", within = \"192.0.2.0/24\" } ]"
            )[VLAN.len()..]
        );
        let r = Policy::from_toml(&text).expect("parses").resolve().expect("valid");
        let nets = |i: usize| match &r.devices[0].allow_in[i].peer {
            Peer::Nets(n) => n.iter().map(ToString::to_string).collect::<Vec<_>>(),
            Peer::Any => vec!["any".into()],
        };
        assert_eq!(nets(0), ["2001:db8:30::/48"]);
        assert_eq!(nets(1), ["0.0.0.0/0"]);
        assert_eq!(nets(2), ["10.30.7.0/24"], "cut down to the network inside");
        assert_eq!(nets(3), ["10.30.0.0/16", "10.40.1.0/24"]);
        assert_eq!(nets(4), ["2001:db8:20::5/128"]);
        assert!(nets(5).is_empty(), "nothing in common: matches nothing");
        let err = Policy::from_toml(&device("allow_in = [ { from = \"any\", within = \"v6\" } ]"))
            .expect("parses")
            .resolve()
            .expect_err("not a network")
            .to_string();
        assert!(err.contains("within \"v6\" is not a network"), "{err}");
    }

    #[test]
    fn dns_names_come_from_hosts_or_the_resolver_and_never_default_open() {
        let rules = "allow_out = [ { to = \"ntp.lab.test\", proto = \"udp\", port = 123 }, \
                     { to = \"updates.lab.test\", proto = \"tcp\", port = 443 } ]";
        let body = &device(rules)[VLAN.len()..];
        let fixed = format!("{VLAN}[hosts]\n\"ntp.lab.test\" = [\"10.20.1.123\"]\n{body}");
        let mut p = Policy::from_toml(&fixed).expect("parses");
        // Only the name [hosts] does not fix needs a resolver.
        assert_eq!(p.dns_names(), ["updates.lab.test"]);
        let e = p.resolve().expect_err("unresolved name");
        assert!(e.to_string().contains("\"updates.lab.test\" has no addresses"), "{e}");

        p.names.insert("updates.lab.test".into(), vec!["10.20.5.10".parse().expect("addr")]);
        let r = p.resolve().expect("valid once resolved");
        let peers: Vec<&Peer> = r.devices[0].allow_out.iter().map(|r| &r.peer).collect();
        assert_eq!(peers[0], &Peer::Nets(vec!["10.20.1.123/32".parse().expect("net")]));
        assert_eq!(peers[1], &Peer::Nets(vec!["10.20.5.10/32".parse().expect("net")]));
        // What was resolved is kept for `status`; [hosts] entries are not.
        assert_eq!(r.names.keys().collect::<Vec<_>>(), ["updates.lab.test"]);
        assert_eq!(r.dns_refresh_secs, DEFAULT_DNS_REFRESH_SECS);

        for (bad, why) in [
            (format!("{VLAN}[hosts]\n\"not_a_name\" = [\"10.0.0.1\"]\n"), "is not a DNS name"),
            (format!("{VLAN}[hosts]\n\"a.lab.test\" = []\n"), "list its addresses"),
            (format!("[settings]\ndns_refresh = \"soon\"\n{VLAN}"), "not a duration"),
        ] {
            let e = Policy::from_toml(&bad).expect("parses").resolve().expect_err(why);
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn shipped_example_policy_is_valid() {
        let text = include_str!("../../../examples/hospital.toml");
        let r = Policy::from_toml(text).expect("parses").resolve().expect("valid");
        assert_eq!(r.devices.len(), 5);
        assert!(r.allow_arp && r.allow_ndp && r.allow_dhcp);
        assert!(r.interfaces.is_empty());
    }
}

#[cfg(test)]
mod location_tests {
    use std::path::Path;

    use super::*;

    fn rendered(text: &str) -> String {
        let e = Policy::from_toml(text).and_then(|p| p.resolve()).expect_err("invalid");
        e.render(Path::new("site.toml"), text)
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let vlan = "[[vlan]]\nid = 110\nname = \"pumps\"\nsubnets = [\"10.110.0.0/24\"]\n";
        let text = format!(
            "{vlan}\n[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.110.0.7\"]\n\
             allow_in = [ {{ from = \"any\", proto = \"tcp\", port = 22 }},\n    {{ from = \"nobody\" }} ]\n"
        );
        assert_eq!(
            rendered(&text),
            "site.toml:11:5: device \"p\" allow_in rule 2: peer \"nobody\" is neither \"any\", \
             an address, a CIDR, a set declared under [peers] nor a DNS name"
        );
        let text = format!("{vlan}\n[[device]]\nname = \"p\"\nvlan = 110\nip = [\"10.120.0.7\"]\n");
        assert!(
            rendered(&text).starts_with("site.toml:6:1: device \"p\": ip 10.120.0.7"),
            "{}",
            rendered(&text)
        );
        let text = format!("{vlan}[peers]\nnobody = []\n");
        assert!(
            rendered(&text).starts_with("site.toml:6:10: peer set \"nobody\": is empty"),
            "{}",
            rendered(&text)
        );
        let syntax = rendered("[[vlan]]\nid = \"x\"\n");
        assert!(syntax.starts_with("site.toml: TOML parse error at line 2, column 6"), "{syntax}");
    }
}
