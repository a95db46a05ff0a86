//! Reading the counters, rule hits, flow and event statistics and map
//! memory, for `/metrics` and `vlanguard stats`.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{Array, IterableMap as _, MapData};
use filter_common::{
    Counter, CounterLine, Direction, GENERATIONS, GLOBAL_STATS_LEN, Reason, RuleHitKey, Verdict,
    global_stat_index, maps,
};

use super::{Filter, flows::FlowStats};
use crate::{error::LoadError, sys::bpf};

impl Filter {
    /// Frames each rule let through: (slot, direction, rule index) -> count,
    /// rules that let nothing through left out. The first rules of each
    /// device from its line, the rest (and what a version before the lines
    /// counted) from the hash.
    pub fn rule_hits(&self) -> Result<BTreeMap<RuleHitKey, u64>, LoadError> {
        let mut out = BTreeMap::new();
        for entry in self.maps.rule_hits.iter() {
            let (key, per_cpu) = entry?;
            let n = per_cpu.iter().fold(0u64, |a, b| a.wrapping_add(*b));
            out.insert(key, n);
        }
        self.for_each_device_total(|slot, total| {
            for (direction, passed) in (0u8..).zip(&total.passed) {
                for (rule, &n) in (0u8..).zip(&passed.hits) {
                    if n != 0 {
                        let key = RuleHitKey { slot, direction, rule, _pad: 0 };
                        let total = out.entry(key).or_insert(0);
                        *total = total.wrapping_add(n);
                    }
                }
            }
        })?;
        Ok(out)
    }

