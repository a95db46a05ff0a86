//! A MUD file (RFC 8520) as `mud show` and `mud import` read it: parse,
//! then convert with every abstraction mapped. Invariants: no panic; never
//! an imported rule looser than its ACE (`mud::no_rule_looser`: its side,
//! peer, network, protocol, ports and ICMP type no wider).
#![no_main]

use std::collections::BTreeMap;

use filter_policy::mud;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = mud::parse(text) else { return };
    let peers: BTreeMap<_, _> = m
        .aces
        .iter()
        .filter_map(|a| match &a.peer {
            mud::PeerRef::Abstraction(x) => Some(x.clone()),
            _ => None,
        })
        .enumerate()
        .map(|(i, a)| (a, format!("set{i}")))
        .collect();
    if let Ok(c) = mud::convert(&m, &peers)
        && let Err(e) = mud::no_rule_looser(&m, &c, &peers)
    {
        panic!("{e}\nACEs {:#?}", m.aces);
    }
    let _ = mud::names(&m);
});
