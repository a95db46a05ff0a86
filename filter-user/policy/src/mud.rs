//! Manufacturer Usage Descriptions (RFC 8520, with the ACL model of RFC
//! 8519) turned into a profile's rules.
//!
//! A MUD file lists access-control entries (ACEs) for packets from the
//! device (`from-device-policy`) and to it (`to-device-policy`). vlanguard
//! rules are per direction of the connection's opening, with replies let
//! through by flow tracking, and match the peer, the protocol and the
//! destination port. So:
//!
//! - an ACE for packets the device sends to a peer's port (from-device,
//!   `destination-port`) becomes `allow_out`; one for packets a peer sends
//!   to the device's port (to-device, `destination-port`) becomes
//!   `allow_in`; protocol-only and ICMP ACEs likewise by their side;
//! - an ACE for the other half of such a connection (the reply: a
//!   `source-port` only, or `direction-initiated` naming the other side) is
//!   covered by the flow the first half opens;
//! - `direction-initiated` is enforced by that split: only the named side's
//!   rule exists, so only it may open the connection;
//! - what cannot be enforced exactly is either stricter (a reply half with
//!   no ACE that opens its flow; a TCP ACE without `direction-initiated`,
//!   which vlanguard lets only one side open) — reported, imported only
//!   with `--accept-stricter` — or looser (a source-port match on the
//!   opening half, an ICMP code, a drop action, other match fields), which
//!   is refused.

use std::{collections::BTreeMap, fmt};

use filter_common::ipproto::{DSTOPTS, FRAGMENT, HOPOPTS, ICMP, ICMPV6, ROUTING, TCP, UDP};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::edit::{Direction, RuleSpec};

/// Which way an ACE's packets go, or which side opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    FromDevice,
    ToDevice,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::FromDevice => Side::ToDevice,
            Side::ToDevice => Side::FromDevice,
        }
    }
}

/// RFC 8520's names for peers the local network defines.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Abstraction {
    Manufacturer(String),
    SameManufacturer,
    Model(String),
    LocalNetworks,
    Controller(String),
    MyController,
}

impl fmt::Display for Abstraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abstraction::Manufacturer(m) => write!(f, "manufacturer:{m}"),
            Abstraction::SameManufacturer => f.write_str("same-manufacturer"),
            Abstraction::Model(m) => write!(f, "model:{m}"),
            Abstraction::LocalNetworks => f.write_str("local-networks"),
            Abstraction::Controller(c) => write!(f, "controller:{c}"),
            Abstraction::MyController => f.write_str("my-controller"),
        }
    }
}

impl std::str::FromStr for Abstraction {
    type Err = String;
    /// The `--abstraction` key: `local-networks`, `same-manufacturer`,
    /// `my-controller`, `controller:URI`, `manufacturer:NAME`, `model:URI`.
    fn from_str(s: &str) -> Result<Abstraction, String> {
        Ok(match s.split_once(':') {
            None | Some(("https" | "http", _)) => match s {
                "local-networks" => Abstraction::LocalNetworks,
                "same-manufacturer" => Abstraction::SameManufacturer,
                "my-controller" => Abstraction::MyController,
                _ => return Err(format!("unknown MUD abstraction {s:?}")),
            },
            Some(("controller", uri)) => Abstraction::Controller(uri.into()),
            Some(("manufacturer", name)) => Abstraction::Manufacturer(name.into()),
            Some(("model", uri)) => Abstraction::Model(uri.into()),
            Some(_) => return Err(format!("unknown MUD abstraction {s:?}")),
        })
    }
}

/// The other end of an ACE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRef {
    Any,
    Net(IpNet),
    Name(String),
    Abstraction(Abstraction),
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRef::Any => f.write_str("any address"),
            PeerRef::Net(n) => write!(f, "{n}"),
            PeerRef::Name(n) => write!(f, "{n} (DNS name)"),
            PeerRef::Abstraction(a) => write!(f, "{a} (MUD abstraction)"),
        }
    }
}

/// An inclusive port range.
type Ports = (u16, u16);

/// One ACE, as far as vlanguard reads it.
#[derive(Clone, Debug)]
pub struct Ace {
    pub name: String,
    /// The policy list it is in: packets from or to the device.
    pub side: Side,
    pub peer: PeerRef,
    /// A network the peer must also lie in: the ACE's address match next
    /// to a name or an abstraction (RFC 8519 matches are a conjunction),
    /// else its ACL's address family as `0.0.0.0/0` or `::/0`.
    pub within: Option<IpNet>,
    pub proto: Option<u8>,
    pub src_ports: Option<Vec<Ports>>,
    pub dst_ports: Option<Vec<Ports>>,
    pub icmp_type: Option<u8>,
    pub initiated: Option<Side>,
}

/// A MUD file's header and ACEs, and what reading it found.
#[derive(Clone, Debug, Default)]
pub struct Mud {
    pub url: String,
    pub systeminfo: Option<String>,
    pub last_update: Option<String>,
    pub aces: Vec<Ace>,
    /// ACLs and ACEs left out because vlanguard enforces them more
    /// strictly anyway (Ethernet matches): (where, why).
    pub stricter: Vec<(String, String)>,
    /// What was read by a lenient rule (a host address without a prefix
    /// length): (where, what).
    pub warnings: Vec<(String, String)>,
    /// What cannot be enforced as written, every one of the file.
    pub errors: Vec<String>,
}

/// What importing yields: rules, the ACEs flows cover, and what is
/// enforced more strictly than the file says.
#[derive(Clone, Debug, Default)]
pub struct Conversion {
    /// (direction, rule, the ACE it came from).
    pub rules: Vec<(Direction, RuleSpec, String)>,
    /// ACE name -> why flow tracking covers it.
    pub covered: Vec<(String, String)>,
    /// ACE (or ACL) name -> how vlanguard is stricter.
    pub stricter: Vec<(String, String)>,
    /// ACE name of a rule whose answers the file lists no ACE for: flow
    /// tracking lets them in anyway (stateful, as every firewall).
    pub replies_by_flow: Vec<String>,
    /// (where, what) read leniently.
    pub warnings: Vec<(String, String)>,
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    field(v, key)?.as_str()
}

/// RFC 8520 names the ACL container "ietf-access-control-list:acls"; some
/// generators write "...:access-lists".
const ACL_CONTAINERS: [&str; 2] =
    ["ietf-access-control-list:acls", "ietf-access-control-list:access-lists"];

/// Parses a MUD file. A file that is no MUD file at all is an error; what
/// vlanguard cannot enforce is collected in `Mud::errors`, all of it in one
/// run, each naming its ACL and ACE or JSON path.
pub fn parse(json: &str) -> Result<Mud, Vec<String>> {
    let root: Value = serde_json::from_str(json).map_err(|e| vec![format!("not JSON: {e}")])?;
    let mud = field(&root, "ietf-mud:mud")
        .ok_or_else(|| vec!["no \"ietf-mud:mud\" container: not a MUD file".to_string()])?;
    let url = text(mud, "mud-url")
        .ok_or_else(|| vec!["ietf-mud:mud: no \"mud-url\"".to_string()])?
        .to_string();
    let mut out = Mud {
        url,
        systeminfo: text(mud, "systeminfo").map(Into::into),
        last_update: text(mud, "last-update").map(Into::into),
        ..Mud::default()
    };
    let by_name = acls_by_name(&root, &mut out.errors);
    let mut policies = 0;
    for (policy, side) in
        [("from-device-policy", Side::FromDevice), ("to-device-policy", Side::ToDevice)]
    {
        // Some generators prefix the key with the module name.
        let prefixed = format!("ietf-mud:{policy}");
        let Some((key, p)) =
            [policy, prefixed.as_str()].into_iter().find_map(|k| Some((k, field(mud, k)?)))
        else {
            continue;
        };
        policies += 1;
        let path = format!("ietf-mud:mud.{key}.access-lists.access-list");
        let Some(list) = field(p, "access-lists")
            .and_then(|l| field(l, "access-list"))
            .and_then(Value::as_array)
        else {
            out.errors.push(format!("{path}: missing (the ACLs the device's packets must match)"));
            continue;
        };
        for (i, entry) in list.iter().enumerate() {
            read_policy_entry(&mut out, &by_name, key, &path, i, entry, side);
        }
    }
    if policies == 0 {
        out.warnings.push((
            "ietf-mud:mud".into(),
            "no from-device-policy or to-device-policy: the file lets the device send and \
             receive nothing"
                .into(),
        ));
    }
    Ok(out)
}