    /// Drop events sent, suppressed by the rate limit, and lost (ring buffer
    /// full), summed over CPUs.
    pub fn event_stats(&self) -> Result<[u64; 3], LoadError> {
        let mut out = [0u64; 3];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.maps.event_stats.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Identity reports sent, suppressed by the rate limit, lost (ring
    /// buffer full) and left out as repeated (`filter_common::identity`),
    /// summed over CPUs.
    pub fn identity_stats(&self) -> Result<[u64; 4], LoadError> {
        let mut out = [0u64; 4];
        let Some(stats) = &self.maps.identity_stats else { return Ok(out) };
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = stats.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(out)
    }

    /// Per-device counters of the devices of the running policy, summed
    /// over CPUs: (slot, direction, verdict) -> counter, counters that
    /// never moved left out.
    pub fn device_stats(&self) -> Result<BTreeMap<DeviceStat, Counter>, LoadError> {
        let mut out = BTreeMap::new();
        self.for_each_device_total(|slot, total| {
            for direction in [Direction::In, Direction::Out] {
                for verdict in Verdict::ALL {
                    let c = *total.counter(direction, verdict);
                    if c != Counter::default() {
                        out.insert(DeviceStat { slot, direction, verdict }, c);
                    }
                }
            }
        })?;
        Ok(out)
    }

    /// Calls `f(slot, its lines summed over CPUs)` for each slot a device
    /// of the running policy holds: batched reads of the lines up to the
    /// highest slot in use instead of one system call per device and CPU. A
    /// slot beyond the lines (refused when assigned) is skipped.
    pub(super) fn for_each_device_total(
        &self,
        mut f: impl FnMut(u32, &CounterLine),
    ) -> Result<(), LoadError> {
        let Some(&highest) = self.slots.names.keys().max() else { return Ok(()) };
        let cpus = self.cpus;
        let len = (highest as usize + 1).min(self.device_capacity() as usize) * cpus;
        let fd = self.maps.counter_lines.map().fd().as_fd();
        bpf::for_each_chunk(fd, len, cpus, |first, lines: &[CounterLine]| {
            for (slot, per_cpu) in (first / cpus..).zip(lines.chunks_exact(cpus)) {
                let slot = slot as u32;
                if self.slots.names.contains_key(&slot) {
                    let mut total = CounterLine::default();
                    per_cpu.iter().for_each(|line| total.add(line));
                    f(slot, &total);
                }
            }
        })?;
        Ok(())
    }

    /// Global counters by (verdict, reason), summed over CPUs; every frame
    /// is in exactly one.
    pub fn global_stats(&self) -> Result<BTreeMap<(Verdict, Reason), Counter>, LoadError> {
        let mut out = BTreeMap::new();
        for reason in Reason::ALL {
            let verdict = reason.verdict();
            // A reason that drops may also have passed as a would-drop.
            let monitored = (verdict == Verdict::Drop).then_some(Verdict::WouldDrop);
            for verdict in [Some(verdict), monitored].into_iter().flatten() {
                let index = global_stat_index(verdict, reason);
                debug_assert!(index < GLOBAL_STATS_LEN);
                let per_cpu = self.maps.global_stats.get(&index, 0)?;
                out.insert((verdict, reason), sum(per_cpu.iter()));
            }
        }
        Ok(out)
    }

    /// Flows ended by the program, by outcome, and the flows in the cache.
    pub fn flow_stats(&self) -> Result<FlowStats, LoadError> {
        FlowStats::read(&self.maps.flow_stats)
    }

    /// The flow cache's hash seed (which bucket each flow goes to).
    pub fn flow_seed(&self) -> Result<u64, LoadError> {
        let seeds: Array<&MapData, u64> = Array::try_from(&self.maps.flow_seed)?;
        Ok(seeds.get(&0, 0)?)
    }

    /// Kernel memory of each map the program uses, as the kernel accounts
    /// it (`memlock` in the map's fdinfo), with its capacity.
    pub fn map_memory(&self) -> Result<Vec<MapMemory>, LoadError> {
        let info = self.program_info()?;
        let mut out = Vec::new();
        for id in info.map_ids()?.unwrap_or_default() {
            out.push(map_memory(id)?);
        }
        // The generations' peer-network tries, which the program reaches
        // through the outer array.
        let mut total = MapMemory { name: "PEER_NETS inner tries".into(), ..MapMemory::default() };
        for g in 0..GENERATIONS {
            let id = bpf::lookup_u32(self.maps.peer_nets.fd().as_fd(), g)
                .map_err(|e| LoadError::system(format!("reading {}", maps::PEER_NETS), e))?;
            if let Some(id) = id {
                let m = map_memory(id)?;
                total.max_entries += m.max_entries;
                total.memlock += m.memlock;
            }
        }
        out.push(total);
        Ok(out)
    }

    /// Map fill: device addresses and protected networks (both
    /// generations), and the inner tries alive for rule sets.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            device_addrs: self.generations.addrs_written.iter().map(|n| *n as usize).sum(),
            protected_nets: self.maps.protected.keys().count(),
            rule_entries: self.generations.rules_written.iter().map(|n| *n as usize).sum(),
            peer_nets: self.generations.nets_written.iter().map(|n| *n as usize).sum(),
        }
    }
}

/// One of a device's counters (`filter_common::CounterLine`): the
/// device's counter slot, the direction relative to it, the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceStat {
    pub slot: u32,
    pub direction: Direction,
    pub verdict: Verdict,
}

/// One map's kernel memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapMemory {
    pub name: String,
    pub max_entries: u64,
    /// Bytes the kernel charges for it.
    pub memlock: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    pub device_addrs: usize,
    pub protected_nets: usize,
    /// `RULES` entries in use (both generations).
    pub rule_entries: usize,
    /// Networks in the `PEER_NETS` tries (both generations).
    pub peer_nets: usize,
}

pub(super) fn sum<'a>(values: impl Iterator<Item = &'a Counter>) -> Counter {
    values.fold(Counter::default(), |mut acc, c| {
        acc.add(c);
        acc
    })
}

/// One map's kernel memory, from its fdinfo.
pub(super) fn map_memory(id: u32) -> Result<MapMemory, LoadError> {
    let map = aya::maps::MapInfo::from_id(id)?;
    let fd = map.fd()?;
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
    let field = |name: &str| {
        fdinfo.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    Ok(MapMemory {
        name: map.name_as_str().unwrap_or("?").to_string(),
        max_entries: field("max_entries:"),
        memlock: field("memlock:"),
    })
}
