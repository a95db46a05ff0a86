//! The per-device counters' user-space side that is not reading them
//! (`Filter::device_stats` reads them): carrying an earlier version's
//! counters over on upgrade.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use filter_common::{Counter, DeviceCounters, DeviceName, StatKey, maps};

use crate::error::LoadError;

/// The counters of an earlier version's per-CPU hash
/// (`maps_dir/DEVICE_STATS`, keyed by slot, direction, verdict and reason),
/// added into the new per-device lines before the new program takes over,
/// CPU by CPU, so that no device's totals go back; then that hash is
/// unpinned. Only slots a device holds (`DEVICE_SLOTS`) that fit the new
/// lines are carried. The old hash is read whole and unpinned before
/// anything is written: a failure or crash after that loses the old counts
/// rather than adding them twice at the next start. Nothing to do without
/// such a map.
pub fn carry_over(maps_dir: &Path) -> Result<(), LoadError> {
    let path = maps_dir.join(maps::LEGACY_DEVICE_STATS);
    if !path.exists() {
        return Ok(());
    }
    let pinned = |name: &str| crate::loader::pinned_map(maps_dir, name);
    let named: HashMap<MapData, DeviceName, u32> = HashMap::try_from(pinned(maps::DEVICE_SLOTS)?)?;
    let slots: std::collections::HashSet<u32> =
        named.iter().filter_map(Result::ok).map(|(_, slot)| slot).collect();
    let legacy: PerCpuHashMap<MapData, StatKey, Counter> =
        PerCpuHashMap::try_from(pinned(maps::LEGACY_DEVICE_STATS)?)?;
    let mut lines: PerCpuArray<MapData, DeviceCounters> =
        PerCpuArray::try_from(pinned(maps::DEVICE_COUNTERS)?)?;
    let capacity = lines.len();
    // Slot -> what each CPU counted, by direction and verdict.
    let mut sums: BTreeMap<u32, Vec<DeviceCounters>> = BTreeMap::new();
    for entry in legacy.iter() {
        let (key, per_cpu) = entry?;
        let (direction, verdict) = (usize::from(key.direction), usize::from(key.verdict));
        if !slots.contains(&key.slot) || key.slot >= capacity || direction > 1 || verdict > 2 {
            continue;
        }
        let lines =
            sums.entry(key.slot).or_insert_with(|| vec![DeviceCounters::default(); per_cpu.len()]);
        for (line, old) in lines.iter_mut().zip(per_cpu.iter()) {
            line.lines[direction][verdict].add(old);
        }
    }
    drop(legacy);
    std::fs::remove_file(&path).map_err(|e| LoadError::Pin(format!("{}: {e}", path.display())))?;
    for (slot, add) in sums {
        let mut now = lines.get(&slot, 0)?.to_vec();
        for (line, old) in now.iter_mut().zip(&add) {
            for (d, o) in line.lines.iter_mut().zip(&old.lines) {
                for (c, a) in d.iter_mut().zip(o) {
                    c.add(a);
                }
            }
        }
        lines.set(slot, PerCpuValues::try_from(now)?, 0)?;
    }
    Ok(())
}
