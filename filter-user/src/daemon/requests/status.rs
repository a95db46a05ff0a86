//! `status` and `stats`.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    control::{Reply, replies},
    daemon::{Daemon, join},
    report,
};

impl Daemon {
    /// `status`: the policy in force, the interfaces, the pins, the maps'
    /// use, the program and the DNS names.
    pub(super) fn status(&self) -> Reply {
        let data = self.status_data();
        Reply::with(self.status_text(&data), &data)
    }

    fn status_data(&self) -> replies::Status {
        let interfaces = self
            .config
            .ifaces
            .iter()
            .map(|i| {
                let (attached, tags, health) = self.interface_state(i);
                let gap = health.gap.as_ref();
                replies::Interface {
                    name: i.clone(),
                    attached,
                    hook: tags.map(|t| t.hook().to_string()),
                    tags: tags.map(|t| t.name().to_string()),
                    renamed_to: health.renamed_to.clone(),
                    unfiltered_since: gap.map(|(_, at, _)| crate::time::date(*at)),
                    unfiltered_reason: gap.map(|(.., why)| why.to_string()),
                    gaps: health.gaps,
                    unfiltered_seconds: health.unfiltered_now().as_secs_f64(),
                }
            })
            .collect();
        let occ = self.filter.occupancy();
        replies::Status {
            pin_dir: self.pins.root().to_path_buf(),
            policy_file: self.config.policy.clone(),
            revision: self.revision,
            applied_at: crate::time::date(self.applied_at),
            mode: format!("{:?}", self.config.mode).to_lowercase(),
            interfaces,
            devices: self.policy.devices.len(),
            capabilities: crate::privileges::effective_names()
                .into_iter()
                .map(String::from)
                .collect(),
            program_tag: self.filter.program_tag().map(|t| format!("{t:016x}")).ok(),
            names: self.policy.names.clone(),
            dns_refresh_secs: self.policy.dns_refresh_secs,
            maps: replies::MapUse {
                device_addresses: occ.device_addrs,
                protected_networks: occ.protected_nets,
                rules: occ.rule_entries,
                peer_networks: occ.peer_nets,
            },
            inventory: self.inventory_summary(),
            learned: self
                .policy
                .devices
                .iter()
                .filter(|d| d.learns)
                .map(|d| {
                    let addrs = self.learning.bindings.of(&d.name);
                    (d.name.clone(), addrs.iter().map(ToString::to_string).collect())
                })
                .collect(),
            fleet: self.fleet.as_ref().map(|f| f.status()),
        }
    }

    fn status_text(&self, s: &replies::Status) -> String {
        let interfaces = s.interfaces.iter().map(interface_text).collect::<Vec<_>>().join(", ");
        let mut text = format!(
            "policy {} (revision {}, applied {}), {} devices\n\
             interfaces: {} ({} XDP)\npins: {}\n\
             maps: {} device addresses, {} protected networks, {} rule entries, {} \
             peer-set networks",
            self.config.policy.display(),
            self.revision,
            crate::time::date(self.applied_at),
            self.policy.devices.len(),
            interfaces,
            s.mode,
            self.pins.root().display(),
            s.maps.device_addresses,
            s.maps.protected_networks,
            s.maps.rules,
            s.maps.peer_networks,
        );
        text += &format!(
            "\ninventory: {} hosts, {} unknown (vlanguard inventory --unknown)",
            s.inventory.hosts, s.inventory.unknown
        );
        for (device, addrs) in &s.learned {
            let addrs = if addrs.is_empty() { "none yet".to_string() } else { addrs.join(", ") };
            text += &format!("\nlearned for {device}: {addrs}");
        }
        if let Ok(tag) = self.filter.program_tag() {
            text += &format!("\nprogram: tag {tag:016x} (vlanguard {})", env!("CARGO_PKG_VERSION"));
        }
        if !self.policy.names.is_empty() {
            text += &format!(
                "\nDNS names (resolved again every {}):",
                humantime::format_duration(Duration::from_secs(self.policy.dns_refresh_secs))
            );
            for (name, addrs) in &self.policy.names {
                text += &format!("\n  {name} -> {}", join(addrs));
            }
        }
        if let Some(f) = &s.fleet {
            text += &fleet_text(f);
        }
        text
    }

