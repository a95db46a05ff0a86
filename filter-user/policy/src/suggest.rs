//! `policy suggest` and `policy merge`: what monitor mode observed (the
//! would-drop events) turned into allow rules for the operator to review,
//! and those rules merged back into the policy file.
//!
//! Only `not-allowed` would-drops become rules: unknown hosts, spoofed MACs,
//! wrong VLANs and malformed frames are not fixed by allowing something.
//! Events are sampled (`events_per_second`), so a suggestion lists what was
//! seen, not necessarily everything that happened.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    edit::{Direction, RuleSpec, Target},
    events::Event,
};

/// One proposed rule and how many observed frames it would have let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    pub device: String,
    pub direction: Direction,
    pub rule: RuleSpec,
    pub frames: u64,
}

/// The rules that would have let the would-drops in `events` through, one
/// per device, direction, peer, protocol and port. A peer inside one of the
/// policy's named sets (`peers`) is suggested as that set, else as its
/// address. `device` keeps one device's; `since` drops older events.
pub fn suggest(
    events: &[Event],
    peers: &BTreeMap<String, Vec<IpNet>>,
    device: Option<&str>,
    since: Option<SystemTime>,
) -> Vec<Suggestion> {
    let mut seen: BTreeMap<(String, Direction, String, String, String), u64> = BTreeMap::new();
    for e in events {
        if e.verdict != "would-drop" || e.reason != "not-allowed" {
            continue;
        }
        if let Some(since) = since {
            let time = humantime::parse_rfc3339_weak(&e.time).unwrap_or(SystemTime::UNIX_EPOCH);
            if time < since {
                continue;
            }
        }
        let Some(l4) = l4(e) else { continue };
        // Who would need a rule: the sender's allow_out and, between two
        // devices, the receiver's allow_in too.
        let mut sides = Vec::new();
        match (e.device.as_deref(), e.direction) {
            (Some(d), Some(Direction::Out)) => {
                sides.push((d, Direction::Out, &e.dst));
                if let Some(to) = e.to_device.as_deref() {
                    sides.push((to, Direction::In, &e.src));
                }
            }
            (Some(d), Some(Direction::In)) => sides.push((d, Direction::In, &e.src)),
            _ => continue,
        }
        for (name, direction, peer) in sides {
            if device.is_some_and(|d| d != name) {
                continue;
            }
            let key =
                (name.to_string(), direction, peer_name(peer, peers), l4.0.clone(), l4.1.clone());
            *seen.entry(key).or_default() += 1;
        }
    }
    seen.into_iter()
        .map(|((device, direction, peer, proto, port), frames)| {
            let icmp = proto.starts_with("icmp");
            Suggestion {
                device,
                direction,
                rule: RuleSpec {
                    peer,
                    icmp_type: if icmp { port.parse().ok() } else { None },
                    port: if icmp || port.is_empty() { None } else { Some(port) },
                    sport: None,
                    within: None,
                    proto: Some(proto),
                },
                frames,
            }
        })
        .collect()
}

/// Protocol and port (ICMP: type; other protocols: none, empty) of an
/// event; `None` for frames no rule can name (not IP).
fn l4(e: &Event) -> Option<(String, String)> {
    match e.proto.as_str() {
        "tcp" | "udp" | "icmp" | "icmpv6" => Some((e.proto.clone(), e.dport.to_string())),
        // Protocols without ports (GRE, IGMP, ...): a rule names the
        // protocol alone.
        other => match other.parse::<crate::policy::Proto>() {
            Ok(crate::policy::Proto::Other(_)) => Some((e.proto.clone(), String::new())),
            _ => None,
        },
    }
}

