//! `inventory`: the hosts seen on protected VLANs; `inventory adopt`: one
//! of them made a device.

use crate::{
    control::{Reply, replies},
    daemon::Daemon,
    inventory::view::{self, Select},
};

impl Daemon {
    /// The inventory's counts as of its last write (no database read).
    pub(super) fn inventory_summary(&self) -> replies::InventorySummary {
        let census = self.inventory.tally().census;
        let none = Default::default();
        replies::InventorySummary {
            hosts: census.hosts.values().sum(),
            unknown: census.unknown(),
            recent_unknown: view::entries(
                &census.recent_unknown,
                &self.policy,
                Select::default(),
                &none,
            ),
        }
    }

    pub(super) fn inventory(&self, unknown: bool, vlan: Option<u16>) -> anyhow::Result<Reply> {
        let hosts = self.inventory.hosts()?;
        let mud_files = view::mud_files(std::path::Path::new(view::MUD_DIR));
        let hosts = view::entries(&hosts, &self.policy, Select { unknown, vlan }, &mud_files);
        let text = view::text(&hosts);
        Ok(Reply::with(text, &replies::Inventory { hosts }))
    }

    /// The host `mac` (any case, `:` or `-`) as a new device, through
    /// `device add`'s path (validate, diff, apply, audit).
    pub(super) fn inventory_adopt(
        &mut self,
        mac: &str,
        name: &str,
        profile: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let wanted = crate::addr::mac_text(
            crate::policy::parse_mac(mac).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let hosts = self.inventory.hosts()?;
        let entries = view::entries(&hosts, &self.policy, Select::default(), &Default::default());
        let host = entries.iter().find(|e| e.mac == wanted).ok_or_else(|| {
            anyhow::anyhow!("no host {wanted} in the inventory (vlanguard inventory lists them)")
        })?;
        if let Some(device) = &host.device {
            anyhow::bail!("{wanted} is device {device:?} already");
        }
        let device = view::adoption(host, &self.policy, name, profile);
        if device.ip.is_empty() {
            anyhow::bail!(
                "{wanted} has used no address in VLAN {}'s subnets yet; add it with \
                 `vlanguard device add` and its address",
                host.vlan
            );
        }
        self.device_add(&device)
    }
}
