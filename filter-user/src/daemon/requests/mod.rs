//! The control socket's requests, one file per group; `dispatch` only
//! routes. Requests that change something are audit-logged here, around
//! the handler, so no handler can forget it.

mod actions;
mod devices;
mod events;
mod inventory;
mod policy;
mod status;

use std::time::Instant;

use super::{Daemon, audit::Summary, server::Call};
use crate::{
    control::{Reply, Request},
    diff,
};

impl Daemon {
    /// Answers a call from a connection; whether it detached the daemon
    /// (then the loop ends).
    pub(super) fn call(&mut self, call: Call) -> bool {
        let is_detach = matches!(call.request, Request::Detach);
        let reply = self.handle(&call.request, call.uid);
        let detached = is_detach && reply.ok;
        let _ = call.reply.send(reply);
        detached
    }

    /// Answers one request; changes are audit-logged.
    fn handle(&mut self, request: &Request, uid: u32) -> Reply {
        let before = self.summary();
        let started = Instant::now();
        // No change the audit log cannot record.
        if request.changes()
            && let Err(e) = self.audit.reserve(request)
        {
            let message = format!(
                "refused: the audit log {} cannot be written ({e}), and every change is \
                 recorded there first; free space there or make it writable, then ask again",
                self.audit.path().display()
            );
            super::log(&format!("a change was {message}"));
            return Reply::invalid(message);
        }
        let reply = match self.dispatch(request) {
            Ok(reply) => reply,
            Err(e) => Reply::invalid(format!("{e:#}")),
        };
        if request.changes() && !matches!(request, Request::Detach) {
            self.last_apply_ok = reply.ok;
        }
        if request.changes() {
            let after = self.summary();
            self.audit.request((request, uid), &reply, (before, after), started.elapsed());
        }
        reply
    }

    fn dispatch(&mut self, request: &Request) -> anyhow::Result<Reply> {
        if request.edits_policy() {
            self.fleet_managed()?;
        }
        match request {
            Request::Status => Ok(self.status()),
            Request::Stats { device, all } => self.stats(device.as_deref(), *all),
            Request::PolicyShow => self.policy_show(),
            Request::PolicyDiff { text, file } => {
                self.policy_diff(text.as_deref(), file.as_deref())
            }
            Request::PolicyApply { text, file } => {
                self.policy_apply(text.as_deref(), file.as_deref())
            }
            Request::PolicySuggest { device, since_secs } => {
                self.policy_suggest(device.as_deref(), *since_secs)
            }
            Request::PolicyMerge { text, file } => self.policy_merge(text, file.as_deref()),
            Request::MudImport { profile, url, rules } => self.mud_import(profile, url, rules),
            Request::DeviceList => Ok(self.device_list()),
            Request::DeviceAdd { device } => self.device_add(device),
            Request::DeviceRemove { name } => self.device_remove(name),
            Request::Allow { target, direction, rule } => self.allow(target, *direction, rule),
            Request::Revoke { target, direction, rule } => self.revoke(target, *direction, rule),
            Request::Events { device, .. } => self.events_list(device.as_deref()),
            Request::Block { net, for_secs, reason } => self.block(net, *for_secs, reason),
            Request::Unblock { net } => self.unblock(net),
            Request::Blocks => self.blocks(),
            Request::Quarantine { device, for_secs, reason } => {
                self.quarantine(device, *for_secs, reason)
            }
            Request::Release { device } => self.release(device),
            Request::Inventory { unknown, vlan } => self.inventory(*unknown, *vlan),
            Request::InventoryAdopt { mac, name, profile, mud } => {
                self.inventory_adopt(mac, name, profile.as_deref(), mud.as_ref())
            }
            Request::Detach => self.detach(),
        }
    }

    /// The counter slot of the running policy's device `name`, or the
    /// error an operator sees for a name it does not have.
    fn known_device(&self, name: &str) -> anyhow::Result<u32> {
        Ok(self
            .filter
            .device_slot(name)
            .ok_or_else(|| crate::error::UnknownDevice(name.to_string()))?)
    }

    pub(super) fn summary(&self) -> Summary {
        Summary { revision: self.revision, devices: self.policy.devices.len() }
    }
}

/// A diff as text, one change a line, or `none` when there is none.
pub(super) fn changes_text(changes: &[diff::Change], none: &str) -> String {
    if changes.is_empty() {
        none.to_string()
    } else {
        changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }
}