/// The first named set holding `addr`, else the address itself.
fn peer_name(addr: &str, peers: &BTreeMap<String, Vec<IpNet>>) -> String {
    let Ok(ip) = addr.parse::<IpAddr>() else { return addr.to_string() };
    peers
        .iter()
        .find(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
        .map_or_else(|| ip.to_string(), |(name, _)| name.clone())
}

/// The suggestions as a policy fragment: `[[device]]` tables with the
/// proposed rules, each with the frames it accounts for.
pub fn to_toml(list: &[Suggestion], window: Option<Duration>) -> String {
    let mut out = String::from("# Suggested by `vlanguard policy suggest` from would-drop events");
    match window {
        Some(w) => {
            let _ = writeln!(out, " of the last {}.", humantime::format_duration(w));
        }
        None => out.push_str(" the daemon keeps.\n"),
    }
    out.push_str(
        "# Review each rule, delete what should stay blocked, then\n\
         # `vlanguard policy merge THIS_FILE` adds them to the policy.\n",
    );
    if list.is_empty() {
        out.push_str("# Nothing to suggest: no not-allowed would-drops were seen.\n");
    }
    let mut devices: BTreeMap<&str, Vec<&Suggestion>> = BTreeMap::new();
    for s in list {
        devices.entry(&s.device).or_default().push(s);
    }
    for (device, rules) in devices {
        let _ = write!(out, "\n[[device]]\nname = {}\n", quote(device));
        for direction in [Direction::In, Direction::Out] {
            let (key, peer_key) = (direction.rules_key(), direction.peer_key());
            let mine: Vec<_> = rules.iter().filter(|s| s.direction == direction).collect();
            if mine.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{key} = [");
            for s in mine {
                let r = &s.rule;
                let mut fields = vec![format!("{peer_key} = {}", quote(&r.peer))];
                if let Some(p) = &r.proto {
                    fields.push(format!("proto = {}", quote(p)));
                }
                if let Some(p) = &r.port {
                    fields.push(format!("port = {p}"));
                }
                if let Some(t) = r.icmp_type {
                    fields.push(format!("icmp_type = {t}"));
                }
                if let Some(p) = &r.sport {
                    fields.push(format!("sport = {}", quote(p)));
                }
                let plural = if s.frames == 1 { "" } else { "s" };
                let _ =
                    writeln!(out, "  {{ {} }},  # {} frame{plural}", fields.join(", "), s.frames);
            }
            out.push_str("]\n");
        }
    }
    out
}

fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default)]
    device: Vec<FragmentDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FragmentDevice {
    name: String,
    #[serde(default)]
    allow_in: Vec<FragmentRule>,
    #[serde(default)]
    allow_out: Vec<FragmentRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FragmentRule {
    from: Option<String>,
    to: Option<String>,
    proto: Option<String>,
    port: Option<toml::Value>,
    icmp_type: Option<u8>,
    sport: Option<toml::Value>,
}

/// The rules of a fragment as `to_toml` writes it (or an operator edits
/// it): device, direction, rule. Validation of the rules themselves happens
/// when they are merged into the policy.
pub fn parse_fragment(text: &str) -> Result<Vec<(Target, Direction, RuleSpec)>, String> {
    let f: Fragment = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for d in f.device {
        for (direction, rules) in [(Direction::In, d.allow_in), (Direction::Out, d.allow_out)] {
            for r in rules {
                let peer = match (direction, r.from, r.to) {
                    (Direction::In, Some(p), None) | (Direction::Out, None, Some(p)) => p,
                    _ => {
                        return Err(format!(
                            "device {:?}: allow_in rules take `from`, allow_out rules `to`",
                            d.name
                        ));
                    }
                };
                let ports = |v: Option<toml::Value>| match v {
                    None => Ok(None),
                    Some(toml::Value::Integer(n)) => Ok(Some(n.to_string())),
                    Some(toml::Value::String(s)) => Ok(Some(s)),
                    Some(other) => Err(format!("device {:?}: port {other} is not a port", d.name)),
                };
                let (port, sport) = (ports(r.port)?, ports(r.sport)?);
                out.push((
                    Target::Device(d.name.clone()),
                    direction,
                    RuleSpec {
                        peer,
                        proto: r.proto,
                        port,
                        icmp_type: r.icmp_type,
                        sport,
                        within: None,
                    },
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        device: &str,
        direction: Direction,
        src: &str,
        dst: &str,
        proto: &str,
        dport: u16,
    ) -> Event {
        Event {
            time: "2026-11-29T12:00:00.000Z".into(),
            interface: "trunk0".into(),
            vlan: 110,
            device: Some(device.into()),
            direction: Some(direction),
            src: src.into(),
            dst: dst.into(),
            proto: proto.into(),
            sport: 40000,
            dport,
            reason: "not-allowed".into(),
            verdict: "would-drop".into(),
            to_device: None,
            src_mac: None,
        }
    }

    #[test]
    fn would_drops_become_rules_that_round_trip() {
        let peers = BTreeMap::from([("nurses".to_string(), vec!["10.30.0.0/16".parse().unwrap()])]);
        let mut events = vec![
            event("pump", Direction::In, "10.30.1.1", "10.110.0.7", "udp", 6000),
            event("pump", Direction::In, "10.30.1.2", "10.110.0.7", "udp", 6000),
            event("pump", Direction::In, "10.99.0.1", "10.110.0.7", "tcp", 22),
            event("pump", Direction::Out, "10.110.0.7", "10.20.5.10", "icmp", 8),
            event("pump", Direction::In, "10.30.1.1", "10.110.0.7", "gre", 0),
            // Not IP (ARP): nothing a rule could name.
            event("pump", Direction::In, "10.30.1.1", "10.110.0.7", "0", 0),
        ];
        let mut enforced = event("pump", Direction::In, "10.30.1.1", "10.110.0.7", "udp", 7000);
        enforced.verdict = "drop".into();
        events.push(enforced);
        let mut unknown = event("pump", Direction::In, "10.30.1.1", "10.110.0.7", "udp", 7001);
        unknown.reason = "unknown-device".into();
        events.push(unknown);

        let s = suggest(&events, &peers, None, None);
        assert_eq!(s.len(), 4, "{s:#?}");
        let gre = s.iter().find(|s| s.rule.proto.as_deref() == Some("gre")).expect("gre rule");
        assert_eq!((gre.rule.port.as_deref(), gre.rule.icmp_type), (None, None), "protocol alone");
        let udp = s.iter().find(|s| s.rule.port.as_deref() == Some("6000")).expect("udp rule");
        assert_eq!((udp.rule.peer.as_str(), udp.frames), ("nurses", 2));
        let icmp = s.iter().find(|s| s.direction == Direction::Out).expect("echo rule");
        assert_eq!((icmp.rule.icmp_type, icmp.rule.port.as_deref()), (Some(8), None));

        let text = to_toml(&s, Some(Duration::from_secs(600)));
        let back = parse_fragment(&text).expect("the fragment parses");
        assert_eq!(back.len(), 4);
        for s in &s {
            assert!(
                back.iter().any(|(t, d, r)| *t == Target::Device(s.device.clone())
                    && *d == s.direction
                    && *r == s.rule),
                "{s:?} in {text}"
            );
        }
        assert!(suggest(&events, &peers, Some("monitor"), None).is_empty());
    }

    #[test]
    fn bad_fragments_are_refused() {
        let wrong_side = "[[device]]\nname = \"pump\"\nallow_in = [ { to = \"any\" } ]\n";
        assert!(parse_fragment(wrong_side).unwrap_err().contains("take `from`"));
        assert!(parse_fragment("[[device]]\nname = 1\n").is_err());
        assert!(parse_fragment("[settings]\nmode = \"monitor\"\n").is_err());
    }
}
