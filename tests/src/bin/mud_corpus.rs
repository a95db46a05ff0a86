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

/// The entry named `ace` in the file's ACLs (in their container, or
/// written inside a policy), and its ACL's type.
fn find_ace<'a>(raw: &'a Value, ace: &str) -> Option<(&'a Value, Option<&'a str>)> {
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
    acls.into_iter().find_map(|acl| {
        let entries = acl.get("aces")?.get("ace")?.as_array()?;
        let e = entries.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(ace))?;
        Some((e, acl.get("type").and_then(Value::as_str)))
    })
}

/// What of entry `ace`'s matches rule `r` does not carry, if anything.
fn looser_than(raw: &Value, ace: &str, d: Direction, r: &RuleSpec) -> Option<String> {
    let Some((e, acl_type)) = find_ace(raw, ace) else {
        return Some("its entry is not in the file".into());
    };
    let matches = e.get("matches")?.as_object()?;
    let mut missing = Vec::new();
    let peer_side = if d == Direction::Out { "destination" } else { "source" };
    for (group, m) in matches {
        let Some(obj) = m.as_object() else { continue };
        for (k, v) in obj {
            let k = k.strip_prefix("ietf-acldns:").unwrap_or(k);
            let ok = match (group.as_str(), k) {
                (_, "protocol") => r.proto.is_some(),
                ("tcp" | "udp", "destination-port") => r.port.is_some(),
                // A source-port entry imports only as the answer of a flow
                // (no rule) or matched with both ports.
                ("tcp" | "udp", "source-port") => r.sport.is_some(),
                ("tcp" | "udp", "ietf-mud:direction-initiated") => true,
                ("icmp", "type") => r.icmp_type.is_some(),
                ("icmp", "code") => r.icmp_type.is_some_and(|t| matches!(t, 0 | 8 | 128 | 129)),
                (_, k) if k.starts_with(peer_side) && k.ends_with("-network") => {
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
                ("ietf-mud:mud", _) => r.peer.starts_with("set-"),
                _ => false,
            };
            if !ok {
                missing.push(format!("{group}.{k}"));
            }
        }
    }
    // The ACL's family: a name, set or `any` must be limited to it.
    if r.peer.parse::<IpNet>().is_err() {
        let want = match acl_type {
            Some("ipv4-acl-type") => Some("0.0.0.0/0"),
            Some("ipv6-acl-type") => Some("::/0"),
            _ => None,
        };
        if let Some(w) = want
            && r.within.is_none()
        {
            missing.push(format!("the ACL's family ({w})"));
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}
