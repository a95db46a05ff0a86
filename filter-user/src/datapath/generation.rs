//! Applying a compiled policy: written into the inactive generation, then
//! `GENERATION[0]` is flipped with one map write (ARCHITECTURE §4): a frame
//! sees the old or the new policy, never a mix. The old generation's entries
//! are removed afterwards.
//!
//! Rule sets are consecutive `RULES` entries in the generation's half of
//! that array; the networks of rules with many of them go to a new inner
//! trie per generation (`PEER_NETS[generation]`), never changed once
//! published.

use std::{collections::HashMap as StdHashMap, os::fd::AsFd as _};

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use filter_common::{
    Config, DeviceInfo, DeviceKey, GENERATION_MASK, GENERATIONS, IfaceConf, MAX_DEVICE_LINES,
    MAX_MAC_DEVICES, MAX_PEER_NETS, MAX_RULE_ENTRIES, MAX_UNTAGGED_IFACES, MacKey,
    PEER_SET_KEY_BITS, PeerSetKey, ProtectedKey, ProtectedNet, Rule, RuleRange, Settings,
    UntaggedIface, V4_INDEX_ENTRIES, V4Net, V6Table, VLAN_IDS, meta, rule, v4net,
};

use super::{
    Filter,
    handles::{map_fd, new_peer_trie},
};
use crate::{
    compile::{Compiled, PeerPrefix},
    error::LoadError,
    failpoints::crash_point,
    sys::bpf,
};

impl Filter {
    /// The revision of the policy in force: applies since the pins were
    /// created (`META[EPOCH]`), so it survives restarts and upgrades.
    pub fn revision(&self) -> Result<u64, LoadError> {
        Ok(self.maps.meta.get(&meta::EPOCH, 0)?)
    }

    /// The active generation.
    pub fn active_generation(&self) -> Result<u32, LoadError> {
        Ok(self.maps.generation.get(&0, 0)? & GENERATION_MASK)
    }

    /// Installs `policy` with `ifaces` (ifindex, untagged VLAN) and returns
    /// the generation now active.
    pub fn apply(&mut self, policy: &Compiled, ifaces: &[(u32, u16)]) -> Result<u32, LoadError> {
        if policy.rule_entries() > MAX_RULE_ENTRIES as usize {
            return Err(LoadError::Capacity(format!(
                "the distinct rule lists need {} rule entries; the maps hold {MAX_RULE_ENTRIES}",
                policy.rule_entries(),
            )));
        }
        if policy.devices.len() > MAX_DEVICE_LINES as usize {
            return Err(LoadError::Capacity(format!(
                "{} devices; the maps hold {MAX_DEVICE_LINES}",
                policy.devices.len()
            )));
        }
        let learning = policy.devices.iter().filter(|d| d.learns).count();
        if learning > (MAX_MAC_DEVICES / GENERATIONS) as usize {
            return Err(LoadError::Capacity(format!(
                "{learning} devices have their addresses learned; the maps hold {}",
                MAX_MAC_DEVICES / GENERATIONS
            )));
        }
        if policy.peer_nets() > MAX_PEER_NETS as usize {
            return Err(LoadError::Capacity(format!(
                "rules with many peer networks need {} of them; the maps hold {MAX_PEER_NETS}",
                policy.peer_nets(),
            )));
        }
        let active = self.active_generation()?;
        let next = (active + 1) & GENERATION_MASK;
        let mut policy = policy.clone();
        let removed = self.assign_slots(&mut policy)?;

        // Leftovers of an interrupted apply would mix into the new policy.
        self.clear_generation(next)?;
        if let Err(e) = self.write_generation(next, &policy, ifaces) {
            // Leave nothing half-written behind; the active policy is untouched.
            let _ = self.clear_generation(next);
            return Err(e);
        }
        self.set_ifaces(ifaces)?;
        crash_point!("apply::before-flip");
        // The switch: one word.
        self.maps.generation.set(0, next, 0)?;
        crash_point!("apply::after-flip");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.maps.meta.set(meta::APPLIED_AT, now.as_secs(), 0)?;
        // Frames being decided may still read the old generation. Updating
        // a map of maps makes the kernel wait an RCU grace period, after
        // which no run of the program that read the old word is left.
        self.wait_for_readers(next)?;
        crash_point!("apply::before-cleanup");
        self.clear_generation(active)?;
        crash_point!("apply::before-slot-release");
        self.release_slots(&removed)?;
        Ok(next)
    }

