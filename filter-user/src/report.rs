//! Operator-facing tables of what the program counted.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use filter_common::{Counter, Direction, Reason, StatKey, Verdict};

/// Per-device packets by direction, verdict and reason, one line each, for
/// the devices (counter slot -> name) that saw traffic.
pub fn device_table(names: &HashMap<u32, String>, stats: &BTreeMap<StatKey, Counter>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<4} {:<6} {:<16} {:>10} {:>12}",
        "DEVICE", "DIR", "VERDICT", "REASON", "PACKETS", "BYTES"
    );
    for (k, c) in stats {
        let Some(device) = names.get(&k.slot) else { continue };
        let dir = if k.direction == Direction::In as u8 { "in" } else { "out" };
        let verdict = if k.verdict == Verdict::Pass as u8 { "pass" } else { "drop" };
        let reason = Reason::from_u8(k.reason).map_or("?", Reason::name);
        let _ = writeln!(
            out,
            "{:<24} {:<4} {:<6} {:<16} {:>10} {:>12}",
            device, dir, verdict, reason, c.packets, c.bytes
        );
    }
    out
}

/// Every frame by verdict and reason.
pub fn global_table(stats: &BTreeMap<(Verdict, Reason), Counter>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<6} {:<16} {:>10} {:>12}", "VERDICT", "REASON", "PACKETS", "BYTES");
    for ((verdict, reason), c) in stats {
        let verdict = if *verdict == Verdict::Pass { "pass" } else { "drop" };
        let _ =
            writeln!(out, "{:<6} {:<16} {:>10} {:>12}", verdict, reason.name(), c.packets, c.bytes);
    }
    out
}
