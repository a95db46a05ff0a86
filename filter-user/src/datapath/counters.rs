//! The per-device counters' user-space side that is not reading them
//! (`Filter::device_stats` and `Filter::rule_hits` read them): carrying an
//! earlier version's counters over on upgrade.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap};
use filter_common::{
    Counter, CounterLine, DeviceCounters, DeviceName, Direction, RuleHitLine, StatKey, Verdict,
    maps,
};

use crate::error::LoadError;

/// Adds the per-device counters of an earlier version's maps into the new
/// lines (`COUNTER_LINES`) before the new program takes over, CPU by CPU,
/// so that no device's totals go back; then unpins those maps. The layouts
/// carried: the per-CPU counter and rule-hit arrays (`DEVICE_COUNTERS`,
/// `RULE_HIT_LINES`) and, before them, the per-CPU hash keyed by slot,
/// direction, verdict and reason (`DEVICE_STATS`). Only slots a device
/// holds (`DEVICE_SLOTS`) that fit the new lines are carried. Every old map
/// is read whole and unpinned before anything is written: a failure or
/// crash after that loses the old counts rather than adding them twice at
/// the next start. Nothing to do without such maps.
pub fn carry_over(maps_dir: &Path, cpus: usize) -> Result<(), LoadError> {
    let legacy =
        [maps::LEGACY_DEVICE_STATS, maps::LEGACY_DEVICE_COUNTERS, maps::LEGACY_RULE_HIT_LINES];
    if !legacy.iter().any(|name| maps_dir.join(name).exists()) {
        return Ok(());
    }
    let pinned = |name: &str| super::handles::pinned_map(maps_dir, name);
    let named: HashMap<MapData, DeviceName, u32> = HashMap::try_from(pinned(maps::DEVICE_SLOTS)?)?;
    let slots: HashSet<u32> = named.iter().filter_map(Result::ok).map(|(_, slot)| slot).collect();
    let mut lines: Array<MapData, CounterLine> = Array::try_from(pinned(maps::COUNTER_LINES)?)?;
    let capacity = lines.len() / cpus as u32;
    let mut sums = Sums { slots, capacity, cpus, lines: BTreeMap::new() };
    for name in legacy {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        match name {
            maps::LEGACY_DEVICE_STATS => sums.device_stats(pinned(name)?)?,
            maps::LEGACY_DEVICE_COUNTERS => sums.device_counters(pinned(name)?)?,
            _ => sums.rule_hit_lines(pinned(name)?)?,
        }
        std::fs::remove_file(&path).map_err(|e| LoadError::pin("", &path, e))?;
    }
    for (slot, add) in sums.lines {
        for (cpu, old) in add.iter().enumerate() {
            let index = slot * cpus as u32 + cpu as u32;
            let mut now = lines.get(&index, 0)?;
            now.add(old);
            lines.set(index, now, 0)?;
        }
    }
    Ok(())
}

/// What the old maps held, slot -> each CPU's counts in the new layout.
struct Sums {
    slots: HashSet<u32>,
    capacity: u32,
    cpus: usize,
    lines: BTreeMap<u32, Vec<CounterLine>>,
}

impl Sums {
    /// Slot `slot`'s lines, if it is carried.
    fn of(&mut self, slot: u32) -> Option<&mut Vec<CounterLine>> {
        if !self.slots.contains(&slot) || slot >= self.capacity {
            return None;
        }
        let cpus = self.cpus;
        Some(self.lines.entry(slot).or_insert_with(|| vec![CounterLine::default(); cpus]))
    }

    /// The slots devices hold below `len` (an old array's size): the
    /// ones worth a lookup.
    fn held(&self, len: u32) -> Vec<u32> {
        self.slots.iter().copied().filter(|s| *s < len).collect()
    }

    fn device_stats(&mut self, map: aya::maps::Map) -> Result<(), LoadError> {
        let old: PerCpuHashMap<MapData, StatKey, Counter> = PerCpuHashMap::try_from(map)?;
        for entry in old.iter() {
            let (key, per_cpu) = entry?;
            let direction = match key.direction {
                0 => Direction::In,
                1 => Direction::Out,
                _ => continue,
            };
            let Some(&verdict) = Verdict::ALL.get(usize::from(key.verdict)) else { continue };
            let Some(lines) = self.of(key.slot) else { continue };
            for (line, c) in lines.iter_mut().zip(per_cpu.iter()) {
                line.counter_mut(direction, verdict).add(c);
            }
        }
        Ok(())
    }

    fn device_counters(&mut self, map: aya::maps::Map) -> Result<(), LoadError> {
        self.per_cpu_array(map, |line, c: &DeviceCounters| {
            for direction in [Direction::In, Direction::Out] {
                for verdict in Verdict::ALL {
                    let old = &c.lines[direction as usize][verdict as usize];
                    line.counter_mut(direction, verdict).add(old);
                }
            }
        })
    }

    fn rule_hit_lines(&mut self, map: aya::maps::Map) -> Result<(), LoadError> {
        self.per_cpu_array(map, |line, c: &RuleHitLine| {
            for (passed, hits) in line.passed.iter_mut().zip(&c.hits) {
                for (n, o) in passed.hits.iter_mut().zip(hits) {
                    *n = n.wrapping_add(*o);
                }
            }
        })
    }

    /// Adds, with `add`, each CPU's value of an old per-CPU array indexed
    /// by slot into that CPU's line, for the slots devices hold.
    fn per_cpu_array<V: aya::Pod + Default + PartialEq>(
        &mut self,
        map: aya::maps::Map,
        add: impl Fn(&mut CounterLine, &V),
    ) -> Result<(), LoadError> {
        let old: PerCpuArray<MapData, V> = PerCpuArray::try_from(map)?;
        for slot in self.held(old.len()) {
            let per_cpu = old.get(&slot, 0)?;
            if per_cpu.iter().all(|c| *c == V::default()) {
                continue;
            }
            let Some(lines) = self.of(slot) else { continue };
            for (line, c) in lines.iter_mut().zip(per_cpu.iter()) {
                add(line, c);
            }
        }
        Ok(())
    }
}