    pub(super) fn write_generation(
        &mut self,
        generation: u32,
        c: &Compiled,
        ifaces: &[(u32, u16)],
    ) -> Result<(), LoadError> {
        // A new epoch per apply: flows opened before it are checked
        // against the rules again before they may pass.
        let epoch = (self.maps.meta.get(&meta::EPOCH, 0)? as u32).wrapping_add(1);
        self.maps.meta.set(meta::EPOCH, u64::from(epoch), 0)?;
        let settings = Settings {
            flags: c.settings_flags,
            events_per_sec: c.events_per_sec,
            epoch,
            flow_timeouts: c.flow_timeouts,
        };
        self.write_networks(generation, c)?;
        // Rule sets before the devices that point at them.
        let offsets = self.write_rule_sets(generation, c)?;
        crash_point!("apply::generation-half-written");
        self.write_device_lines(generation, c, &offsets)?;
        let (mut flags, v4_nets) = c.v4_table();
        self.write_addresses(generation, c, &v4_nets)?;
        if self.write_mac_devices(generation, c)? {
            flags |= filter_common::config::MAC_DEVICES;
        }
        let mut config =
            Config { settings, flags, v4_count: v4_nets.len() as u32, ..Config::default() };
        config.v4_nets[..v4_nets.len()].copy_from_slice(&v4_nets);
        // Interfaces with an untagged VLAN: in the line while they fit,
        // else in IFACES (`set_ifaces`).
        let untagged: Vec<UntaggedIface> = ifaces
            .iter()
            .filter(|(_, vlan)| *vlan != 0)
            .map(|(ifindex, vlan)| UntaggedIface { ifindex: *ifindex, vlan: *vlan, _pad: 0 })
            .collect();
        if untagged.len() <= MAX_UNTAGGED_IFACES {
            config.ifaces[..untagged.len()].copy_from_slice(&untagged);
            config.iface_count = untagged.len() as u32;
        } else {
            config.flags |= filter_common::config::IFACES_HASH;
        }
        self.maps.config.set(generation, config, 0)?;
        self.maps.v6_nets.set(generation, c.v6_table(), 0)?;
        Ok(())
    }

    /// The generation's VLAN flags, protected networks and management
    /// networks.
    fn write_networks(&mut self, generation: u32, c: &Compiled) -> Result<(), LoadError> {
        for (id, flags) in &c.vlans {
            let index = generation * VLAN_IDS + u32::from(*id);
            self.maps.vlan_flags.set(index, *flags, 0)?;
            self.generations.vlans_set[generation as usize].push(index);
        }
        for (prefix, vlan) in &c.protected {
            let value = ProtectedNet { vlan: *vlan, _pad: 0 };
            self.maps.protected.insert(&generation_key(generation, prefix), value, 0)?;
        }
        for prefix in &c.management {
            self.maps.management.insert(&generation_key(generation, prefix), 1, 0)?;
        }
        Ok(())
    }

    /// Each rule set's entries at its offset (returned, by set), peer sets
    /// renumbered for the generation (equal network lists share one) into
    /// a new trie, published in `PEER_NETS[generation]`.
    fn write_rule_sets(&mut self, generation: u32, c: &Compiled) -> Result<Vec<u32>, LoadError> {
        let mut offsets = Vec::with_capacity(c.rule_sets.len());
        let mut entries: Vec<Rule> = Vec::with_capacity(c.rule_entries());
        let mut set_ids: StdHashMap<&[PeerPrefix], u32> = StdHashMap::new();
        let mut nets: Vec<(u32, PeerPrefix)> = Vec::new();
        for set in &c.rule_sets {
            offsets.push(entries.len() as u32);
            for e in &set.entries {
                let mut e = *e;
                if e.flags & rule::PEER_SET != 0 {
                    let list = set.nets[e.set as usize].as_slice();
                    let next = set_ids.len() as u32;
                    e.set = *set_ids.entry(list).or_insert_with(|| {
                        nets.extend(list.iter().map(|p| (next, *p)));
                        next
                    });
                }
                entries.push(e);
            }
        }
        let base = generation * MAX_RULE_ENTRIES;
        let keys: Vec<u32> = (0..entries.len() as u32).map(|i| base + i).collect();
        bpf::update_batch(self.maps.rules.fd().as_fd(), &keys, &entries)?;
        let mut trie = new_peer_trie()?;
        {
            let mut t: LpmTrie<&mut MapData, PeerSetKey, u8> = (&mut trie).try_into()?;
            for (set, p) in &nets {
                let key = PeerSetKey { set: *set, addr: p.value.to_be_bytes() };
                t.insert(&Key::new(PEER_SET_KEY_BITS - 128 + p.len, key), 1, 0)?;
            }
        }
        bpf::update_batch(self.maps.peer_nets.fd().as_fd(), &[generation], &[map_fd(&trie)])?;
        self.generations.published = Some(trie);
        let g = generation as usize;
        self.generations.rules_written[g] = entries.len() as u32;
        self.generations.nets_written[g] = nets.len() as u32;
        self.maps.meta.set(meta::RULES + generation, entries.len() as u64, 0)?;
        self.maps.meta.set(meta::PEER_NETS + generation, nets.len() as u64, 0)?;
        Ok(offsets)
    }

