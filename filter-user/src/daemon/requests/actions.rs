//! The operator's actions on the filter that are not policy: `block`,
//! `unblock`, `blocks`, `quarantine`, `release`, and `detach`, which ends
//! the daemon. Blocks and quarantines live in the maps, not in the policy
//! file.

use std::time::Duration;

use crate::{
    control::{Reply, replies},
    daemon::Daemon,
    datapath::actions,
};

impl Daemon {
    pub(super) fn block(
        &mut self,
        net: &str,
        for_secs: Option<u64>,
        reason: &str,
    ) -> anyhow::Result<Reply> {
        let parsed = parse_net(net)?;
        let entry = actions::entry(for_secs.map(Duration::from_secs), reason)
            .map_err(|e| anyhow::anyhow!(e))?;
        self.filter.block(parsed, entry)?;
        let d = actions::describe(parsed.to_string(), &entry, crate::sys::clock::boot_ns());
        Ok(Reply::with(format!("blocked {}", d.line()), &replies::Blocked { blocked: d }))
    }

    pub(super) fn unblock(&mut self, net: &str) -> anyhow::Result<Reply> {
        let parsed = parse_net(net)?;
        if !self.filter.unblock(parsed)? {
            anyhow::bail!(
                "{parsed} is not on the blocklist (`vlanguard blocks` lists it; unblock \
                 takes the exact address or network that was blocked)"
            );
        }
        Ok(Reply::with(format!("unblocked {parsed}"), &replies::Unblocked { unblocked: parsed }))
    }

    /// `blocks`: the blocklist and the quarantined devices in force
    /// (expired entries are pruned first).
    pub(super) fn blocks(&mut self) -> anyhow::Result<Reply> {
        let now = crate::sys::clock::boot_ns();
        self.filter.prune_actions(now)?;
        let names = self.filter.slot_names();
        let blocks: Vec<_> = self
            .filter
            .blocks()?
            .iter()
            .map(|(n, e)| actions::describe(n.to_string(), e, now))
            .collect();
        let quarantined: Vec<_> = self
            .filter
            .quarantined()?
            .iter()
            .map(|(slot, e)| {
                let name = names.get(slot).cloned().unwrap_or_else(|| format!("slot {slot}"));
                actions::describe(name, e, now)
            })
            .collect();
        let mut text = String::new();
        if blocks.is_empty() && quarantined.is_empty() {
            text.push_str("nothing blocked, no device quarantined");
        }
        for b in &blocks {
            text.push_str(&format!("blocked     {}\n", b.line()));
        }
        for q in &quarantined {
            text.push_str(&format!("quarantined {}\n", q.line()));
        }
        let data = replies::Blocks { blocks, quarantined };
        Ok(Reply::with(text.trim_end(), &data))
    }

    /// Cuts `device` off from all but the management networks.
    pub(super) fn quarantine(
        &mut self,
        device: &str,
        for_secs: Option<u64>,
        reason: &str,
    ) -> anyhow::Result<Reply> {
        let slot = self.known_device(device)?;
        let entry = actions::entry(for_secs.map(Duration::from_secs), reason)
            .map_err(|e| anyhow::anyhow!(e))?;
        self.filter.quarantine(slot, entry)?;
        let d = actions::describe(device.to_string(), &entry, crate::sys::clock::boot_ns());
        let reach = if self.policy.management.is_empty() {
            "nothing (no [settings] management networks)".to_string()
        } else {
            self.policy.management.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        let text = format!("quarantined {}\nit can reach only: {reach}", d.line());
        Ok(Reply::with(text, &replies::Quarantined { quarantined: d }))
    }

    pub(super) fn release(&mut self, device: &str) -> anyhow::Result<Reply> {
        let slot = self.known_device(device)?;
        if !self.filter.release(slot)? {
            anyhow::bail!("{device} is not quarantined");
        }
        let data = replies::Released { released: device.to_string() };
        Ok(Reply::with(format!("released {device}"), &data))
    }

    /// Detaches everything and removes the pins; the loop then ends.
    pub(super) fn detach(&mut self) -> anyhow::Result<Reply> {
        let ifaces = self.pins.detach_all(&self.lock)?;
        let text =
            format!("detached from {}; removed {}", ifaces.join(", "), self.pins.root().display());
        Ok(Reply::with(text, &replies::Detached { detached: ifaces }))
    }
}

/// An address or network as an operator writes it.
fn parse_net(text: &str) -> anyhow::Result<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow::anyhow!("{text:?} is neither an address nor a CIDR"))
}
