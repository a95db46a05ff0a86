//! The device requests: `device list/add/remove`, `allow`, `revoke`. The
//! changes are edits of the policy file (`Daemon::edit_policy`).

use crate::{
    addr::mac_text,
    control::{Reply, replies},
    daemon::Daemon,
    edit::{self, Direction, NewDevice, RuleSpec, Target},
};

impl Daemon {
    pub(super) fn device_list(&self) -> Reply {
        let devices: Vec<replies::Device> = self
            .policy
            .devices
            .iter()
            .map(|d| replies::Device {
                name: d.name.clone(),
                vlan: d.vlan,
                ip: d.addrs.iter().map(ToString::to_string).collect(),
                mac: d.mac.map(mac_text),
                learned: d.learns.then(|| {
                    self.learning.bindings.of(&d.name).iter().map(ToString::to_string).collect()
                }),
                allow_in: d.allow_in.len(),
                allow_out: d.allow_out.len(),
            })
            .collect();
        let mut text = format!(
            "{:<24} {:>5} {:<34} {:>8} {:>9}\n",
            "DEVICE", "VLAN", "IP", "IN RULES", "OUT RULES"
        );
        for d in &devices {
            // Learned addresses are marked: they come and go.
            let ips = match &d.learned {
                Some(l) if l.is_empty() => "(learning)".to_string(),
                Some(l) => format!("{} (learned)", l.join(",")),
                None => d.ip.join(","),
            };
            text.push_str(&format!(
                "{:<24} {:>5} {:<34} {:>8} {:>9}\n",
                d.name, d.vlan, ips, d.allow_in, d.allow_out
            ));
        }
        Reply::with(text, &replies::DeviceList { devices })
    }

    pub(in crate::daemon) fn device_add(&mut self, device: &NewDevice) -> anyhow::Result<Reply> {
        self.edit_policy(|doc| edit::add_device(doc, device))
    }

    pub(super) fn device_remove(&mut self, name: &str) -> anyhow::Result<Reply> {
        self.edit_policy(|doc| edit::remove_device(doc, name))
    }

    pub(super) fn allow(
        &mut self,
        target: &Target,
        direction: Direction,
        rule: &RuleSpec,
    ) -> anyhow::Result<Reply> {
        self.edit_policy(|doc| edit::add_rule(doc, target, direction, rule))
    }

    pub(super) fn revoke(
        &mut self,
        target: &Target,
        direction: Direction,
        rule: &RuleSpec,
    ) -> anyhow::Result<Reply> {
        self.edit_policy(|doc| edit::remove_rule(doc, target, direction, rule))
    }
}
