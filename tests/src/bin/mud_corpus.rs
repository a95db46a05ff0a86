//! `mud_corpus DIR`: runs every MUD file (`*.json`) in DIR through the
//! importer as `vlanguard mud import` would (every abstraction a file uses
//! mapped to a set of that name) and sorts them: imported, imported only
//! with `--accept-stricter`, refused (by the first reason's kind). Then it
//! checks every imported rule against the raw JSON of the entry it came
//! from, independently of the importer's own reading: each match leaf the
//! entry has must reappear as a constraint of the rule (protocol, ports,
//! ICMP type, the peer's network, name or abstraction, the ACL's family).
//! A rule missing one would let more through than its entry: "looser". A
//! development tool for corpora of third-party files kept outside the
//! repository.

use std::{collections::BTreeMap, path::Path};

use filter_user::{
    edit::{Direction, RuleSpec},
    mud::{self, Abstraction},
};
use ipnet::IpNet;
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: mud_corpus DIR"))?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut imported, mut stricter, mut looser) = (0, 0, 0);
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rules = 0;
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                refused.entry(format!("unreadable: {e}")).or_default().push(name);
                continue;
            }
        };
        let parsed = match mud::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                refused.entry(kind(&e[0])).or_default().push(name);
                continue;
            }
        };
        let peers: BTreeMap<Abstraction, String> = parsed
            .aces
            .iter()
            .filter_map(|a| match &a.peer {
                mud::PeerRef::Abstraction(x) => Some((x.clone(), format!("set-{}", slug(x)))),
                _ => None,
            })
            .collect();
        match mud::convert(&parsed, &peers) {
            Err(e) => {
                let mut kinds: Vec<String> = e.iter().map(|e| kind(e)).collect();
                kinds.sort();
                kinds.dedup();
                refused.entry(kinds.join(" + ")).or_default().push(name);
            }
            Ok(c) => {
                if c.stricter.is_empty() {
                    imported += 1;
                } else {
                    stricter += 1;
                }
                let raw: Value = serde_json::from_str(&text)?;
                for (d, r, ace) in &c.rules {
                    rules += 1;
                    if let Some(missing) = looser_than(&raw, ace, *d, r) {
                        looser += 1;
                        println!("LOOSER {name}: ACE {ace}: {missing}");
                    }
                }
            }
        }
    }
    println!("{} files in {}", files.len(), Path::new(&dir).display());
    println!("  imported as written:            {imported}");
    println!("  imported with --accept-stricter: {stricter}");
    let refused_n: usize = refused.values().map(Vec::len).sum();
    println!("  refused:                        {refused_n}");
    for (why, names) in &refused {
        println!("    {:>3}  {why}", names.len());
    }
    println!("{rules} imported rules checked against their entries' JSON: {looser} looser");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if looser > 0 {
        anyhow::bail!("{looser} rules are looser than their entries");
    }
    Ok(())
}

fn slug(a: &Abstraction) -> String {
    a.to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

/// A refusal's kind: its text without the ACL and ACE names and values.
fn kind(e: &str) -> String {
    // "ACL a, ACE b: why" or "ACE b: why": the why.
    let e = if e.starts_with("ACL ") || e.starts_with("ACE ") {
        e.split_once(": ").map_or(e, |(_, why)| why)
    } else {
        e
    };
    let e = e.split(" (").next().unwrap_or(e);
    e.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(90).collect()
}

/// The entries named `ace` in the file's ACLs (in their container, or
/// written inside a policy), each with its ACL's type. (ACE names are
/// unique within an ACL only: mudmaker reuses them across its IPv4 and
/// IPv6 ACLs.)
fn find_aces<'a>(raw: &'a Value, ace: &str) -> Vec<(&'a Value, Option<&'a str>)> {
    let mut acls: Vec<&Value> =
        ["ietf-access-control-list:acls", "ietf-access-control-list:access-lists"]
            .iter()
            .filter_map(|k| raw.get(k)?.get("acl")?.as_array())
            .flatten()
            .collect();
    if let Some(mud) = raw.get("ietf-mud:mud").and_then(Value::as_object) {
        for (k, policy) in mud {
            if k.ends_with("device-policy")
                && let Some(list) = policy.get("access-lists").and_then(|l| l.get("access-list"))
            {
                acls.extend(list.as_array().into_iter().flatten());
            }
        }
    }
    acls.into_iter()
        .filter_map(|acl| {
            let entries = acl.get("aces")?.get("ace")?.as_array()?;
            let e = entries.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(ace))?;
            Some((e, acl.get("type").and_then(Value::as_str)))
        })
        .collect()
}