/// The ACLs by name. RFC 8520 keeps them in their own container, referred
/// to by name from the policies. A file with no container may still hold
/// ACLs inside its policy entries (osMUD's tools write them so).
fn acls_by_name<'a>(root: &'a Value, errors: &mut Vec<String>) -> BTreeMap<&'a str, &'a Value> {
    let mut by_name = BTreeMap::new();
    if let Some((container, acls)) = ACL_CONTAINERS.iter().find_map(|k| Some((*k, field(root, k)?)))
    {
        match field(acls, "acl").and_then(Value::as_array) {
            Some(list) => {
                for (i, acl) in list.iter().enumerate() {
                    match text(acl, "name") {
                        Some(name) => {
                            by_name.insert(name, acl);
                        }
                        None => errors.push(format!("{container}.acl[{i}]: no \"name\"")),
                    }
                }
            }
            None => errors.push(format!("{container}: no \"acl\" list")),
        }
    }
    by_name
}

/// Entry `i` of a policy's access list (at `path`): the ACL it names, read.
fn read_policy_entry(
    out: &mut Mud,
    by_name: &BTreeMap<&str, &Value>,
    key: &str,
    path: &str,
    i: usize,
    entry: &Value,
    side: Side,
) {
    let Some(name) = text(entry, "name") else {
        let draft = if field(entry, "acl-name").is_some() {
            " (\"acl-name\" is the pre-RFC draft's; RFC 8520 says \"name\")"
        } else {
            ""
        };
        out.errors.push(format!("{path}[{i}]: no \"name\"{draft}"));
        return;
    };
    let acl = match by_name.get(name) {
        Some(acl) => *acl,
        // The ACL itself, written inside the policy.
        None if field(entry, "aces").is_some() => {
            out.warnings.push((
                format!("ACL {name}"),
                format!("written inside {key}, not in the ACL container RFC 8520 names"),
            ));
            entry
        }
        None => {
            out.errors.push(format!("{key} names ACL {name:?}, which the file does not hold"));
            return;
        }
    };
    read_acl(out, acl, name, side);
}

/// One ACL's ACEs into `out` (its errors and stricter entries too).
fn read_acl(out: &mut Mud, acl: &Value, name: &str, side: Side) {
    let within = match text(acl, "type") {
        Some("ipv4-acl-type") => Some(family(true)),
        Some("ipv6-acl-type") => Some(family(false)),
        // An unnamed type: the ACEs' own ipv4/ipv6 matches say it.
        None => None,
        Some(t @ ("eth-acl-type" | "ethernet-acl-type")) => {
            out.stricter.push((
                format!("ACL {name}"),
                format!(
                    "{t}: Ethernet matches (ethertypes, MAC addresses) are left out; vlanguard \
                     drops non-IP frames on protected VLANs, so they stay blocked"
                ),
            ));
            return;
        }
        Some(other) => {
            out.errors.push(format!(
                "ACL {name}: type {other} is not supported (ipv4-acl-type, ipv6-acl-type, \
                 eth-acl-type)"
            ));
            return;
        }
    };
    let Some(list) = field(acl, "aces").and_then(|a| field(a, "ace")).and_then(Value::as_array)
    else {
        let draft = if field(acl, "access-list-entries").is_some() {
            " (\"access-list-entries\" is the pre-RFC draft's; RFC 8519 says \"aces\")"
        } else {
            ""
        };
        out.errors.push(format!("ACL {name}: no \"aces\".\"ace\" list{draft}"));
        return;
    };
    for ace in list {
        let where_ = format!("ACL {name}, ACE {}", text(ace, "name").unwrap_or("(unnamed)"));
        match parse_ace(ace, side, within) {
            Ok(Read::Ace(a, warning)) => {
                if let Some(w) = warning {
                    out.warnings.push((where_, w));
                }
                out.aces.push(a);
            }
            Ok(Read::Stricter(why)) => out.stricter.push((where_, why)),
            Err(e) => out.errors.push(format!("{where_}: {e}")),
        }
    }
}

/// What one ACE is for vlanguard.
enum Read {
    /// An ACE to convert, with a warning about how it was read.
    Ace(Ace, Option<String>),
    /// An ACE left out: vlanguard enforces it more strictly anyway.
    Stricter(String),
}

/// A whole address family: `0.0.0.0/0` or `::/0`.
fn family(v4: bool) -> IpNet {
    if v4 { "0.0.0.0/0" } else { "::/0" }.parse().expect("a network")
}

/// The peer constraints of one ACE before they are combined.
#[derive(Default)]
struct PeerParts {
    net: Option<IpNet>,
    name: Option<String>,
    abstraction: Option<Abstraction>,
}

fn parse_ace(ace: &Value, side: Side, acl_family: Option<IpNet>) -> Result<Read, String> {
    let name = text(ace, "name").unwrap_or("(unnamed)").to_string();
    let warning = accepted(ace)?;
    let matches = field(ace, "matches").and_then(Value::as_object).ok_or("no matches")?;
    if matches.contains_key("eth") {
        return Ok(Read::Stricter(
            "also matches Ethernet fields (ethertype, MAC addresses), which vlanguard does not \
             match: the entry is left out, which lets less through (DHCP is infrastructure, \
             `[settings] allow_dhcp`; non-IP frames stay dropped on protected VLANs)"
                .into(),
        ));
    }
    let mut reader = AceReader {
        out: Ace {
            name,
            side,
            peer: PeerRef::Any,
            within: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            icmp_type: None,
            initiated: None,
        },
        parts: PeerParts::default(),
        family: acl_family,
        icmp_code: None,
        warning,
    };
    for (key, m) in matches {
        match key.as_str() {
            "ipv4" | "ipv6" | "l3" => reader.ip_match(key, m)?,
            "tcp" | "udp" => reader.port_match(key, m)?,
            "icmp" => reader.icmp_match(m)?,
            "ietf-mud:mud" => reader.parts.abstraction = Some(mud_match(m)?),
            other => return Err(format!("{other} matches are not supported")),
        }
    }
    reader.finish()
}

/// `None` when the entry's action is accept, a warning when it is accept
/// spelled otherwise; any other action is refused.
fn accepted(ace: &Value) -> Result<Option<String>, String> {
    match field(ace, "actions").and_then(|a| text(a, "forwarding")) {
        Some("accept" | "ietf-access-control-list:accept") => Ok(None),
        // YANG's identity is lowercase; "ACCEPT" means the same.
        Some(a) if a.eq_ignore_ascii_case("accept") => {
            Ok(Some(format!("action {a:?} read as accept")))
        }
        other => Err(format!(
            "action {} is not supported: vlanguard imports allow rules (accept) only",
            other.unwrap_or("(none)")
        )),
    }
}

/// One ACE as its matches are read.
struct AceReader {
    out: Ace,
    parts: PeerParts,
    /// The address family the ACL or the entry's own match asks for.
    family: Option<IpNet>,
    icmp_code: Option<u8>,
    warning: Option<String>,
}

impl AceReader {
    /// An `ipv4`, `ipv6` or `l3` match: protocol, the peer's network or
    /// DNS name.
    fn ip_match(&mut self, key: &str, m: &Value) -> Result<(), String> {
        // The peer is the destination of packets from the device, the
        // source of packets to it.
        let (peer_net, peer_dns, other_net, other_dns) = match self.out.side {
            Side::FromDevice => ("destination", "dst-dnsname", "source", "src-dnsname"),
            Side::ToDevice => ("source", "src-dnsname", "destination", "dst-dnsname"),
        };
        if key != "l3" {
            let this = family(key == "ipv4");
            // An entry that asks for both families, or for the other
            // family than its ACL's, matches nothing.
            if self.family.is_some_and(|f| f != this) {
                return Err(format!(
                    "an {key} match where the ACL or the entry is of the other address \
                     family: the entry matches nothing as written"
                ));
            }
            self.family = Some(this);
        }
        let obj = m.as_object().ok_or("ip match is not an object")?;
        for (k, v) in obj {
            let k = k.strip_prefix("ietf-acldns:").unwrap_or(k);
            match k {
                "protocol" => self.out.proto = Some(number(v, "protocol")?),
                _ if k == format!("{peer_net}-ipv4-network")
                    || k == format!("{peer_net}-ipv6-network") =>
                {
                    let net = self.network(k, v)?;
                    if self.parts.net.replace(net.trunc()).is_some() {
                        return Err("two address matches in one entry".into());
                    }
                }
                _ if k == peer_dns => {
                    let s = v.as_str().ok_or("DNS name is not a string")?;
                    self.parts.name = Some(s.to_string());
                }
                _ if k == other_dns
                    || k == format!("{other_net}-ipv4-network")
                    || k == format!("{other_net}-ipv6-network") =>
                {
                    return Err(format!(
                        "{k} names the device's own end; vlanguard matches the device by its inventory addresses, not by this"
                    ));
                }
                _ => return Err(format!("{key} match {k} is not supported")),
            }
        }
        Ok(())
    }

