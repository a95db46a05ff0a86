//! `inventory`: the hosts seen on protected VLANs.

use crate::{
    control::{Reply, replies},
    daemon::Daemon,
    inventory::view::{self, Select},
};

impl Daemon {
    pub(super) fn inventory(&self, unknown: bool, vlan: Option<u16>) -> anyhow::Result<Reply> {
        let hosts = self.inventory.hosts()?;
        let mud_files = view::mud_files(std::path::Path::new(view::MUD_DIR));
        let hosts = view::entries(&hosts, &self.policy, Select { unknown, vlan }, &mud_files);
        let text = view::text(&hosts);
        Ok(Reply::with(text, &replies::Inventory { hosts }))
    }
}