/// The port ranges an RFC 8519 port match names (computed here, apart
/// from the importer's own reading).
fn port_ranges(v: &Value) -> Vec<(u16, u16)> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).map(|p| p as u16);
    if let (Some(lo), Some(hi)) = (n("lower-port"), n("upper-port")) {
        return vec![(lo, hi)];
    }
    let Some(p) = n("port") else { return Vec::new() };
    match v.get("operator").and_then(Value::as_str).unwrap_or("eq") {
        "lte" => vec![(0, p)],
        "gte" => vec![(p, u16::MAX)],
        "neq" => [(0, p.wrapping_sub(1)), (p.wrapping_add(1), u16::MAX)]
            .into_iter()
            .filter(|(lo, hi)| lo <= hi && !(p == 0 && *hi == u16::MAX && *lo == 0))
            .collect(),
        _ => vec![(p, p)],
    }
}

/// A rule's port text as a range.
fn rule_range(text: Option<&str>) -> Option<(u16, u16)> {
    let t = text?;
    let (lo, hi) = t.split_once('-').unwrap_or((t, t));
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

/// What of the matches of the entry named `ace` rule `r` does not carry,
/// value for value, if anything: none when some entry of that name holds
/// every constraint the rule has (the rule is then inside the file).
fn looser_than(raw: &Value, ace: &str, d: Direction, r: &RuleSpec) -> Option<String> {
    let found = find_aces(raw, ace);
    if found.is_empty() {
        return Some("its entry is not in the file".into());
    }
    let mut first = None;
    for (e, acl_type) in found {
        match missing_in(e, acl_type, d, r) {
            None => return None,
            Some(m) => {
                first.get_or_insert(m);
            }
        }
    }
    first
}

/// What of entry `e`'s matches rule `r` does not carry.
fn missing_in(e: &Value, acl_type: Option<&str>, d: Direction, r: &RuleSpec) -> Option<String> {
    let matches = e.get("matches")?.as_object()?;
    let mut missing = Vec::new();
    let peer_side = if d == Direction::Out { "destination" } else { "source" };
    let rule_proto = r
        .proto
        .as_deref()
        .and_then(|p| p.parse::<filter_user::policy::Proto>().ok())
        .and_then(|p| p.number());
    let mut has_net = false;
    for (group, m) in matches {
        let Some(obj) = m.as_object() else { continue };
        for (k, v) in obj {
            let k = k.strip_prefix("ietf-acldns:").unwrap_or(k);
            let ok = match (group.as_str(), k) {
                (_, "protocol") => v.as_u64().is_some_and(|p| rule_proto == Some(p as u8)),
                ("tcp" | "udp", "destination-port") => {
                    rule_range(r.port.as_deref()).is_some_and(|p| port_ranges(v).contains(&p))
                }
                // A source-port entry imports only as the answer of a flow
                // (no rule) or matched with both ports.
                ("tcp" | "udp", "source-port") => {
                    rule_range(r.sport.as_deref()).is_some_and(|p| port_ranges(v).contains(&p))
                }
                ("tcp" | "udp", "ietf-mud:direction-initiated") => true,
                ("icmp", "type") => v.as_u64().is_some_and(|t| r.icmp_type == Some(t as u8)),
                ("icmp", "code") => {
                    v.as_u64() == Some(0)
                        && r.icmp_type.is_some_and(|t| matches!(t, 0 | 8 | 128 | 129))
                }
                (_, k) if k.starts_with(peer_side) && k.ends_with("-network") => {
                    has_net = true;
                    // The entry's network is the rule's peer or bounds it.
                    let text = v.as_str().unwrap_or_default();
                    let net = text
                        .parse::<IpNet>()
                        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map(|n| n.trunc())
                        .ok();
                    let same = |s: Option<&str>| {
                        s.and_then(|s| s.parse::<IpNet>().ok()).is_some_and(|n| Some(n) == net)
                    };
                    same(Some(&r.peer)) || same(r.within.as_deref())
                }
                (_, "dst-dnsname" | "src-dnsname") => r.peer == v.as_str().unwrap_or_default(),
                ("ietf-mud:mud", kind) => {
                    let text = match v.as_str() {
                        Some(value) => format!("{kind}:{value}"),
                        None => kind.to_string(),
                    };
                    text.parse::<Abstraction>().is_ok_and(|a| r.peer == format!("set-{}", slug(&a)))
                }
                _ => false,
            };
            if !ok {
                missing.push(format!("{group}.{k}"));
            }
        }
    }
    // The ACL's family: a name, set or `any` without an address match must
    // be limited to exactly that family.
    if r.peer.parse::<IpNet>().is_err() && !has_net {
        let want = match acl_type {
            Some("ipv4-acl-type") => Some("0.0.0.0/0"),
            Some("ipv6-acl-type") => Some("::/0"),
            _ => None,
        };
        if let Some(w) = want
            && r.within.as_deref() != Some(w)
        {
            missing.push(format!("the ACL's family ({w})"));
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}