    /// The network of match `k`; a bare address (RFC 8519 wants a prefix,
    /// generators write host addresses too) with a warning.
    fn network(&mut self, k: &str, v: &Value) -> Result<IpNet, String> {
        let s = v.as_str().ok_or("network is not a string")?;
        match s.parse::<IpNet>() {
            Ok(n) => Ok(n),
            Err(_) => match s.parse::<std::net::IpAddr>() {
                Ok(addr) => {
                    self.warning = Some(format!(
                        "{k} {s:?} has no prefix length: read as {}",
                        IpNet::from(addr)
                    ));
                    Ok(IpNet::from(addr))
                }
                Err(_) => Err(format!("{k}: {s:?} is not a network")),
            },
        }
    }

    /// A `tcp` or `udp` match: ports and who initiates.
    fn port_match(&mut self, key: &str, m: &Value) -> Result<(), String> {
        let proto = if key == "tcp" { TCP } else { UDP };
        if self.out.proto.is_some_and(|p| p != proto) {
            return Err(format!("{key} match with protocol {:?}", self.out.proto));
        }
        self.out.proto = Some(proto);
        let obj = m.as_object().ok_or("port match is not an object")?;
        for (k, v) in obj {
            match k.as_str() {
                "source-port" => self.out.src_ports = Some(ports(v)?),
                "destination-port" => self.out.dst_ports = Some(ports(v)?),
                "ietf-mud:direction-initiated" => {
                    self.out.initiated = Some(match v.as_str() {
                        Some("from-device") => Side::FromDevice,
                        Some("to-device") => Side::ToDevice,
                        _ => return Err(format!("direction-initiated {v}")),
                    })
                }
                other => return Err(format!("{key} match {other} is not supported")),
            }
        }
        Ok(())
    }

    fn icmp_match(&mut self, m: &Value) -> Result<(), String> {
        let obj = m.as_object().ok_or("icmp match is not an object")?;
        for (k, v) in obj {
            match k.as_str() {
                "type" => self.out.icmp_type = Some(number(v, "icmp type")?),
                "code" => self.icmp_code = Some(number::<u8>(v, "icmp code")?),
                other => return Err(format!("icmp match {other} is not supported")),
            }
        }
        Ok(())
    }

    /// The entry once every match is read: ICMP checked, the peer made of
    /// its parts.
    fn finish(mut self) -> Result<Read, String> {
        let out = &mut self.out;
        if out.icmp_type.is_some() && out.proto.is_none() {
            return Err("an icmp match without protocol 1 or 58".into());
        }
        if let Some(code) = self.icmp_code {
            // Echo request and reply have only code 0: matching the type
            // alone is exact. Elsewhere the type would let every code
            // through.
            let echo = matches!(
                (out.proto, out.icmp_type),
                (Some(ICMP), Some(0 | 8)) | (Some(ICMPV6), Some(128 | 129))
            );
            if !(echo && code == 0) {
                return Err(format!(
                    "ICMP type {} code {code}: vlanguard matches the ICMP type only, which would \
                     let every code of that type through",
                    out.icmp_type.map_or("(any)".into(), |t| t.to_string())
                ));
            }
        }
        // RFC 8519: every match of an entry must hold. A name or an
        // abstraction with an address match is the part of the one inside
        // the other.
        let mut parts = self.parts;
        out.peer = match (parts.name, parts.abstraction) {
            (Some(n), Some(a)) => {
                return Err(format!(
                    "matches both the DNS name {n} and the MUD abstraction {a}: a vlanguard rule \
                     names one peer, and either alone would let more through than the entry"
                ));
            }
            (Some(n), None) => PeerRef::Name(n),
            (None, Some(a)) => PeerRef::Abstraction(a),
            (None, None) => match parts.net.take() {
                Some(net) => PeerRef::Net(net),
                None => PeerRef::Any,
            },
        };
        if let (PeerRef::Net(n), Some(f)) = (&out.peer, self.family)
            && !f.contains(n)
        {
            return Err(format!("network {n} is not of its ACL's address family"));
        }
        out.within = match (&out.peer, parts.net) {
            (PeerRef::Net(_), _) => None,
            (_, Some(net)) => Some(net),
            (_, None) => self.family,
        };
        Ok(Read::Ace(self.out, self.warning))
    }
}

/// An `ietf-mud:mud` match: the one abstraction it names.
fn mud_match(m: &Value) -> Result<Abstraction, String> {
    let obj = m.as_object().ok_or("mud match is not an object")?;
    if obj.len() != 1 {
        return Err("a mud match must name one abstraction".into());
    }
    let (k, v) = obj.iter().next().expect("one entry");
    Ok(match k.as_str() {
        "manufacturer" => Abstraction::Manufacturer(string(v, k)?),
        "same-manufacturer" => Abstraction::SameManufacturer,
        "model" => Abstraction::Model(string(v, k)?),
        "local-networks" => Abstraction::LocalNetworks,
        "controller" => Abstraction::Controller(string(v, k)?),
        "my-controller" => Abstraction::MyController,
        other => return Err(format!("MUD abstraction {other} is not supported")),
    })
}

fn number<T: TryFrom<u64>>(v: &Value, what: &str) -> Result<T, String> {
    v.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| format!("{what} {v} is not valid"))
}

fn string(v: &Value, what: &str) -> Result<String, String> {
    v.as_str().map(Into::into).ok_or_else(|| format!("{what} is not a string"))
}

/// RFC 8519 port matches: `operator` eq/lte/gte/neq with `port`, or
/// `lower-port`/`upper-port`; `neq` becomes the two ranges around it.
fn ports(v: &Value) -> Result<Vec<Ports>, String> {
    let port = |k: &str| number::<u16>(field(v, k).unwrap_or(&Value::Null), k);
    if field(v, "lower-port").is_some() {
        let (lo, hi) = (port("lower-port")?, port("upper-port")?);
        if lo > hi {
            return Err(format!("port range {lo}-{hi} is empty"));
        }
        return Ok(vec![(lo, hi)]);
    }
    let p = port("port")?;
    Ok(match text(v, "operator").unwrap_or("eq") {
        "eq" => vec![(p, p)],
        "lte" => vec![(0, p)],
        "gte" => vec![(p, u16::MAX)],
        "neq" => {
            let mut v = Vec::new();
            if p > 0 {
                v.push((0, p - 1));
            }
            if p < u16::MAX {
                v.push((p + 1, u16::MAX));
            }
            v
        }
        other => return Err(format!("port operator {other} is not supported")),
    })
}

/// The rule's `proto` for an IP protocol number. IPv6 extension headers
/// are no transport protocol: an entry naming one is refused.
fn proto_name(p: u8) -> Result<String, String> {
    Ok(match p {
        HOPOPTS | ROUTING | FRAGMENT | DSTOPTS | 135 | 139 | 140 => {
            return Err(format!(
                "protocol {p} is an IPv6 extension header ({}), not a transport protocol: an \
                 entry that names it matches nothing a firewall sees as a protocol (a known \
                 artefact of profile generators); remove the entry",
                match p {
                    0 => "hop-by-hop options",
                    43 => "routing",
                    44 => "fragment",
                    60 => "destination options",
                    _ => "mobility or HIP or shim6",
                }
            ));
        }
        other => crate::policy::proto_name(other),
    })
}

fn port_text((lo, hi): Ports) -> String {
    if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }
}

/// The entries for the other half of `a`'s connections: the other side,
/// the same peer and protocol.
fn other_halves<'a>(a: &'a Ace, all: &'a [Ace]) -> impl Iterator<Item = &'a Ace> {
    all.iter().filter(|b| b.side == a.side.other() && b.peer == a.peer && b.proto == a.proto)
}

/// Whether `a` (a reply half with source ports) has an opening half on the
/// other side: destination ports equal to `a`'s source ports.
fn has_opener(a: &Ace, all: &[Ace]) -> bool {
    other_halves(a, all).any(|b| b.dst_ports.is_some() && b.dst_ports == a.src_ports)
}

/// Whether `a` is an echo reply that the file's echo request on the other
/// side opens.
fn has_opener_echo(a: &Ace, all: &[Ace]) -> bool {
    let request = match (a.proto, a.icmp_type) {
        (Some(ICMP), Some(0)) => 8,
        (Some(ICMPV6), Some(129)) => 128,
        _ => return false,
    };
    other_halves(a, all).any(|b| b.icmp_type == Some(request))
}

/// Whether the file lists the answers of `a` (an opening half): an entry
/// for the other half whose source ports are `a`'s destination ports (or,
/// for ICMP echo, the matching reply type).
fn has_reply(a: &Ace, all: &[Ace]) -> bool {
    other_halves(a, all).any(|b| match (a.proto, a.icmp_type) {
        (Some(TCP | UDP), _) => b.src_ports.is_some() && b.src_ports == a.dst_ports,
        (Some(ICMP), Some(8)) => b.icmp_type == Some(0),
        (Some(ICMPV6), Some(128)) => b.icmp_type == Some(129),
        _ => false,
    })
}

