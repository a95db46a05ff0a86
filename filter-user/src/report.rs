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
