//! Loads the XDP program and writes compiled policies into its maps.
//!
//! A policy is written into the inactive generation, then `GENERATION[0]`
//! is flipped with one map write (DESIGN §4): a frame sees the old or the new
//! policy, never a mix. The old generation's entries are removed afterwards.

use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
    programs::Xdp,
};
use filter_common::{
    Counter, DeviceInfo, DeviceKey, GEN_SHIFT, GENERATION_MASK, GLOBAL_STATS_LEN, IfaceConf,
    PROGRAM_NAME, PeerKey, PortKey, ProtectedKey, ProtectedNet, Reason, RuleBits, Settings, StatKey, VLAN_IDS, Verdict,
    global_stat_index, maps, policy_with_gen,
};

use crate::{compile::Compiled, error::LoadError};

/// The release build of the XDP program, built by build.rs.
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlanguard-xdp"));

const GRACE_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

/// The loaded program and typed handles on its maps.
pub struct Filter {
    ebpf: Ebpf,
    generation: Array<MapData, u32>,
    settings: Array<MapData, Settings>,
    ifaces: HashMap<MapData, u32, IfaceConf>,
    vlan_flags: Array<MapData, u32>,
    devices: HashMap<MapData, DeviceKey, DeviceInfo>,
    protected: LpmTrie<MapData, ProtectedKey, ProtectedNet>,
    peers: LpmTrie<MapData, PeerKey, RuleBits>,
    ports: LpmTrie<MapData, PortKey, RuleBits>,
    device_stats: PerCpuHashMap<MapData, StatKey, Counter>,
    global_stats: PerCpuArray<MapData, Counter>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    Ok(T::try_from(map)?)
}

impl Filter {
    /// Loads `object` (normally [`PROGRAM_OBJECT`]) into the kernel, verifier
    /// included. Nothing is attached.
    pub fn load(object: &[u8]) -> Result<Filter, LoadError> {
        let mut ebpf = Ebpf::load(object)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(LoadError::MissingMap(PROGRAM_NAME))?
            .try_into()?;
        prog.load()?;
        Ok(Filter {
            generation: take(&mut ebpf, maps::GENERATION)?,
            settings: take(&mut ebpf, maps::SETTINGS)?,
            ifaces: take(&mut ebpf, maps::IFACES)?,
            vlan_flags: take(&mut ebpf, maps::VLAN_FLAGS)?,
            devices: take(&mut ebpf, maps::DEVICES)?,
            protected: take(&mut ebpf, maps::PROTECTED)?,
            peers: take(&mut ebpf, maps::PEERS)?,
            ports: take(&mut ebpf, maps::PORTS)?,
            device_stats: take(&mut ebpf, maps::DEVICE_STATS)?,
            global_stats: take(&mut ebpf, maps::GLOBAL_STATS)?,
            ebpf,
        })
    }