/// The rules of `mud`, with abstractions named by `peers` (abstraction ->
/// `[peers]` set). Errors: what vlanguard cannot enforce without letting
/// more through than the file allows, and unmapped abstractions — with the
/// errors reading the file found, all at once.
pub fn convert(
    mud: &Mud,
    peers: &BTreeMap<Abstraction, String>,
) -> Result<Conversion, Vec<String>> {
    let mut out = Conversion {
        stricter: mud.stricter.clone(),
        warnings: mud.warnings.clone(),
        ..Conversion::default()
    };
    let mut errors = mud.errors.clone();
    let mut unmapped: BTreeMap<Abstraction, Vec<String>> = BTreeMap::new();
    for a in &mud.aces {
        let peer = match &a.peer {
            PeerRef::Any => "any".to_string(),
            PeerRef::Net(n) => n.to_string(),
            PeerRef::Name(n) => n.clone(),
            PeerRef::Abstraction(x) => match peers.get(x) {
                Some(set) => set.clone(),
                None => {
                    unmapped.entry(x.clone()).or_default().push(a.name.clone());
                    continue;
                }
            },
        };
        let proto = match a.proto.map(proto_name).transpose() {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("ACE {}: {e}", a.name));
                continue;
            }
        };
        if opening(a, &mud.aces) {
            out.add_opening(a, &mud.aces, &peer, proto);
        } else {
            out.add_reply_half(a, &mud.aces);
        }
    }
    for (x, aces) in unmapped {
        errors.push(format!(
            "MUD abstraction {x} (ACE {}) is not mapped to a peer set: --abstraction '{x}=SET', SET declared under [peers]",
            aces.join(", ")
        ));
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Whether the ACE's packets are the opening half of a connection (a
/// rule) or the reply (the flow covers it).
fn opening(a: &Ace, aces: &[Ace]) -> bool {
    match (a.initiated, matches!(a.proto, Some(TCP | UDP))) {
        (Some(by), true) => by == a.side,
        // UDP, or TCP without direction-initiated: by the ports.
        (None, true) => a.dst_ports.is_some() || a.src_ports.is_none(),
        // An echo reply is the answer of its request, if the file has one.
        (_, false) => !has_opener_echo(a, aces),
    }
}

impl Conversion {
    /// An ACE for the reply half of a flow: covered by the flow another ACE
    /// opens, or (none opens it) left out, which is stricter.
    fn add_reply_half(&mut self, a: &Ace, aces: &[Ace]) {
        if a.initiated.is_some() || has_opener(a, aces) || has_opener_echo(a, aces) {
            self.covered.push((
                a.name.clone(),
                "the reply half of a flow another ACE opens; flow tracking lets it through".into(),
            ));
        } else {
            self.stricter.push((a.name.clone(), format!(
                "packets from source port(s) {} with no ACE opening their flow: vlanguard lets them through only as replies",
                a.src_ports.iter().flatten().map(|p| port_text(*p)).collect::<Vec<_>>().join(",")
            )));
        }
    }

    /// The rules of an ACE that opens connections (one per destination and
    /// source port range), and what its replies rely on.
    fn add_opening(&mut self, a: &Ace, aces: &[Ace], peer: &str, proto: Option<String>) {
        let ported = matches!(a.proto, Some(TCP | UDP));
        if ported && a.proto == Some(TCP) && a.initiated.is_none() {
            self.stricter.push((
                a.name.clone(),
                format!(
                    "TCP without direction-initiated: only the {} may open these connections",
                    if a.side == Side::FromDevice { "device" } else { "peer" }
                ),
            ));
        }
        let direction = match a.side {
            Side::FromDevice => Direction::Out,
            Side::ToDevice => Direction::In,
        };
        let ranges = |r: &Option<Vec<Ports>>| -> Vec<Option<String>> {
            match r {
                Some(r) if ported => r.iter().map(|p| Some(port_text(*p))).collect(),
                _ => vec![None],
            }
        };
        // Source ports of the opening half are matched too (both ports).
        for port in ranges(&a.dst_ports) {
            for sport in ranges(&a.src_ports) {
                let rule = RuleSpec {
                    peer: peer.to_string(),
                    proto: proto.clone(),
                    port: port.clone(),
                    icmp_type: a.icmp_type,
                    sport,
                    within: a.within.map(|n| n.to_string()),
                };
                if !self.rules.iter().any(|(d, r, _)| *d == direction && *r == rule) {
                    self.rules.push((direction, rule, a.name.clone()));
                }
            }
        }
        let opens_flow = ported
            || matches!((a.proto, a.icmp_type), (Some(ICMP), Some(8)) | (Some(ICMPV6), Some(128)));
        if opens_flow && !has_reply(a, aces) && !self.replies_by_flow.contains(&a.name) {
            self.replies_by_flow.push(a.name.clone());
        }
    }
}

/// Why the imported `rule` for `direction` lets through more than the ACE
/// `a` it came from, or `None` when it is no wider: the ACE's side, its peer
/// (a network: that network or one inside it; an abstraction: the set
/// `peers` maps it to; a name: that name), inside the ACE's `within`
/// network, its protocol, destination and source ports inside its ranges,
/// its ICMP type. `convert` must never yield a rule for which this is
/// `Some` (checked by the tests and the `mud` fuzz target).
pub fn looser_than_ace(
    direction: Direction,
    rule: &RuleSpec,
    a: &Ace,
    peers: &BTreeMap<Abstraction, String>,
) -> Option<String> {
    let side = match direction {
        Direction::Out => Side::FromDevice,
        Direction::In => Side::ToDevice,
    };
    if side != a.side {
        return Some(format!("rule for {direction:?} from an ACE of the {:?} list", a.side));
    }
    let net = |text: &str| text.parse::<IpNet>().ok();
    let peer_ok = match &a.peer {
        PeerRef::Any => true,
        PeerRef::Net(n) => net(&rule.peer).is_some_and(|m| n.contains(&m)),
        PeerRef::Name(n) => rule.peer == *n,
        PeerRef::Abstraction(x) => peers.get(x) == Some(&rule.peer),
    };
    if !peer_ok {
        return Some(format!("peer {:?} is not the ACE's {}", rule.peer, a.peer));
    }
    if let Some(w) = a.within
        && !rule.within.as_deref().and_then(net).is_some_and(|m| w.contains(&m))
    {
        return Some(format!("within {:?} is not inside the ACE's {w}", rule.within));
    }
    let proto = match rule.proto.as_deref().map(str::parse::<crate::policy::Proto>) {
        None => None,
        Some(Ok(p)) => p.number(),
        Some(Err(e)) => return Some(e),
    };
    if a.proto.is_some() && proto != a.proto {
        return Some(format!("protocol {:?} is not the ACE's {:?}", rule.proto, a.proto));
    }
    // An ACE's ports (read from its TCP or UDP match, which sets the
    // protocol too): the rule's must lie inside one of its ranges; a rule
    // without ports would match them all.
    let ports_ok = |text: &Option<String>, ace: &Option<Vec<Ports>>| -> bool {
        let Some(ranges) = ace else { return true };
        let Some(text) = text.as_deref() else { return false };
        let parsed = match text.split_once('-') {
            None => text.parse::<u16>().ok().map(|p| (p, p)),
            Some((lo, hi)) => lo.parse().ok().zip(hi.parse().ok()),
        };
        parsed.is_some_and(|(lo, hi)| ranges.iter().any(|(l, h)| *l <= lo && hi <= *h))
    };
    if !ports_ok(&rule.port, &a.dst_ports) {
        return Some(format!("port {:?} is not inside the ACE's {:?}", rule.port, a.dst_ports));
    }
    if !ports_ok(&rule.sport, &a.src_ports) {
        return Some(format!("sport {:?} is not inside the ACE's {:?}", rule.sport, a.src_ports));
    }
    if a.icmp_type.is_some() && rule.icmp_type != a.icmp_type {
        return Some(format!("ICMP type {:?} is not the ACE's {:?}", rule.icmp_type, a.icmp_type));
    }
    None
}

/// Checks that no rule of `c` (converted from `mud` with `peers`) is looser
/// than the ACE it came from (`looser_than_ace`; of ACEs sharing a name,
/// some one must hold it); the first rule that is, and why, otherwise.
pub fn no_rule_looser(
    mud: &Mud,
    c: &Conversion,
    peers: &BTreeMap<Abstraction, String>,
) -> Result<(), String> {
    for (direction, rule, name) in &c.rules {
        let why: Vec<String> = mud
            .aces
            .iter()
            .filter(|a| a.name == *name)
            .map(|a| looser_than_ace(*direction, rule, a, peers))
            .collect::<Option<_>>()
            .unwrap_or_default();
        if !why.is_empty() || !mud.aces.iter().any(|a| a.name == *name) {
            return Err(format!(
                "{direction:?} rule {rule:?} is looser than ACE {name}: {}",
                if why.is_empty() { "no such ACE".to_string() } else { why.join("; ") }
            ));
        }
    }
    Ok(())
}

/// DNS names the rules use (resolved when the policy is applied).
pub fn names(mud: &Mud) -> Vec<String> {
    let mut v: Vec<String> = mud
        .aces
        .iter()
        .filter_map(|a| match &a.peer {
            PeerRef::Name(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `mud show`: what the file allows, in operator terms.
pub fn describe(mud: &Mud, c: &Conversion) -> String {
    let mut s = format!("MUD file {}\n", mud.url);
    if let Some(i) = &mud.systeminfo {
        s += &format!("  device: {i}\n");
    }
    if let Some(u) = &mud.last_update {
        s += &format!("  last update: {u}\n");
    }
    s += "\nThe device may:\n";
    for (d, r, ace) in &c.rules {
        let mut what = match (&r.proto, &r.port, r.icmp_type) {
            (Some(p), Some(port), _) => format!("{} port {port}", p.to_uppercase()),
            (Some(p), None, Some(t)) => format!("{} type {t}", p.to_uppercase()),
            (Some(p), None, None) => format!("any {}", p.to_uppercase()),
            (None, _, _) => "any protocol".into(),
        };
        if let Some(sport) = &r.sport {
            what += &format!(" from port {sport}");
        }
        let peer = match r.within.as_deref() {
            Some(w @ ("0.0.0.0/0" | "::/0")) => {
                let family = if w == "::/0" { "IPv6" } else { "IPv4" };
                if r.peer == "any" {
                    format!("any {family} address")
                } else {
                    format!("{} ({family} only)", r.peer)
                }
            }
            Some(w) if r.peer == "any" => format!("any address in {w}"),
            Some(w) => format!("{} (only its addresses in {w})", r.peer),
            None => r.peer.clone(),
        };
        let line = match d {
            Direction::Out => format!("  open {what} to {peer}"),
            Direction::In => format!("  accept {what} from {peer}"),
        };
        s += &format!("{line:<60} (ACE {ace})\n");
        if c.replies_by_flow.contains(ace) {
            s += "      and receive its answers: the file lists no entry for them, flow \
                  tracking lets them in\n";
        }
    }
    if c.rules.is_empty() {
        s += "  nothing\n";
    }
    if !c.covered.is_empty() {
        s += "\nCovered by flow tracking:\n";
        for (ace, why) in &c.covered {
            s += &format!("  ACE {ace}: {why}\n");
        }
    }
    if !c.stricter.is_empty() {
        s += "\nEnforced more strictly than the file says (import needs --accept-stricter):\n";
        for (ace, why) in &c.stricter {
            let ace = if ace.starts_with("ACL ") { ace.clone() } else { format!("ACE {ace}") };
            s += &format!("  {ace}: {why}\n");
        }
    }
    if !c.warnings.is_empty() {
        s += "\nRead leniently:\n";
        for (at, what) in &c.warnings {
            s += &format!("  {at}: {what}\n");
        }
    }
    let names = names(mud);
    if !names.is_empty() {
        s += &format!(
            "\nDNS names, resolved when the policy is applied and again every [settings] dns_refresh: {}\n",
            names.join(", ")
        );
    }
    s
}

/// Checks `signature` (a detached CMS signature, DER or PEM, as RFC 8520
/// section 13 has manufacturers publish next to the file) over `data`
/// against the trust anchor certificate(s) in `anchor_pem`: the signer's
/// certificate must chain to one of them.
pub fn verify_signature(data: &[u8], signature: &[u8], anchor_pem: &[u8]) -> Result<(), String> {
    use openssl::{
        cms::{CMSOptions, CmsContentInfo},
        x509::{X509, store::X509StoreBuilder},
    };
    let mut cms = CmsContentInfo::from_der(signature)
        .or_else(|_| CmsContentInfo::from_pem(signature))
        .map_err(|_| "the signature is not a CMS signature (DER or PEM)".to_string())?;
    let anchors = X509::stack_from_pem(anchor_pem)
        .map_err(|e| format!("the trust anchor is not a PEM certificate: {e}"))?;
    if anchors.is_empty() {
        return Err("the trust anchor file holds no certificate".into());
    }
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    for cert in anchors {
        store.add_cert(cert).map_err(|e| e.to_string())?;
    }
    let store = store.build();
    cms.verify(None, Some(&store), Some(data), None, CMSOptions::BINARY)
        .map_err(|e| format!("the signature does not verify against the trust anchor: {e}"))
}

/// Why a MUD file on disk is not shown or imported (`vlanguard mud show`,
/// `mud import`). Each message names the file or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}; nothing imported", file.display())]
    Signature { file: std::path::PathBuf, reason: String },
    #[error("the MUD file is not UTF-8 text")]
    NotText(#[source] std::string::FromUtf8Error),
    #[error("{}: cannot be enforced as written:\n  {}", file.display(), errors.join("\n  "))]
    Unenforceable { file: std::path::PathBuf, errors: Vec<String> },
    /// An `ABSTRACTION=SET` argument that is not one.
    #[error("--abstraction {argument:?}: {reason}")]
    Abstraction { argument: String, reason: String },
    #[error(
        "{}: not imported: vlanguard would enforce some entries more strictly than the file \
         says:\n  {}\nreview them (`vlanguard mud show`) and pass --accept-stricter to import \
         anyway",
        file.display(),
        entries.join("\n  ")
    )]
    Stricter { file: std::path::PathBuf, entries: Vec<String> },
    #[error("{}: allows nothing; no profile imported", file.display())]
    AllowsNothing { file: std::path::PathBuf },
}

/// Reads the MUD file `file`. With `signed` (detached signature, trust
/// anchor), the signature is checked first: nothing of an unverified file
/// is looked at.
pub fn read_file(
    file: &std::path::Path,
    signed: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Vec<u8>, FileError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| FileError::Read { path: path.into(), source })
    };
    let data = read(file)?;
    if let Some((signature, anchor)) = signed {
        let (signature, anchor) = (read(signature)?, read(anchor)?);
        verify_signature(&data, &signature, &anchor)
            .map_err(|reason| FileError::Signature { file: file.into(), reason })?;
    }
    Ok(data)
}

/// The MUD file `file` (its bytes as [`read_file`] returns them) parsed and
/// converted into rules, its abstractions mapped by `abstractions`
/// (`ABSTRACTION=SET` each, as `--abstraction` takes them). The file is
/// checked before the mapping, so its own errors come first.
pub fn check_file(
    file: &std::path::Path,
    data: Vec<u8>,
    abstractions: &[String],
) -> Result<(Mud, Conversion), FileError> {
    let text = String::from_utf8(data).map_err(FileError::NotText)?;
    let unenforceable = |errors| FileError::Unenforceable { file: file.into(), errors };
    let parsed = parse(&text).map_err(unenforceable)?;
    let mut map = BTreeMap::new();
    for argument in abstractions {
        let refuse = |reason: String| FileError::Abstraction { argument: argument.clone(), reason };
        let (key, set) =
            argument.rsplit_once('=').ok_or_else(|| refuse("want ABSTRACTION=SET".into()))?;
        map.insert(key.parse::<Abstraction>().map_err(refuse)?, set.to_string());
    }
    let conversion = convert(&parsed, &map).map_err(unenforceable)?;
    Ok((parsed, conversion))
}

impl Conversion {
    /// The rules `mud import` installs from `file`: refused while some
    /// entries would be enforced more strictly than the file says (unless
    /// `accept_stricter`: the operator reviewed them), or when it allows
    /// nothing (an empty profile is most likely a mapping mistake).
    pub fn into_import(
        self,
        file: &std::path::Path,
        accept_stricter: bool,
    ) -> Result<Vec<(Direction, RuleSpec)>, FileError> {
        if !self.stricter.is_empty() && !accept_stricter {
            let entries = self.stricter.iter().map(|(ace, why)| format!("ACE {ace}: {why}"));
            return Err(FileError::Stricter { file: file.into(), entries: entries.collect() });
        }
        if self.rules.is_empty() {
            return Err(FileError::AllowsNothing { file: file.into() });
        }
        Ok(self.rules.into_iter().map(|(direction, rule, _)| (direction, rule)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8520 section 9's example (the light bulb): IPv6 ACLs by DNS name,
    /// TCP 443, each connection opened by the device.
    const RFC_EXAMPLE: &str = include_str!("../tests/mud/rfc8520-lightbulb.json");
    /// A MUD file as a public generator (MUDgee) writes them, with
    /// "access-lists" for "acls", UDP to NTP by name and ICMP.
    const GENERATED: &str = include_str!("../tests/mud/generated-plug.json");
    /// Every supported construct at once.
    const ALL: &str = include_str!("../tests/mud/all-constructs.json");

    fn rules(c: &Conversion) -> Vec<String> {
        c.rules
            .iter()
            .map(|(d, r, _)| {
                format!(
                    "{d:?} {} {} {} {}",
                    r.peer,
                    r.proto.as_deref().unwrap_or("-"),
                    r.port.as_deref().unwrap_or("-"),
                    r.icmp_type.map_or("-".into(), |t| t.to_string())
                )
            })
            .collect()
    }

    #[test]
    fn the_rfc_example_becomes_one_outgoing_rule_and_a_covered_reply() {
        let mud = parse(RFC_EXAMPLE).expect("parses");
        assert_eq!(mud.url, "https://lighting.example.com/lightbulb2000");
        let c = convert(&mud, &BTreeMap::new()).expect("converts");
        assert_eq!(rules(&c), ["Out test.example.com tcp 443 -"]);
        assert_eq!(c.covered.len(), 1, "{:?}", c.covered);
        assert!(c.stricter.is_empty(), "{:?}", c.stricter);
        assert_eq!(names(&mud), ["test.example.com"]);
        let text = describe(&mud, &c);
        assert!(text.contains("open TCP port 443 to test.example.com"), "{text}");
    }

    #[test]
    fn a_generated_file_with_udp_pairs_and_icmp() {
        let mud = parse(GENERATED).expect("parses");
        let c = convert(&mud, &BTreeMap::new()).expect("converts");
        assert_eq!(
            rules(&c),
            [
                "Out pool.ntp.org udp 123 -",
                "Out cloud.example.net tcp 443 -",
                "Out 10.20.0.0/16 icmp - 8",
                "In 10.20.0.0/16 icmp - 8",
            ]
        );
        // The NTP answers mirror the request ACE; the TCP reply is named
        // by direction-initiated.
        assert_eq!(c.covered.len(), 2, "{:?}", c.covered);
        assert!(c.stricter.is_empty(), "{:?}", c.stricter);
    }

    /// Each abstraction `ALL` uses, mapped to a peer set.
    fn every_abstraction_mapped() -> BTreeMap<Abstraction, String> {
        [
            ("my-controller", "central-station"),
            ("local-networks", "nurse-stations"),
            ("same-manufacturer", "vendor"),
            ("manufacturer:pumps.example.com", "pump-vendor"),
            ("model:https://pumps.example.com/p1", "p1"),
            ("controller:https://ctl.example.com/x", "ctl"),
        ]
        .into_iter()
        .map(|(a, set)| (a.parse().expect("abstraction"), set.to_string()))
        .collect()
    }

    #[test]
    fn every_supported_construct() {
        let mud = parse(ALL).expect("parses");
        let peers = every_abstraction_mapped();
        let c = convert(&mud, &peers).expect("converts");
        assert_eq!(
            rules(&c),
            [
                "Out central-station tcp 8443 -",
                "Out 10.20.7.0/24 tcp 8000-8100 -",
                "Out 2001:db8:20::/48 tcp 0-1023 -",
                "Out 2001:db8:20::/48 udp 0-52 -",
                "Out 2001:db8:20::/48 udp 54-65535 -",
                "Out vendor udp - -",
                "Out pump-vendor tcp 443 -",
                "Out p1 tcp 443 -",
                "Out ctl tcp 5683 -",
                "In nurse-stations tcp 22 -",
                "In any icmpv6 - 128",
                "In nurse-stations tcp 1024-65535 -",
            ]
        );
        // The TCP ACE without direction-initiated is opened by the
        // device only; the lone reply half is reply-only.
        let stricter: Vec<&str> = c.stricter.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(stricter, ["gte-no-direction", "orphan-reply"]);
        let covered: Vec<&str> = c.covered.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(covered, ["ssh-reply", "controller-reply"]);
    }

    /// Every rule of the test files is no looser than its ACE; a rule made
    /// wider in any part is told from it.
    #[test]
    fn no_imported_rule_is_looser_than_its_ace() {
        let peers = every_abstraction_mapped();
        for file in [RFC_EXAMPLE, GENERATED, ALL] {
            let mud = parse(file).expect("parses");
            let c = convert(&mud, &peers).expect("converts");
            assert!(!c.rules.is_empty());
            no_rule_looser(&mud, &c, &peers).expect("no looser rule");
        }
        let mud = parse(ALL).expect("parses");
        let c = convert(&mud, &peers).expect("converts");
        let (direction, rule, name) = c
            .rules
            .iter()
            .find(|(_, r, _)| r.port.as_deref() == Some("8000-8100"))
            .expect("the 8000-8100 rule")
            .clone();
        let ace = mud.aces.iter().find(|a| a.name == name).expect("its ACE");
        assert_eq!(looser_than_ace(direction, &rule, ace, &peers), None);
        let other = match direction {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        };
        let wider = [
            (other, RuleSpec { ..rule.clone() }),
            (direction, RuleSpec { peer: "any".into(), ..rule.clone() }),
            (direction, RuleSpec { peer: "10.20.0.0/16".into(), ..rule.clone() }),
            (direction, RuleSpec { proto: None, ..rule.clone() }),
            (direction, RuleSpec { proto: Some("udp".into()), ..rule.clone() }),
            (direction, RuleSpec { port: None, ..rule.clone() }),
            (direction, RuleSpec { port: Some("7999-8100".into()), ..rule.clone() }),
            (direction, RuleSpec { port: Some("8101".into()), ..rule.clone() }),
        ];
        for (d, r) in wider {
            assert!(looser_than_ace(d, &r, ace, &peers).is_some(), "{d:?} {r:?}");
        }
        let narrower = RuleSpec { port: Some("8050".into()), ..rule.clone() };
        assert_eq!(looser_than_ace(direction, &narrower, ace, &peers), None);
    }

    #[test]
    fn unmapped_abstractions_are_named() {
        let mud = parse(ALL).expect("parses");
        let errors = convert(&mud, &BTreeMap::new()).expect_err("unmapped");
        assert_eq!(errors.len(), 6, "one error per abstraction: {errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("my-controller (ACE mycontroller) is not mapped"))
        );
        assert!(errors.iter().any(|e| e.contains(
            "controller:https://ctl.example.com/x (ACE controller, controller-reply) is not mapped"
        )));
    }

    fn with_ace(matches: &str, side: &str) -> String {
        format!(
            r#"{{"ietf-mud:mud": {{"mud-url": "https://x.example/y",
                "{side}-policy": {{"access-lists": {{"access-list": [{{"name": "a"}}]}}}}}},
              "ietf-access-control-list:acls": {{"acl": [{{"name": "a", "type": "ipv4-acl-type",
                "aces": {{"ace": [{{"name": "e", "matches": {matches},
                  "actions": {{"forwarding": "accept"}}}}]}}}}]}}}}"#
        )
    }

    /// Refuses, or imports, `matches` in an ACE of an ACL of `acl_type`
    /// on `side`: the conversion or every error.
    fn one(matches: &str, side: &str, acl_type: &str) -> Result<Conversion, Vec<String>> {
        let text = with_ace(matches, side).replace("ipv4-acl-type", acl_type);
        let mut peers = BTreeMap::new();
        peers.insert(Abstraction::LocalNetworks, "local".to_string());
        peers.insert(Abstraction::MyController, "controllers".to_string());
        convert(&parse(&text).expect("a MUD file"), &peers)
    }

    fn rule(c: &Conversion) -> &RuleSpec {
        assert_eq!(c.rules.len(), 1, "{c:?}");
        &c.rules[0].1
    }

    #[test]
    fn unsupported_constructs_are_refused_with_the_reason() {
        for (matches, side, why) in [
            (r#"{"ipv4": {"dscp": 10}}"#, "from-device", "ipv4 match dscp is not supported"),
            (
                r#"{"ipv4": {"protocol": 1}, "icmp": {"type": 3, "code": 1}}"#,
                "to-device",
                "ICMP type 3 code 1",
            ),
            (r#"{"tcp": {"flags": "syn"}}"#, "from-device", "tcp match flags is not supported"),
            (
                r#"{"ipv4": {"ietf-acldns:src-dnsname": "me.example"}}"#,
                "from-device",
                "device's own end",
            ),
            (r#"{"ietf-mud:mud": {"direct-net": [null]}}"#, "to-device", "abstraction direct-net"),
            (
                r#"{"ipv4": {"protocol": 17}, "ipv6": {"protocol": 17}}"#,
                "from-device",
                "other address family",
            ),
            // MUDgee writes IPv6 extension headers as protocols.
            (r#"{"ipv6": {"protocol": 0}}"#, "from-device", "extension header (hop-by-hop"),
            (r#"{"ipv6": {"protocol": 44}}"#, "from-device", "extension header (fragment"),
            (
                r#"{"ipv4": {"ietf-acldns:dst-dnsname": "a.example"}, "ietf-mud:mud": {"my-controller": [null]}}"#,
                "from-device",
                "both the DNS name a.example and the MUD abstraction my-controller",
            ),
        ] {
            let acl = if matches.contains("\"ipv6\"") && !matches.contains("\"ipv4\"") {
                "ipv6-acl-type"
            } else {
                "ipv4-acl-type"
            };
            let errors = one(matches, side, acl).expect_err(matches);
            assert!(errors.iter().any(|e| e.contains(why)), "{matches}: {errors:?}");
        }
        let drop =
            with_ace(r#"{"ipv4": {"protocol": 6}}"#, "from-device").replace("accept", "drop");
        let errors = convert(&parse(&drop).expect("MUD"), &BTreeMap::new()).expect_err("drop");
        assert!(errors[0].contains("accept"), "{errors:?}");
        let odd = with_ace("{}", "from-device").replace("ipv4-acl-type", "mpls-acl-type");
        let errors = convert(&parse(&odd).expect("MUD"), &BTreeMap::new()).expect_err("type");
        assert!(errors[0].contains("mpls-acl-type"), "{errors:?}");
        assert!(parse("{}").expect_err("not MUD")[0].contains("not a MUD file"));
    }

    /// MUDgee: `local-networks` AND `ff00::/8`, ICMPv6: the two together,
    /// never the abstraction alone or any address in ff00::/8.
    #[test]
    fn an_abstraction_with_an_address_is_their_conjunction() {
        let c = one(
            r#"{"ietf-mud:mud": {"local-networks": [null]}, "ipv6": {"protocol": 58, "destination-ipv6-network": "ff00::/8"}}"#,
            "from-device",
            "ipv6-acl-type",
        )
        .expect("imports");
        let r = rule(&c);
        assert_eq!((r.peer.as_str(), r.proto.as_deref()), ("local", Some("icmpv6")));
        assert_eq!(r.within.as_deref(), Some("ff00::/8"));
        // my-controller AND 0.0.0.0/0: the controllers' IPv4 addresses.
        let c = one(
            r#"{"ietf-mud:mud": {"my-controller": [null]}, "ipv4": {"destination-ipv4-network": "0.0.0.0/0", "protocol": 6}, "tcp": {"destination-port": {"operator": "eq", "port": 8443}, "ietf-mud:direction-initiated": "from-device"}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(
            (rule(&c).peer.as_str(), rule(&c).within.as_deref()),
            ("controllers", Some("0.0.0.0/0"))
        );
        // A DNS name and a network: the name's addresses in the network.
        let c = one(
            r#"{"ipv4": {"ietf-acldns:dst-dnsname": "cloud.example.com", "destination-ipv4-network": "198.51.100.0/24", "protocol": 17}, "udp": {"destination-port": {"operator": "eq", "port": 5683}}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(
            (rule(&c).peer.as_str(), rule(&c).within.as_deref()),
            ("cloud.example.com", Some("198.51.100.0/24"))
        );
    }

    /// An ACL's address family stays with its rules: names and
    /// abstractions resolve to both families, the rule to one.
    #[test]
    fn rules_keep_their_acls_address_family() {
        let mud = parse(RFC_EXAMPLE).expect("parses");
        let c = convert(&mud, &BTreeMap::new()).expect("converts");
        assert_eq!(rule(&c).within.as_deref(), Some("::/0"), "the light bulb's ACLs are IPv6");
        let c = one(
            r#"{"ietf-mud:mud": {"local-networks": [null]}, "ipv4": {"protocol": 17}}"#,
            "to-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(rule(&c).within.as_deref(), Some("0.0.0.0/0"));
        // An address is of its family already.
        let c = one(
            r#"{"ipv4": {"destination-ipv4-network": "192.0.2.0/24", "protocol": 17}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(rule(&c).within, None);
    }

    /// Rules whose answers the file does not list say that flow tracking
    /// lets them in (RFC example: the reply ACE is there; a UDP request
    /// without its reply ACE: not).
    #[test]
    fn answers_the_file_does_not_list_are_named() {
        let mud = parse(RFC_EXAMPLE).expect("parses");
        let c = convert(&mud, &BTreeMap::new()).expect("converts");
        assert!(c.replies_by_flow.is_empty(), "{:?}", c.replies_by_flow);
        let c = one(
            r#"{"ipv4": {"protocol": 17, "destination-ipv4-network": "192.0.2.0/24"}, "udp": {"destination-port": {"operator": "eq", "port": 514}}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(c.replies_by_flow, ["e"]);
        let text = describe(&parse(&with_ace("{}", "from-device")).expect("MUD"), &c);
        assert!(
            text.contains("the file lists no entry for them, flow tracking lets them in"),
            "{text}"
        );
    }

    /// Ethernet ACLs (EAPOL) and MUDgee's DHCP discover (UDP to
    /// 255.255.255.255:67 plus ethertype and broadcast MAC) are left out:
    /// stricter, not refused.
    #[test]
    fn ethernet_matches_are_left_out_as_stricter() {
        let eapol = with_ace(r#"{"eth": {"ethertype": 34958}}"#, "from-device")
            .replace("ipv4-acl-type", "ethernet-acl-type");
        let c = convert(&parse(&eapol).expect("MUD"), &BTreeMap::new()).expect("imports");
        assert!(c.rules.is_empty());
        assert_eq!(c.stricter.len(), 1, "{:?}", c.stricter);
        assert!(c.stricter[0].1.contains("non-IP frames"), "{:?}", c.stricter);
        let c = one(
            r#"{"ipv4": {"protocol": 17, "destination-ipv4-network": "255.255.255.255/32"}, "udp": {"destination-port": {"operator": "eq", "port": 67}}, "eth": {"ethertype": "0x0800", "destination-mac-address": "ff:ff:ff:ff:ff:ff"}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert!(c.rules.is_empty() && c.stricter.len() == 1, "{c:?}");
        assert!(c.stricter[0].1.contains("allow_dhcp"), "{:?}", c.stricter);
    }

    /// Source ports on the opening half (BACnet 47808 -> 47808, NTP
    /// 123 -> 123) match both ports; other IP protocols are rules too;
    /// echo's only code is accepted; a bare host address is a /32.
    #[test]
    fn constructs_real_profiles_use_import_exactly() {
        let c = one(
            r#"{"ipv4": {"protocol": 17, "destination-ipv4-network": "10.1.0.0/16"}, "udp": {"source-port": {"operator": "eq", "port": 47808}, "destination-port": {"operator": "eq", "port": 47808}}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("imports");
        assert_eq!(
            (rule(&c).port.as_deref(), rule(&c).sport.as_deref()),
            (Some("47808"), Some("47808"))
        );
        for (proto, name) in [(2, "igmp"), (47, "gre")] {
            let c = one(
                &format!(r#"{{"ipv4": {{"protocol": {proto}, "destination-ipv4-network": "224.0.0.0/4"}}}}"#),
                "from-device",
                "ipv4-acl-type",
            )
            .expect("imports");
            assert_eq!(rule(&c).proto.as_deref(), Some(name));
        }
        let c = one(
            r#"{"ipv4": {"protocol": 1}, "icmp": {"type": 8, "code": 0}}"#,
            "to-device",
            "ipv4-acl-type",
        )
        .expect("echo's only code");
        assert_eq!(rule(&c).icmp_type, Some(8));
        let c = one(
            r#"{"ipv4": {"protocol": 6, "destination-ipv4-network": "192.0.2.1"}, "tcp": {"destination-port": {"operator": "eq", "port": 443}, "ietf-mud:direction-initiated": "from-device"}}"#,
            "from-device",
            "ipv4-acl-type",
        )
        .expect("a host address");
        assert_eq!(rule(&c).peer, "192.0.2.1/32");
        assert!(c.warnings[0].1.contains("no prefix length"), "{:?}", c.warnings);
    }

    /// Layouts real tools write that mean exactly what RFC 8520's does:
    /// "ACCEPT" in capitals, policy keys with the module prefix and ACLs
    /// written inside the policy (osMUD's tools); a file with no policy at
    /// all lets the device do nothing. Each is imported with a warning.
    #[test]
    fn layouts_of_real_tools_that_mean_the_same() {
        let upper = with_ace(
            r#"{"ipv4": {"protocol": 17, "destination-ipv4-network": "192.0.2.0/24"}}"#,
            "from-device",
        )
        .replace(r#""forwarding": "accept""#, r#""forwarding": "ACCEPT""#);
        let c = convert(&parse(&upper).expect("MUD"), &BTreeMap::new()).expect("imports");
        assert_eq!(c.rules.len(), 1);
        assert!(c.warnings.iter().any(|(_, w)| w.contains("read as accept")), "{:?}", c.warnings);
        let inline = r#"{"ietf-mud:mud": {"mud-url": "https://x.example/i",
            "ietf-mud:from-device-policy": {"access-lists": {"access-list": [{"name": "p",
              "type": "ipv4-acl-type", "aces": {"ace": [{"name": "r1",
                "matches": {"ipv4": {"protocol": 6}, "tcp": {"destination-port": {"port": 80}}},
                "actions": {"forwarding": "accept"}}]}}]}}}}"#;
        let c = convert(&parse(inline).expect("MUD"), &BTreeMap::new()).expect("imports");
        assert_eq!(rules(&c), ["Out any tcp 80 -"]);
        assert_eq!(c.rules[0].1.within.as_deref(), Some("0.0.0.0/0"));
        assert!(c.warnings.iter().any(|(_, w)| w.contains("written inside")), "{:?}", c.warnings);
        let none =
            r#"{"ietf-mud:mud": {"mud-url": "https://x.example/n", "systeminfo": "SBOM only"}}"#;
        let c = convert(&parse(none).expect("MUD"), &BTreeMap::new()).expect("imports");
        assert!(c.rules.is_empty());
        assert!(c.warnings.iter().any(|(_, w)| w.contains("send and receive nothing")));
    }

    /// A pre-RFC draft file is an error that names the JSON path, and one
    /// run reports every problem of a file (reading and converting).
    #[test]
    fn draft_files_and_every_problem_at_once() {
        let draft = r#"{"ietf-mud:mud": {"mud-url": "https://x.example/d",
            "from-device-policy": {"access-lists": {"access-list": [{"acl-name": "a"}]}}},
          "ietf-access-control-list:access-lists": {"acl": [{"name": "a",
            "access-list-entries": {"ace": []}}]}}"#;
        let errors = convert(&parse(draft).expect("MUD"), &BTreeMap::new()).expect_err("draft");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("access-list[0]: no \"name\"") && e.contains("acl-name")),
            "{errors:?}"
        );
        let both = with_ace(r#"{"ipv4": {"protocol": 0}}"#, "from-device").replace(
            r#""aces": {"ace": ["#,
            r#""aces": {"ace": [{"name": "f", "matches": {"ietf-mud:mud": {"my-controller": [null]}}, "actions": {"forwarding": "accept"}}, {"name": "g", "matches": {}, "actions": {"forwarding": "drop"}}, "#,
        );
        let errors = convert(&parse(&both).expect("MUD"), &BTreeMap::new()).expect_err("three");
        assert_eq!(
            errors.len(),
            3,
            "the drop, protocol 0 and the unmapped abstraction: {errors:?}"
        );
    }

    /// Signing for the tests: a CA and a certificate it issued, made with
    /// OpenSSL here (nothing is read from disk).
    mod pki {
        use openssl::{
            asn1::Asn1Time,
            bn::BigNum,
            cms::{CMSOptions, CmsContentInfo},
            hash::MessageDigest,
            pkey::{PKey, Private},
            rsa::Rsa,
            x509::{X509, X509NameBuilder, extension::BasicConstraints},
        };

        pub struct Pair {
            pub key: PKey<Private>,
            pub cert: X509,
        }

        fn issue(cn: &str, issuer: Option<&Pair>, ca: bool) -> Pair {
            let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
            let mut name = X509NameBuilder::new().expect("name");
            name.append_entry_by_text("CN", cn).expect("cn");
            let name = name.build();
            let mut b = X509::builder().expect("builder");
            b.set_version(2).expect("v3");
            b.set_serial_number(&BigNum::from_u32(1).expect("bn").to_asn1_integer().expect("int"))
                .expect("serial");
            b.set_subject_name(&name).expect("subject");
            b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name())).expect("issuer");
            b.set_pubkey(&key).expect("pubkey");
            b.set_not_before(&Asn1Time::days_from_now(0).expect("t")).expect("nb");
            b.set_not_after(&Asn1Time::days_from_now(30).expect("t")).expect("na");
            if ca {
                b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                    .expect("ext");
            }
            b.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha256()).expect("sign");
            Pair { key, cert: b.build() }
        }

        pub fn ca(cn: &str) -> Pair {
            issue(cn, None, true)
        }

        pub fn signer(cn: &str, ca: &Pair) -> Pair {
            issue(cn, Some(ca), false)
        }

        /// A detached CMS signature over `data`, DER, as RFC 8520 wants.
        pub fn sign(data: &[u8], by: &Pair) -> Vec<u8> {
            let flags = CMSOptions::DETACHED | CMSOptions::BINARY;
            CmsContentInfo::sign(Some(&by.cert), Some(&by.key), None, Some(data), flags)
                .expect("cms sign")
                .to_der()
                .expect("der")
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_file_and_the_trusted_ca() {
        let ca = pki::ca("vlanguard test manufacturer CA");
        let other_ca = pki::ca("someone else");
        let maker = pki::signer("pumps.example.com", &ca);
        let stranger = pki::signer("pumps.example.com", &other_ca);
        let anchor = ca.cert.to_pem().expect("pem");
        let data = ALL.as_bytes();

        let good = pki::sign(data, &maker);
        verify_signature(data, &good, &anchor).expect("a file signed under the anchor verifies");

        let tampered = ALL.replace("8443", "8444");
        let e = verify_signature(tampered.as_bytes(), &good, &anchor).expect_err("tampered");
        assert!(e.contains("does not verify"), "{e}");

        let foreign = pki::sign(data, &stranger);
        let e = verify_signature(data, &foreign, &anchor).expect_err("another CA");
        assert!(e.contains("does not verify"), "{e}");

        assert!(verify_signature(data, b"not a signature", &anchor).is_err());
        assert!(verify_signature(data, &good, b"not a certificate").is_err());
    }

    #[test]
    fn port_operators() {
        let p = |v: &str| ports(&serde_json::from_str(v).expect("json")).expect("ports");
        assert_eq!(p(r#"{"operator": "eq", "port": 80}"#), [(80, 80)]);
        assert_eq!(p(r#"{"operator": "lte", "port": 1023}"#), [(0, 1023)]);
        assert_eq!(p(r#"{"operator": "gte", "port": 1024}"#), [(1024, 65535)]);
        assert_eq!(p(r#"{"operator": "neq", "port": 53}"#), [(0, 52), (54, 65535)]);
        assert_eq!(p(r#"{"operator": "neq", "port": 0}"#), [(1, 65535)]);
        assert_eq!(p(r#"{"operator": "neq", "port": 65535}"#), [(0, 65534)]);
        assert_eq!(p(r#"{"lower-port": 8000, "upper-port": 8100}"#), [(8000, 8100)]);
        assert!(ports(&serde_json::json!({"lower-port": 9, "upper-port": 8})).is_err());
    }

    #[test]
    fn dns_names_are_told_from_addresses_and_sets() {
        use crate::policy::is_dns_name;
        assert!(is_dns_name("ntp.example.com"));
        assert!(!is_dns_name("10.0.0.1"));
        assert!(!is_dns_name("10.0.0.0/8"));
        assert!(!is_dns_name("nurse-stations"));
        assert!(!is_dns_name("bad..name"));
    }

    #[test]
    fn files_are_checked_before_the_arguments_and_imports_refuse_stricter_or_nothing() {
        let file = std::path::Path::new("pump.json");
        let check = |data: &[u8], args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            check_file(file, data.to_vec(), &args)
        };
        // A file that is no MUD file is reported before a malformed argument.
        let e = check(b"{}", &["no-equals-sign"]).expect_err("not a MUD file");
        assert!(matches!(e, FileError::Unenforceable { .. }), "{e}");
        assert!(matches!(check(&[0xff], &[]), Err(FileError::NotText(_))));
        let e = check(ALL.as_bytes(), &["no-equals-sign"]).expect_err("malformed");
        assert_eq!(e.to_string(), "--abstraction \"no-equals-sign\": want ABSTRACTION=SET");
        let e = check(ALL.as_bytes(), &["nonsense=set"]).expect_err("unknown");
        assert!(matches!(e, FileError::Abstraction { .. }), "{e}");

        let all = [
            "my-controller=a",
            "local-networks=b",
            "same-manufacturer=c",
            "manufacturer:pumps.example.com=d",
            "model:https://pumps.example.com/p1=e",
            "controller:https://ctl.example.com/x=f",
        ];
        let (_, c) = check(ALL.as_bytes(), &all).expect("converts");
        let e = c.clone().into_import(file, false).expect_err("stricter");
        assert!(
            e.to_string().contains("ACE gte-no-direction")
                && e.to_string().contains("--accept-stricter"),
            "{e}"
        );
        assert_eq!(c.clone().into_import(file, true).expect("accepted").len(), c.rules.len());
        let nothing = Conversion::default().into_import(file, true).expect_err("empty");
        assert_eq!(nothing.to_string(), "pump.json: allows nothing; no profile imported");

        let missing = read_file(std::path::Path::new("/nonexistent/pump.json"), None);
        assert!(matches!(missing, Err(FileError::Read { .. })));
    }
}
