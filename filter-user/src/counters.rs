//! The per-device counters' user-space side that is not reading them
//! (`Filter::device_stats` reads them): carrying an earlier version's
//! counters over on upgrade.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use filter_common::{COUNTER_SLOTS, Counter, DeviceCounters, StatKey, maps};

use crate::error::LoadError;

/// The counters of an earlier version's per-CPU hash
/// (`maps_dir/DEVICE_STATS`, keyed by slot, direction, verdict and reason),
/// added into the new per-device lines before the new program takes over,
/// CPU by CPU, so that no device's totals go back; then that hash is
/// unpinned. Nothing to do without such a map.
pub fn carry_over(maps_dir: &Path) -> Result<(), LoadError> {
    let path = maps_dir.join(maps::LEGACY_DEVICE_STATS);
    if !path.exists() {
        return Ok(());
    }
    let pinned = |name: &str| -> Result<Map, LoadError> {
        let path = maps_dir.join(name);
        let data = MapData::from_pin(&path)
            .map_err(|e| LoadError::Pin(format!("{}: {e}", path.display())))?;
        Ok(Map::from_map_data(data)?)
    };
    let legacy: PerCpuHashMap<MapData, StatKey, Counter> =
        PerCpuHashMap::try_from(pinned(maps::LEGACY_DEVICE_STATS)?)?;
    let mut lines: PerCpuArray<MapData, DeviceCounters> =
        PerCpuArray::try_from(pinned(maps::DEVICE_COUNTERS)?)?;
    for entry in legacy.iter() {
        let (key, per_cpu) = entry?;
        let (direction, verdict) = (usize::from(key.direction), usize::from(key.verdict));
        if key.slot >= COUNTER_SLOTS || direction > 1 || verdict > 2 {
            continue;
        }
        let mut now = lines.get(&key.slot, 0)?.to_vec();
        for (line, old) in now.iter_mut().zip(per_cpu.iter()) {
            let c = &mut line.lines[direction][verdict];
            c.packets = c.packets.wrapping_add(old.packets);
            c.bytes = c.bytes.wrapping_add(old.bytes);
        }
        lines.set(key.slot, PerCpuValues::try_from(now)?, 0)?;
    }
    std::fs::remove_file(&path).map_err(|e| LoadError::Pin(format!("{}: {e}", path.display())))?;
    Ok(())
}
