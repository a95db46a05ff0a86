//! `inventory`: the hosts seen on protected VLANs; `inventory adopt`: one
//! of them made a device.

use crate::{
    control::{Reply, replies},
    daemon::Daemon,
    edit::{self, NewDevice},
    inventory::view::{self, MudImport, MudOptions, Select},
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
        let mud_files = view::mud_files(&self.config.mud_dir);
        let hosts = view::entries(&hosts, &self.policy, Select { unknown, vlan }, &mud_files);
        let text = view::text(&hosts);
        Ok(Reply::with(text, &replies::Inventory { hosts }))
    }

    /// The host `mac` (any case, `:` or `-`) as a new device, through
    /// `device add`'s path (validate, diff, apply, audit); with `mud`, in
    /// the same edit, its profile imported from the host's MUD file.
    pub(super) fn inventory_adopt(
        &mut self,
        mac: &str,
        name: &str,
        profile: Option<&str>,
        mud: Option<&MudOptions>,
    ) -> anyhow::Result<Reply> {
        let wanted = crate::addr::mac_text(
            crate::policy::parse_mac(mac).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let hosts = self.inventory.hosts()?;
        // The MUD directory is read only when a file is wanted.
        let mud_files = mud.map(|_| view::mud_files(&self.config.mud_dir)).unwrap_or_default();
        let entries = view::entries(&hosts, &self.policy, Select::default(), &mud_files);
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
        match mud {
            Some(options) => {
                let import = view::mud_import(host, &self.config.mud_dir, options)?;
                self.adopt_with_mud(device, &import)
            }
            None => self.device_add(&device),
        }
    }

    /// `device` added with the profile `import` makes (named by its MUD
    /// URL; replaced if there, as a later `mud import` does), in one edit:
    /// nothing changes if either part is refused.
    fn adopt_with_mud(&mut self, device: NewDevice, import: &MudImport) -> anyhow::Result<Reply> {
        let profile = import.url.clone();
        let device = NewDevice { profile: Some(profile.clone()), ..device };
        let origin = format!(
            "imported from MUD file {} ({}, vlanguard inventory adopt --mud)",
            import.url,
            import.file.display()
        );
        let mut reply = self.edit_policy(|doc| {
            edit::set_profile_rules(doc, &profile, &origin, &import.rules)?;
            edit::add_device(doc, &device)
        })?;
        reply.message =
            format!("profile {profile:?} from {}:\n{}", import.file.display(), reply.message);
        Ok(reply)
    }
}