    /// One line per device: its slot, rule sets (as entry ranges), VLAN,
    /// flags, MAC and rate limits.
    fn write_device_lines(
        &mut self,
        generation: u32,
        c: &Compiled,
        offsets: &[u32],
    ) -> Result<(), LoadError> {
        // Rule set `id` (0: none) as its entries.
        let range = |id: u32| -> RuleRange {
            match id.checked_sub(1) {
                Some(i) => RuleRange {
                    first: offsets[i as usize],
                    count: c.rule_sets[i as usize].entries.len() as u32,
                },
                None => RuleRange::default(),
            }
        };
        let lines: Vec<DeviceInfo> = c
            .devices
            .iter()
            .map(|d| DeviceInfo {
                slot: d.slot,
                rules_in: d.policy_in.map(range),
                rules_out: d.policy_out.map(range),
                vlan: d.vlan,
                flags: d.flags,
                mac: d.mac,
                _pad: [0; 2],
                packets_per_sec: d.packets_per_sec,
                syns_per_sec: d.syns_per_sec,
            })
            .collect();
        let keys: Vec<u32> =
            (0..lines.len() as u32).map(|i| generation * MAX_DEVICE_LINES + i).collect();
        bpf::update_batch(self.maps.device_lines.fd().as_fd(), &keys, &lines)?;
        Ok(())
    }

    /// Each device address: by direct index in its subnet's part of
    /// V4_INDEX (`v4_nets`), else in DEVICES.
    fn write_addresses(
        &mut self,
        generation: u32,
        c: &Compiled,
        v4_nets: &[V4Net],
    ) -> Result<(), LoadError> {
        let (mut index_keys, mut index_lines) = (Vec::new(), Vec::new());
        let mut addrs = 0u32;
        for (line, d) in c.devices.iter().enumerate() {
            for addr in &d.addrs {
                addrs += 1;
                let v4 = crate::addr::key_v4(*addr).map(u32::from);
                let indexed = v4.and_then(|a| {
                    v4_nets
                        .iter()
                        .find(|n| n.flags & v4net::INDEXED != 0 && a & n.mask == n.net)
                        .map(|n| n.base + (a & !n.mask))
                });
                match indexed {
                    Some(offset) => {
                        index_keys.push(generation * V4_INDEX_ENTRIES + offset);
                        index_lines.push(line as u32 + 1);
                    }
                    None => {
                        self.maps.devices.insert(
                            DeviceKey { generation, addr: *addr },
                            line as u32,
                            0,
                        )?;
                    }
                }
            }
        }
        bpf::update_batch(self.maps.v4_index.fd().as_fd(), &index_keys, &index_lines)?;
        self.generations.addrs_written[generation as usize] = addrs;
        self.maps.meta.set(meta::DEVICE_ADDRS + generation, u64::from(addrs), 0)?;
        Ok(())
    }

    /// The devices whose addresses are learned, by (VLAN, MAC); whether
    /// there are any.
    fn write_mac_devices(&mut self, generation: u32, c: &Compiled) -> Result<bool, LoadError> {
        let mut learning = c.devices.iter().enumerate().filter(|(_, d)| d.learns).peekable();
        if learning.peek().is_none() {
            return Ok(false);
        }
        let Some(map) = self.maps.mac_devices.as_mut() else {
            return Err(LoadError::MissingMap(filter_common::maps::MAC_DEVICES));
        };
        for (line, d) in learning {
            map.insert(MacKey { generation, vlan: d.vlan, mac: d.mac }, line as u32, 0)?;
        }
        Ok(true)
    }