    /// `stats`: the counters by device (or one device) and the frames by
    /// verdict and reason. The text shows what moved; JSON readers get
    /// every row.
    pub(super) fn stats(&self, device: Option<&str>, all: bool) -> anyhow::Result<Reply> {
        if let Some(name) = device {
            self.known_device(name)?;
        }
        let mut rows = self.device_samples()?;
        rows.retain(|r| device.is_none_or(|d| r.device == d));
        let global = self.frame_samples()?;
        let moved: Vec<_> = rows.iter().filter(|r| all || r.packets > 0).cloned().collect();
        let moved_global: Vec<_> =
            global.iter().filter(|r| all || r.packets > 0).cloned().collect();
        let mut text = report::device_table(&moved);
        // The counters are by verdict; why a device's frames were dropped
        // is in its recent drop events (a sample: events are rate-limited).
        let mut reasons = BTreeMap::<String, u64>::new();
        if let Some(name) = device {
            for e in self.events.recent().matching(Some(name)) {
                *reasons.entry(e.reason).or_default() += 1;
            }
            text.push_str(&report::recent_reasons(&reasons));
        } else {
            text.push('\n');
            text.push_str(&report::global_table(&moved_global));
        }
        if !all {
            text.push_str("(rows at zero left out; --all shows them)\n");
        }
        let data = replies::Stats {
            devices: rows.iter().map(replies::DeviceCounters::from).collect(),
            global: global.iter().map(replies::FrameCounters::from).collect(),
            recent_drop_reasons: reasons,
        };
        Ok(Reply::with(text, &data))
    }
}

/// One `--iface` as `status` says it.
fn interface_text(i: &replies::Interface) -> String {
    let mut text = match (&i.hook, &i.tags, &i.unfiltered_since) {
        (Some(hook), Some(tags), _) => format!("{} ({}, tags {tags}", i.name, hook.to_uppercase()),
        (_, _, Some(since)) => format!(
            "{} (NOT filtered since {since}: {}",
            i.name,
            i.unfiltered_reason.as_deref().unwrap_or("not attached")
        ),
        _ => format!("{} (NOT attached", i.name),
    };
    if let Some(now) = &i.renamed_to {
        text += &format!("; renamed to {now}, still filtered there");
    }
    if i.gaps > 0 {
        text += &format!(
            "; {} gap(s) without the filter, {:.1} s in all",
            i.gaps, i.unfiltered_seconds
        );
    }
    text + ")"
}

/// The fleet lines of `status`.
fn fleet_text(f: &replies::FleetStatus) -> String {
    let applied = match (f.applied_version, &f.applied_at) {
        (Some(v), Some(at)) => {
            format!("version {v} (applied {at}, {} approvals)", f.approvers.len())
        }
        _ => "no fleet version yet (the local policy)".to_string(),
    };
    let behind = match f.newest_version {
        Some(n) if f.behind > 0 => format!("; {} version(s) behind {n}", f.behind),
        _ => String::new(),
    };
    let contact = match (f.connected, f.last_contact_seconds) {
        (true, _) => "etcd reached".to_string(),
        (false, Some(s)) => format!("etcd NOT reached for {s:.0} s"),
        (false, None) => "etcd never reached since the start".to_string(),
    };
    let mut text = format!(
        "\nfleet: site {} as router {} ({}): {applied}{behind}; {contact}",
        f.site, f.router, f.endpoints
    );
    if let Some(until) = &f.fresh_until {
        text += &format!("\n  approvals fresh until {until}");
    }
    if let Some(e) = &f.last_error {
        text += &format!("\n  last error ({}): {e}", f.last_error_at.as_deref().unwrap_or("?"));
    }
    if !f.rejected.is_empty() {
        let r: Vec<String> = f.rejected.iter().map(|(k, n)| format!("{k} {n}")).collect();
        text += &format!("\n  rejected versions: {}", r.join(", "));
    }
    text
}
