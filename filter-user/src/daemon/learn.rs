//! Learning the addresses of devices declared by MAC alone
//! (`crate::learning`): from their `learning` drop events and identity
//! reports, bound into the running filter at once, kept in the inventory
//! database, expired when idle; conflicts reported as `address-conflict`
//! events, never rebound.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use filter_common::Reason;

use super::{Daemon, event_hub::notice, log};
use crate::{
    addr::mac_text,
    events::Event,
    learning::{self, Binding, Claim},
    policy::parse_mac,
};

/// A conflict of one (address, MAC) is reported once in this long.
const CONFLICT_REPEAT: Duration = Duration::from_secs(30);
/// Conflicts remembered for that; beyond, the oldest memory is dropped.
const CONFLICTS_KEPT: usize = 4096;

/// What learning counts and remembers besides the bindings.
#[derive(Default)]
pub(super) struct Learning {
    pub bindings: learning::Bindings,
    /// Conflicts since the daemon started.
    pub conflicts: u64,
    /// When each (address, claiming MAC) was last reported.
    reported: HashMap<(IpAddr, [u8; 6]), Instant>,
    /// Each learning device's frames at the last look (by slot).
    totals: HashMap<u32, u64>,
}

impl Learning {
    pub fn new(bindings: learning::Bindings) -> Learning {
        Learning { bindings, ..Learning::default() }
    }
}

impl Daemon {
    /// A drop event: `learning` binds its source address to the device it
    /// names; `spoofed-mac` from a learned address by another MAC is a
    /// conflict.
    pub(super) fn learn_from_event(&mut self, e: &Event) -> Option<Event> {
        let addr: IpAddr = e.src.parse().ok()?;
        let mac = parse_mac(e.src_mac.as_deref()?).ok()?;
        if e.reason == Reason::Learning.name() {
            let index =
                self.policy.devices.iter().position(|d| Some(&d.name) == e.device.as_ref())?;
            let at = crate::time::parse(&e.time);
            return self.learn(index, addr, mac, at);
        }
        if e.reason == Reason::SpoofedMac.name()
            && let Some(b) = self.learning.bindings.get(&addr)
            && b.mac != mac
        {
            let holder = b.device.clone();
            return self.conflict(addr, mac, &holder);
        }
        None
    }

    /// An identity report of a learning device's MAC: the address it sent
    /// from, else the one its DHCP client asks for, is claimed; its
    /// bindings are fresh either way.
    pub(super) fn learn_from_report(
        &mut self,
        r: &crate::identity::report::Report,
    ) -> Option<Event> {
        let index = learning::device_with_mac(&self.policy, r.mac, r.vlan)?;
        self.learning.bindings.seen(&self.policy.devices[index].name, unix_now());
        let requested = r.dhcp.as_ref().and_then(|d| d.as_ref().ok()).and_then(|d| d.requested);
        let addr = r.src.or(requested)?;
        self.learn(index, addr, r.mac, None)
    }

    /// Device `index` claims `addr`: bound in the filter and the database
    /// when it may have it; a conflict event when another device has it.
    fn learn(
        &mut self,
        index: usize,
        addr: IpAddr,
        mac: [u8; 6],
        sent_at: Option<SystemTime>,
    ) -> Option<Event> {
        match self.learning.bindings.claim(&self.policy, index, addr, unix_now()) {
            Claim::Bound(b) => {
                if let Err(e) = self.filter.bind_learned(index as u32, addr) {
                    log(&format!("learning: binding {addr} to {}: {e}", b.device));
                    self.learning.bindings.remove(&addr);
                    return None;
                }
                let took = sent_at
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map(|d| format!(" {} ms after its frame", d.as_millis()))
                    .unwrap_or_default();
                log(&format!(
                    "learned {addr} for device {} (MAC {}){took}",
                    b.device,
                    mac_text(b.mac)
                ));
                let event = learned_event(&b);
                self.inventory.binding_changed(addr, Some(b));
                Some(event)
            }
            Claim::Conflict { holder } => self.conflict(addr, mac, &holder),
            Claim::Full => {
                log(&format!(
                    "learning: {addr} not bound to {}: it has {} addresses bound already",
                    self.policy.devices[index].name,
                    learning::MAX_PER_DEVICE
                ));
                None
            }
            Claim::Held | Claim::Outside => None,
        }
    }

    /// `mac` claims `addr`, which is `holder`'s: counted, and reported once
    /// per `CONFLICT_REPEAT`.
    fn conflict(&mut self, addr: IpAddr, mac: [u8; 6], holder: &str) -> Option<Event> {
        self.learning.conflicts += 1;
        let now = Instant::now();
        let reported = &mut self.learning.reported;
        if reported.get(&(addr, mac)).is_some_and(|t| now.duration_since(*t) < CONFLICT_REPEAT) {
            return None;
        }
        if reported.len() >= CONFLICTS_KEPT {
            reported.retain(|_, t| now.duration_since(*t) < CONFLICT_REPEAT);
            if reported.len() >= CONFLICTS_KEPT {
                reported.clear();
            }
        }
        reported.insert((addr, mac), now);
        log(&format!(
            "address conflict: {} claims {addr}, which is bound to device {holder}; refused",
            mac_text(mac)
        ));
        Some(conflict_event(addr, mac, holder))
    }

    /// Bindings idle past `[settings] learned_address_ttl`, or that the
    /// policy no longer supports, are unbound; devices whose counters moved
    /// were seen.
    pub(super) fn expire_learned(&mut self) {
        if self.learning.bindings.is_empty() {
            return;
        }
        self.refresh_from_counters();
        let now = unix_now();
        let ttl = self.policy.learned_address_ttl_secs;
        let mut gone = self.learning.bindings.expire(now, ttl);
        gone.extend(self.learning.bindings.retain_valid(&self.policy));
        for b in gone {
            if let Err(e) = self.filter.unbind_learned(b.addr) {
                log(&format!("learning: unbinding {}: {e}", b.addr));
            }
            log(&format!("released {} of device {} (not seen for {ttl} s)", b.addr, b.device));
            self.inventory.binding_changed(b.addr, None);
        }
    }

    /// Marks learning devices whose frame counters moved since the last
    /// look as seen.
    fn refresh_from_counters(&mut self) {
        let Ok(stats) = self.filter.device_stats() else { return };
        let mut totals: HashMap<u32, u64> = HashMap::new();
        for (k, c) in &stats {
            *totals.entry(k.slot).or_default() += c.packets;
        }
        let now = unix_now();
        for d in self.policy.devices.iter().filter(|d| d.learns) {
            let Some(slot) = self.filter.device_slot(&d.name) else { continue };
            let total = totals.get(&slot).copied().unwrap_or(0);
            let last = self.learning.totals.insert(slot, total);
            if last.is_some_and(|l| total > l) {
                self.learning.bindings.seen(&d.name, now);
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An address bound, as an event (`address-learned`).
fn learned_event(b: &Binding) -> Event {
    Event {
        device: Some(b.device.clone()),
        src_mac: Some(mac_text(b.mac)),
        vlan: b.vlan,
        ..notice(b.addr, "address-learned", "bound")
    }
}

/// A refused claim, as an event (`address-conflict`): `device` is the one
/// the address is bound to, `src_mac` the MAC that claimed it.
fn conflict_event(addr: IpAddr, mac: [u8; 6], holder: &str) -> Event {
    Event {
        device: Some(holder.to_string()),
        src_mac: Some(mac_text(mac)),
        ..notice(addr, "address-conflict", "refused")
    }
}