    /// Removes every entry of `generation` from the policy maps.
    pub(super) fn clear_generation(&mut self, generation: u32) -> Result<(), LoadError> {
        // Its direct index, by the subnets its configuration line lists
        // (also after a restart, when nothing else says what was written).
        let config = self.maps.config.get(&generation, 0)?;
        for n in config.v4_nets.iter().take(config.v4_count as usize) {
            if n.flags & v4net::INDEXED != 0 {
                let size = (!n.mask).saturating_add(1).min(V4_INDEX_ENTRIES);
                let keys: Vec<u32> =
                    (0..size).map(|i| generation * V4_INDEX_ENTRIES + n.base + i).collect();
                bpf::update_batch(self.maps.v4_index.fd().as_fd(), &keys, &vec![0u32; keys.len()])?;
            }
        }
        self.maps.config.set(generation, Config::default(), 0)?;
        self.maps.v6_nets.set(generation, V6Table::default(), 0)?;
        self.generations.addrs_written[generation as usize] = 0;
        self.maps.meta.set(meta::DEVICE_ADDRS + generation, 0, 0)?;
        for index in std::mem::take(&mut self.generations.vlans_set[generation as usize]) {
            self.maps.vlan_flags.set(index, 0, 0)?;
        }
        let stale: Vec<DeviceKey> = self
            .maps
            .devices
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == generation)
            .collect();
        for k in stale {
            self.maps.devices.remove(&k)?;
        }
        if let Some(map) = self.maps.mac_devices.as_mut() {
            let stale: Vec<MacKey> =
                map.keys().filter_map(Result::ok).filter(|k| k.generation == generation).collect();
            for k in stale {
                map.remove(&k)?;
            }
        }
        clear_generation_trie(&mut self.maps.protected, generation)?;
        clear_generation_trie(&mut self.maps.management, generation)?;
        // Point the generation's slot at the empty trie, which matches
        // nothing (the same as no trie), so its trie can be freed. Its
        // `RULES` entries are left: no device of it points at them now.
        bpf::update_batch(
            self.maps.peer_nets.fd().as_fd(),
            &[generation],
            &[map_fd(&self.generations.empty_peers)],
        )?;
        let g = generation as usize;
        self.generations.rules_written[g] = 0;
        self.generations.nets_written[g] = 0;
        self.maps.meta.set(meta::RULES + generation, 0, 0)?;
        self.maps.meta.set(meta::PEER_NETS + generation, 0, 0)?;
        Ok(())
    }

    /// Returns after an RCU grace period: every run of the program that
    /// started before the call has finished. Publishing the new
    /// generation's trie again changes no decision; the update of a map of
    /// maps is what waits.
    pub(super) fn wait_for_readers(&mut self, generation: u32) -> Result<(), LoadError> {
        let trie = self.generations.published.take();
        let fd = map_fd(trie.as_ref().unwrap_or(&self.generations.empty_peers));
        bpf::update_batch(self.maps.peer_nets.fd().as_fd(), &[generation], &[fd])?;
        Ok(())
    }

    pub(super) fn set_ifaces(&mut self, ifaces: &[(u32, u16)]) -> Result<(), LoadError> {
        let stale: Vec<u32> = self
            .maps
            .ifaces
            .keys()
            .filter_map(Result::ok)
            .filter(|i| !ifaces.iter().any(|(j, _)| j == i))
            .collect();
        for i in stale {
            self.maps.ifaces.remove(&i)?;
        }
        for (ifindex, vlan) in ifaces {
            self.maps.ifaces.insert(ifindex, IfaceConf { untagged_vlan: *vlan, _pad: 0 }, 0)?;
        }
        Ok(())
    }
}

/// The key of `prefix` in a trie keyed by generation, then address
/// (`PROTECTED`, `MANAGEMENT`): prefix lengths count the generation bits.
pub(super) fn generation_key(generation: u32, prefix: &PeerPrefix) -> Key<ProtectedKey> {
    Key::new(32 + prefix.len, ProtectedKey { generation, addr: prefix.value.to_be_bytes() })
}

/// Removes `generation`'s entries from such a trie.
pub(super) fn clear_generation_trie<V: aya::Pod>(
    trie: &mut LpmTrie<MapData, ProtectedKey, V>,
    generation: u32,
) -> Result<(), LoadError> {
    let stale: Vec<Key<ProtectedKey>> =
        trie.keys().filter_map(Result::ok).filter(|k| k.data().generation == generation).collect();
    for k in stale {
        trie.remove(&k)?;
    }
    Ok(())
}
