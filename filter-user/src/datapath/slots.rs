//! Device slots: the index of a device's counter lines and flags, kept by
//! name across applies and restarts (`DEVICE_SLOTS`), handed out and
//! released as devices come and go, their counters cleared on reuse.

use std::collections::HashSet;

use filter_common::{COUNTER_SLOTS, CounterLine, DeviceName, MAX_DEVICE_NAME, RuleHitKey};

use super::Filter;
use crate::{compile::Compiled, error::LoadError, failpoints::crash_point};

impl Filter {
    /// Gives every device of `policy` its stable counter slot: the one it
    /// had, else the lowest free one. Returns the devices that are gone.
    pub(super) fn assign_slots(&mut self, policy: &mut Compiled) -> Result<Vec<String>, LoadError> {
        let wanted: HashSet<&str> = policy.devices.iter().map(|d| d.name.as_str()).collect();
        let removed: Vec<String> =
            self.slots.by_name.keys().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
        // Slots of removed devices stay taken until the switch, so a frame
        // decided by the old policy never counts against a new device.
        let mut taken: HashSet<u32> = self.slots.by_name.values().copied().collect();
        // Refused before anything changes if the new devices do not fit
        // the free slots.
        let capacity = self.device_capacity();
        let free = (0..capacity).filter(|s| !taken.contains(s)).count();
        let new =
            policy.devices.iter().filter(|d| !self.slots.by_name.contains_key(&d.name)).count();
        if new > free {
            return Err(LoadError::Capacity(format!(
                "{new} new device(s), {free} free counter slot(s): the counters hold {capacity} \
                 devices (`--device-capacity`, set when the filter was first loaded), and \
                 removed devices give theirs back only after the change; remove devices in one \
                 change and add the new ones in the next, or raise the capacity (`vlanguard \
                 detach`, then start the daemon with a larger --device-capacity)"
            )));
        }
        let mut next_free = 0u32;
        for d in &mut policy.devices {
            let slot = match self.slots.by_name.get(&d.name) {
                Some(slot) => *slot,
                None => {
                    while taken.contains(&next_free) {
                        next_free += 1;
                    }
                    // A free slot's counters are zero (released slots are
                    // cleared first); cleared again so that a new device
                    // starts from nothing whatever an earlier version left.
                    self.clear_counters(next_free)?;
                    taken.insert(next_free);
                    self.maps.device_slots.insert(device_name(&d.name), next_free, 0)?;
                    self.slots.by_name.insert(d.name.clone(), next_free);
                    self.slots.names.insert(next_free, d.name.clone());
                    crash_point!("apply::slots-half-assigned");
                    next_free
                }
            };
            d.slot = slot;
            // Rule-hit counters are per rule index: a changed list starts over.
            if let Some(old) = self.slots.fingerprints.insert(d.name.clone(), d.rules_fingerprint) {
                for (dir, changed) in
                    [(0u8, old.0 != d.rules_fingerprint.0), (1u8, old.1 != d.rules_fingerprint.1)]
                {
                    if changed {
                        self.reset_rule_hits(|k| k.slot == slot && k.direction == dir)?;
                        self.reset_rule_hit_line(slot, dir)?;
                    }
                }
            }
        }
        for name in &removed {
            self.slots.fingerprints.remove(name);
        }
        Ok(removed)
    }

    pub(super) fn reset_rule_hits(
        &mut self,
        which: impl Fn(&RuleHitKey) -> bool,
    ) -> Result<(), LoadError> {
        let stale: Vec<RuleHitKey> =
            self.maps.rule_hits.keys().filter_map(Result::ok).filter(|k| which(k)).collect();
        for k in stale {
            self.maps.rule_hits.remove(&k)?;
        }
        Ok(())
    }

    /// Zeroes the rule hits of direction `dir` in `slot`'s lines on every
    /// CPU. A read and a write of each whole line: what the program counts
    /// in that line in between is lost (an undercount of the frames of that
    /// moment).
    pub(super) fn reset_rule_hit_line(&mut self, slot: u32, dir: u8) -> Result<(), LoadError> {
        for index in self.line_indexes(slot)? {
            let mut line = self.maps.counter_lines.get(&index, 0)?;
            let Some(passed) = line.passed.get_mut(usize::from(dir)) else { return Ok(()) };
            passed.hits = Default::default();
            self.maps.counter_lines.set(index, line, 0)?;
        }
        Ok(())
    }

