//! The shipped Prometheus alert rules pass `promtool check rules`, the
//! Grafana dashboard parses, and both use only metrics the daemon exports.

use std::{path::Path, process::Command};

use filter_user::metrics::{
    DeviceSample, FrameSample, InterfaceSample, InventorySample, Snapshot, openmetrics,
};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Names of the metrics the daemon exposes (families and their samples).
fn exported() -> Vec<String> {
    let s = Snapshot {
        devices: vec![DeviceSample {
            device: "d".into(),
            vlan: 1,
            direction: "in",
            verdict: "drop",
            packets: 1,
            bytes: 1,
        }],
        frames: vec![FrameSample { verdict: "drop", reason: "not-allowed", packets: 1, bytes: 1 }],
        maps: vec![("m", 1, 2)],
        interfaces: vec![InterfaceSample {
            name: "i".into(),
            attached: true,
            mode: "native".into(),
            tags: "in-frame".into(),
            gaps: 1,
            unfiltered_seconds: 1.0,
        }],
        events: vec![("sent", 1)],
        inventory: InventorySample {
            hosts: vec![(1, false, 1)],
            new_unknown: vec![(1, 1)],
            ..InventorySample::default()
        },
        ..Snapshot::default()
    };
    openmetrics(&s)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

/// `vlanguard_*` names used in `text`.
fn used(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices("vlanguard_")
        .map(|(i, _)| {
            text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn alert_rules_pass_promtool_and_use_exported_metrics() {
    let rules = root().join("deploy/prometheus/vlanguard-alerts.yml");
    let text = std::fs::read_to_string(&rules).expect("alert rules");
    assert!(
        text.contains("increase(vlanguard_inventory_new_unknown_hosts_total"),
        "an alert on new unknown hosts in the inventory"
    );
    let exported = exported();
    for name in used(&text) {
        assert!(
            exported.contains(&name),
            "alert rules use {name}, which the daemon does not export"
        );
    }
    match Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing under CI: {e}"
            );
            eprintln!("skipped promtool: {e} (Debian package prometheus)");
        }
    }
}

#[test]
fn dashboard_parses_and_uses_exported_metrics() {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/vlanguard.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let exported = exported();
    let mut all = Vec::new();
    for p in panels {
        let targets = p["targets"].as_array().filter(|t| !t.is_empty());
        // Every query of a panel, not only its first.
        for target in targets.expect("every panel queries") {
            let expr = target["expr"].as_str().expect("a target's query");
            let names = used(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "panel {:?} uses {name}, which the daemon does not export",
                    p["title"]
                );
                all.push(name);
            }
        }
    }
    for name in ["vlanguard_inventory_hosts", "vlanguard_inventory_new_unknown_hosts_total"] {
        assert!(all.iter().any(|n| n == name), "the inventory panels show {name}");
    }
}
