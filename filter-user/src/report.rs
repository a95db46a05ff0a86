//! Operator-facing tables of what the program counted.

use std::fmt::Write as _;

use crate::metrics::{DeviceSample, FrameSample};

/// Per-device packets by direction and verdict, one line each.
pub fn device_table(rows: &[DeviceSample]) -> String {
    let mut out = String::new();
    // The device column as wide as its longest name, no wider.
    let w = rows.iter().map(|r| r.device.chars().count()).max().unwrap_or(0).max("DEVICE".len());
    let _ = writeln!(
        out,
        "{:<w$} {:<4} {:<10} {:>10} {:>12}",
        "DEVICE", "DIR", "VERDICT", "PACKETS", "BYTES"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<w$} {:<4} {:<10} {:>10} {:>12}",
            r.device, r.direction, r.verdict, r.packets, r.bytes
        );
    }
    out
}

/// A device's recent drop events by reason, under its counters.
pub fn recent_reasons(reasons: &std::collections::BTreeMap<String, u64>) -> String {
    if reasons.is_empty() {
        return String::from("no recent drop events\n");
    }
    let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("recent drop events by reason (a rate-limited sample): {}\n", list.join(", "))
}

/// Every frame by verdict and reason.
pub fn global_table(rows: &[FrameSample]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<10} {:<16} {:>10} {:>12}", "VERDICT", "REASON", "PACKETS", "BYTES");
    for r in rows {
        let _ =
            writeln!(out, "{:<10} {:<16} {:>10} {:>12}", r.verdict, r.reason, r.packets, r.bytes);
    }
    out
}