    /// The indexes of `slot`'s lines in `COUNTER_LINES`, one per CPU.
    pub(super) fn line_indexes(&self, slot: u32) -> Result<std::ops::Range<u32>, LoadError> {
        let cpus = self.cpus as u32;
        let first = slot.checked_mul(cpus).filter(|f| f + cpus <= self.maps.counter_lines.len());
        let first = first.ok_or_else(|| {
            LoadError::Capacity(format!("counter slot {slot} beyond the counters' capacity"))
        })?;
        Ok(first..first + cpus)
    }

    /// Forgets removed devices: their slots and counters.
    pub(super) fn release_slots(&mut self, removed: &[String]) -> Result<(), LoadError> {
        let gone: HashSet<u32> =
            removed.iter().filter_map(|n| self.slots.by_name.remove(n)).collect();
        self.slots.names.retain(|slot, _| !gone.contains(slot));
        // A removed device's quarantine goes with it: its slot may be
        // handed to a new device.
        for slot in &gone {
            let _ = self.maps.quarantine.remove(slot);
            // Before the name goes: a crash in between leaves the slot
            // taken, never a new device counted from old numbers.
            self.clear_counters(*slot)?;
        }
        self.count_actions()?;
        for name in removed {
            let _ = self.maps.device_slots.remove(&device_name(name));
        }
        if gone.is_empty() {
            return Ok(());
        }
        self.reset_rule_hits(|k| gone.contains(&k.slot))?;
        Ok(())
    }

    /// The counter slot of device `name`.
    pub fn device_slot(&self, name: &str) -> Option<u32> {
        self.slots.by_name.get(name).copied()
    }

    /// Counter slot -> device name, for every device of the running policy.
    pub fn slot_names(&self) -> &std::collections::HashMap<u32, String> {
        &self.slots.names
    }

    /// Devices the per-device counters hold (`--device-capacity`).
    pub fn device_capacity(&self) -> u32 {
        self.maps.counter_lines.len() / self.cpus as u32
    }

    /// Zeroes `slot`'s lines on every CPU: a slot handed to another device
    /// starts from nothing.
    pub(super) fn clear_counters(&mut self, slot: u32) -> Result<(), LoadError> {
        for index in self.line_indexes(slot)? {
            self.maps.counter_lines.set(index, CounterLine::default(), 0)?;
        }
        Ok(())
    }
}

/// Kernel memory the per-device counters may take by default: the lines
/// are preallocated, one per device and possible CPU
/// (`filter_common::CounterLine`, 192 bytes).
pub const COUNTERS_BUDGET: u64 = 96 << 20;

/// Bytes of counters a device slot takes on each CPU.
pub const SLOT_BYTES: u64 = size_of::<CounterLine>() as u64;

/// The devices the counters hold unless `--device-capacity` says otherwise:
/// as many as fit [`COUNTERS_BUDGET`] on this machine's possible CPUs, a
/// power of two between 4,096 and `COUNTER_SLOTS` (131,072 with up to 4
/// CPUs, 65,536 up to 8, 16,384 at 32, 4,096 from 65).
pub fn default_device_capacity() -> u32 {
    let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u64;
    let fit = COUNTERS_BUDGET / (SLOT_BYTES * cpus);
    let fit = u32::try_from(fit).unwrap_or(u32::MAX).clamp(4096, COUNTER_SLOTS);
    1 << (31 - fit.leading_zeros())
}

pub(super) fn device_name(name: &str) -> DeviceName {
    let mut bytes = [0u8; MAX_DEVICE_NAME + 1];
    let n = name.len().min(MAX_DEVICE_NAME);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    DeviceName { bytes }
}

pub(super) fn name_of(name: &DeviceName) -> String {
    let end = name.bytes.iter().position(|b| *b == 0).unwrap_or(name.bytes.len());
    String::from_utf8_lossy(&name.bytes[..end]).into_owned()
}
