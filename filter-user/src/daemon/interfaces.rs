//! Interfaces that come and go (docs/ARCHITECTURE.md §5). The kernel
//! detaches a program from an interface that is deleted, and a veth, VLAN
//! or bond interface created again under the same name is a new device with
//! nothing attached. The daemon checks every `--iface` whenever the kernel
//! reports a link change (`sys::netlink`) and every few seconds besides:
//! one whose pinned link is not on the device of that name now gets the
//! filter again as soon as it exists (`PinDir::ensure_link`), and the time
//! it went unfiltered is kept, for `status` and the metrics.
//!
//! A renamed interface keeps its link: the device is still filtered, under
//! its new name, until an interface takes the configured name again.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use super::{Daemon, log};
use crate::{datapath::offload::TagPath, sys};

/// Why a configured interface is not filtered, or where it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Absence {
    /// No interface of that name (deleted, or not created yet).
    Gone,
    /// It exists, but attaching failed (the reason, as logged).
    Refused(String),
}

impl std::fmt::Display for Absence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Absence::Gone => f.write_str("no interface of that name"),
            Absence::Refused(e) => write!(f, "attaching failed: {e}"),
        }
    }
}

/// One `--iface`'s record.
#[derive(Clone, Debug, Default)]
pub(super) struct Health {
    /// Unfiltered since (monotonic, and wall clock for `status`), and why.
    pub gap: Option<(Instant, SystemTime, Absence)>,
    /// The device's current name when it was renamed away (still filtered).
    pub renamed_to: Option<String>,
    /// Times it lost the filter since the daemon started.
    pub gaps: u64,
    /// Time without the filter in gaps that ended.
    pub unfiltered: Duration,
}

impl Health {
    /// Time without the filter, the running gap included.
    pub fn unfiltered_now(&self) -> Duration {
        self.unfiltered + self.gap.as_ref().map_or(Duration::ZERO, |(since, ..)| since.elapsed())
    }

    fn begin_gap(&mut self, why: Absence) {
        match &mut self.gap {
            Some((.., old)) => *old = why,
            None => {
                self.gaps += 1;
                self.gap = Some((Instant::now(), SystemTime::now(), why));
            }
        }
    }

    /// Ends the gap, if any: how long it was.
    fn end_gap(&mut self) -> Option<Duration> {
        let (since, ..) = self.gap.take()?;
        let took = since.elapsed();
        self.unfiltered += took;
        Some(took)
    }
}

/// Every `--iface`'s record, by name.
pub(super) type Interfaces = BTreeMap<String, Health>;

impl Daemon {
    /// Whether `iface` is filtered now: its pinned link is on the device
    /// that has its name, or on the device that had it (renamed, and no
    /// interface took the name since).
    pub(super) fn filtered(&self, iface: &str) -> bool {
        match (self.pins.link_ifindex(iface), sys::net::if_index(iface)) {
            (Some(on), Some(now)) => on == now,
            (Some(on), None) => on != 0,
            (None, _) => false,
        }
    }

    /// `iface` as `status` and the metrics report it: filtered, how the
    /// filter there sees tags (when filtered), its gaps.
    pub(super) fn interface_state(&self, iface: &str) -> (bool, Option<TagPath>, Health) {
        let attached = self.filtered(iface);
        let tags = self.tag_path(iface).filter(|_| attached);
        (attached, tags, self.interfaces.get(iface).cloned().unwrap_or_default())
    }

    /// Checks every `--iface` and attaches the filter where it is missing.
    pub(super) fn check_interfaces(&mut self) {
        for iface in self.config.ifaces.clone() {
            self.check_interface(&iface);
        }
    }

    fn check_interface(&mut self, iface: &str) {
        let now = sys::net::if_index(iface);
        let on = self.pins.link_ifindex(iface);
        if now.is_some() && on == now {
            let health = self.interfaces.entry(iface.to_string()).or_default();
            if let Some(old) = health.renamed_to.take() {
                log(&format!("{iface}: has its name back (it was {old}); filtered throughout"));
            }
            health.end_gap();
            return;
        }
        let Some(ifindex) = now else {
            match on {
                // The device lives on under another name, filtered.
                Some(dev) if dev != 0 => {
                    let name = sys::net::if_name(dev);
                    let health = self.interfaces.entry(iface.to_string()).or_default();
                    if health.renamed_to.as_deref() != Some(&name) {
                        log(&format!(
                            "{iface}: renamed to {name} (ifindex {dev}); still filtered there. \
                             An interface named {iface} again gets the filter, and {name} \
                             loses it"
                        ));
                        health.renamed_to = Some(name);
                    }
                }
                _ => self.lost(iface, Absence::Gone),
            }
            return;
        };
        // There is an interface of that name and it is not filtered. Its
        // ifindex is new: a policy with untagged VLANs on it needs it first.
        if self.policy.interfaces.iter().any(|(name, _)| name == iface)
            && let Err(e) = self.install(self.policy.clone())
        {
            log(&format!("{iface}: installing the policy for its new ifindex {ifindex}: {e:#}"));
        }
        let attached = self.pins.ensure_link(
            &mut self.filter,
            iface,
            self.config.mode,
            self.config.vlan_offload,
        );
        match attached {
            Ok((_, tags)) => {
                self.tags.insert(iface.to_string(), tags);
                let health = self.interfaces.entry(iface.to_string()).or_default();
                health.renamed_to = None;
                let gap = health
                    .end_gap()
                    .map_or(String::new(), |d| format!(" after {} ms without it", d.as_millis()));
                log(&format!(
                    "{iface}: filter attached again (ifindex {ifindex}, {}, tags {}){gap}",
                    tags.hook().to_uppercase(),
                    tags.name()
                ));
            }
            Err(e) => self.lost(iface, Absence::Refused(format!("{e}"))),
        }
    }

    /// `iface` is not filtered, for `why`: logged when that is news.
    fn lost(&mut self, iface: &str, why: Absence) {
        let health = self.interfaces.entry(iface.to_string()).or_default();
        if health.gap.as_ref().map(|(.., w)| w) == Some(&why) {
            return;
        }
        health.renamed_to = None;
        let message = match &why {
            Absence::Gone => format!(
                "{iface}: gone (deleted, or renamed and the link went with it); its filter \
                 is attached again as soon as an interface of that name exists"
            ),
            Absence::Refused(e) => format!("{iface}: NOT filtered: {e}; trying again"),
        };
        health.begin_gap(why);
        log(&message);
    }
}
