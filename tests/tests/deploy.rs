//! The shipped Prometheus alert rules pass `promtool check rules`, the
//! Grafana dashboard parses, and both use only metrics the daemon exports.

use std::{path::Path, process::Command};

use filter_user::metrics::{
    DeviceSample, FleetSample, FrameSample, InterfaceSample, InventorySample, Snapshot, openmetrics,
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
        fleet: Some(FleetSample {
            site: "s".into(),
            rejected: vec![("signatures", 1)],
            ..FleetSample::default()
        }),
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
    for alert in
        ["VlanguardFleetBehind", "VlanguardFleetVersionRejected", "VlanguardFleetUnreachable"]
    {
        assert!(text.contains(alert), "the fleet alert {alert}");
    }
    let exported = exported();
    for name in used(&text) {
        assert!(
            exported.contains(&name),
            "alert rules use {name}, which the daemon does not export"
        );
    }
    promtool(&["check", "rules"], &rules);
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

/// The fleet alerts fire when they should, and not before: `promtool test
/// rules` on series as a router behind, rejecting and cut off exports them.
#[test]
fn fleet_alerts_fire_for_a_router_behind_a_rejection_and_lost_contact() {
    let rules = root().join("deploy/prometheus/vlanguard-alerts.yml");
    let dir = std::env::temp_dir().join(format!("vlanguard-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let test = dir.join("fleet.yml");
    std::fs::write(
        &test,
        format!(
            r#"rule_files: ["{}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'vlanguard_fleet_versions_behind{{instance="r1",site="north"}}'
        values: '0 0 1x20'
      - series: 'vlanguard_fleet_rejected_versions_total{{instance="r1",site="north",reason="signatures"}}'
        values: '0 0 0 1 1 1'
      - series: 'vlanguard_fleet_seconds_since_contact{{instance="r1",site="north"}}'
        values: '1 1 400 460 520 580 640'
    alert_rule_test:
      - eval_time: 11m
        alertname: VlanguardFleetBehind
        exp_alerts: []
      - eval_time: 13m
        alertname: VlanguardFleetBehind
        exp_alerts:
          - exp_labels: {{severity: warning, instance: r1, site: north}}
            exp_annotations:
              summary: "r1 is 1 version(s) behind fleet site north"
              description: "It keeps enforcing its last good version. `vlanguard status` shows why (last error); `vlanguard fleet status --site north` shows every router."
      - eval_time: 2m
        alertname: VlanguardFleetVersionRejected
        exp_alerts: []
      - eval_time: 4m
        alertname: VlanguardFleetVersionRejected
        exp_alerts:
          - exp_labels: {{severity: critical, instance: r1, site: north, reason: signatures}}
            exp_annotations:
              summary: "r1 rejected a fleet version of site north (signatures)"
              description: "The router keeps its last good version. `vlanguard status` gives the reason in full; reason=expired means `vlanguard fleet refresh` is overdue; signatures, rollback or root mean metadata nobody approved was written to etcd."
      - eval_time: 3m
        alertname: VlanguardFleetUnreachable
        exp_alerts: []
      - eval_time: 5m
        alertname: VlanguardFleetUnreachable
        exp_alerts:
          - exp_labels: {{severity: warning, instance: r1, site: north}}
            exp_annotations:
              summary: "r1 has not reached etcd for 9m 40s"
              description: "It keeps enforcing its last good version, but approved changes do not reach it."
"#,
            rules.display()
        ),
    )
    .expect("rule test");
    promtool(&["test", "rules"], &test);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool ARGS FILE`, which must succeed; skipped with a message
/// without promtool, except under `CI=true`.
fn promtool(args: &[&str], file: &Path) {
    match Command::new("promtool").args(args).arg(file).output() {
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