    pub fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Filter::load")
    }

    /// The active generation.
    pub fn active_generation(&self) -> Result<u32, LoadError> {
        Ok(self.generation.get(&0, 0)? & GENERATION_MASK)
    }

    /// Installs `policy` with `ifaces` (ifindex, untagged VLAN) and returns
    /// the generation now active.
    pub fn apply(&mut self, policy: &Compiled, ifaces: &[(u32, u16)]) -> Result<u32, LoadError> {
        let active = self.active_generation()?;
        let next = (active + 1) & GENERATION_MASK;

        // Leftovers of an interrupted apply would mix into the new policy.
        self.clear_generation(next)?;
        if let Err(e) = self.write_generation(next, policy) {
            // Leave nothing half-written behind; the active policy is untouched.
            let _ = self.clear_generation(next);
            return Err(e);
        }
        self.set_ifaces(ifaces)?;
        // The switch: one word.
        self.generation.set(0, next, 0)?;
        // Frames already being decided may still be reading the old
        // generation; XDP runs in an RCU read section of microseconds, so
        // this wait outlasts every one of them before entries disappear.
        std::thread::sleep(GRACE_PERIOD);
        self.clear_generation(active)?;
        Ok(next)
    }

    fn write_generation(&mut self, generation: u32, c: &Compiled) -> Result<(), LoadError> {
        self.settings.set(generation, Settings { flags: c.settings_flags }, 0)?;
        for (id, flags) in &c.vlans {
            self.vlan_flags.set(generation * VLAN_IDS + u32::from(*id), *flags, 0)?;
        }
        for (prefix, vlan) in &c.protected {
            let key = Key::new(
                32 + prefix.len,
                ProtectedKey { generation, addr: prefix.value.to_be_bytes() },
            );
            self.protected.insert(&key, ProtectedNet { vlan: *vlan, _pad: 0 }, 0)?;
        }
        for d in &c.devices {
            let info = DeviceInfo {
                slot: d.slot,
                policy_in: policy_with_gen(d.policy_in, generation),
                policy_out: policy_with_gen(d.policy_out, generation),
                vlan: d.vlan,
                flags: d.flags,
                mac: d.mac,
                _pad: [0; 2],
            };
            for addr in &d.addrs {
                self.devices.insert(DeviceKey { generation, addr: *addr }, info, 0)?;
            }
        }
        for (index, set) in c.rule_sets.iter().enumerate() {
            let policy = policy_with_gen(index as u32 + 1, generation);
            for (prefix, bits) in &set.peers {
                let key = Key::new(32 + prefix.len, PeerKey { policy, addr: prefix.value.to_be_bytes() });
                self.peers.insert(&key, *bits, 0)?;
            }
            for (prefix, bits) in &set.ports {
                let proto = (prefix.value >> 16) as u8;
                let port = (prefix.value as u16).to_be_bytes();
                let key = Key::new(32 + prefix.len, PortKey { policy, proto, port, _pad: 0 });
                self.ports.insert(&key, *bits, 0)?;
            }
        }
        Ok(())
    }

    /// Removes every entry of `generation` from the policy maps.
    fn clear_generation(&mut self, generation: u32) -> Result<(), LoadError> {
        self.settings.set(generation, Settings::default(), 0)?;
        for vid in 0..VLAN_IDS {
            let index = generation * VLAN_IDS + vid;
            if self.vlan_flags.get(&index, 0)? != 0 {
                self.vlan_flags.set(index, 0, 0)?;
            }
        }
        let stale: Vec<DeviceKey> = self
            .devices
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == generation)
            .collect();
        for k in stale {
            self.devices.remove(&k)?;
        }
        let stale: Vec<Key<ProtectedKey>> = self
            .protected
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().generation == generation)
            .collect();
        for k in stale {
            self.protected.remove(&k)?;
        }
        let stale: Vec<Key<PeerKey>> = self
            .peers
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().policy >> GEN_SHIFT == generation)
            .collect();
        for k in stale {
            self.peers.remove(&k)?;
        }
        let stale: Vec<Key<PortKey>> = self
            .ports
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().policy >> GEN_SHIFT == generation)
            .collect();
        for k in stale {
            self.ports.remove(&k)?;
        }
        Ok(())
    }

    fn set_ifaces(&mut self, ifaces: &[(u32, u16)]) -> Result<(), LoadError> {
        let stale: Vec<u32> = self
            .ifaces
            .keys()
            .filter_map(Result::ok)
            .filter(|i| !ifaces.iter().any(|(j, _)| j == i))
            .collect();
        for i in stale {
            self.ifaces.remove(&i)?;
        }
        for (ifindex, vlan) in ifaces {
            self.ifaces.insert(ifindex, IfaceConf { untagged_vlan: *vlan, _pad: 0 }, 0)?;
        }
        Ok(())
    }

    /// Per-device counters, summed over CPUs.
    pub fn device_stats(&self) -> Result<BTreeMap<StatKey, Counter>, LoadError> {
        let mut out = BTreeMap::new();
        for entry in self.device_stats.iter() {
            let (key, per_cpu) = entry?;
            out.insert(key, sum(per_cpu.iter()));
        }
        Ok(out)
    }

    /// Global counters by (verdict, reason), summed over CPUs; every frame
    /// is in exactly one.
    pub fn global_stats(&self) -> Result<BTreeMap<(Verdict, Reason), Counter>, LoadError> {
        let mut out = BTreeMap::new();
        for reason in Reason::ALL {
            let verdict = reason.verdict();
            let index = global_stat_index(verdict, reason);
            debug_assert!(index < GLOBAL_STATS_LEN);
            let per_cpu = self.global_stats.get(&index, 0)?;
            out.insert((verdict, reason), sum(per_cpu.iter()));
        }
        Ok(out)
    }

    /// Entry counts of the policy maps: (devices, protected, peers, ports).
    pub fn occupancy(&self) -> (usize, usize, usize, usize) {
        (
            self.devices.keys().count(),
            self.protected.keys().count(),
            self.peers.keys().count(),
            self.ports.keys().count(),
        )
    }
}

fn sum<'a>(values: impl Iterator<Item = &'a Counter>) -> Counter {
    values.fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}
