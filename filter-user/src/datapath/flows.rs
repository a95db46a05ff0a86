//! The flow cache's user-space side (the program keeps the flows, see
//! `filter-ebpf/src/flow.rs`): its hash seed, how many flows it holds, and
//! carrying the flows of an earlier version's LRU table over on upgrade.

use std::{io::Read as _, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use filter_common::{
    FLOW_WAYS, FlowEntry, FlowKey, FlowTags, FlowValue, flow_bucket, flow_hash, flow_stats,
    flow_tag, maps,
};

use crate::error::LoadError;

#[cfg(feature = "lab")]
impl super::Filter {
    /// Forgets the flows `keys` (every way of their buckets freed) and
    /// every first fragment's ports, so that the next frame meets the
    /// program as freshly loaded: the kernel fuzz target starts each input
    /// from this, the reference's table emptied alike, so that an input
    /// that makes them disagree does so on its own. The flow counters are
    /// left as they are. Tests only (feature `lab`).
    pub fn forget_flows(&mut self, keys: &[FlowKey]) -> Result<(), LoadError> {
        let seed = self.flow_seed()?;
        let mut tags: Array<&mut MapData, FlowTags> = Array::try_from(&mut self.maps.flow_tags)?;
        let mut buckets: Vec<u32> = keys.iter().map(|k| flow_bucket(flow_hash(k, seed))).collect();
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            tags.set(bucket, FlowTags::default(), 0)?;
        }
        let mut frags: HashMap<&mut MapData, filter_common::FragKey, filter_common::FragPorts> =
            HashMap::try_from(&mut self.maps.frags)?;
        let held: Vec<_> = frags.keys().collect::<Result<_, _>>()?;
        for k in held {
            frags.remove(&k)?;
        }
        Ok(())
    }
}

/// Flows the program ended, by outcome (summed over CPUs), and the flows
/// the cache holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Entries in use: live flows and flows past their timeout that no
    /// frame has found since (the program frees an entry when a frame finds
    /// it expired, or reuses it).
    pub live: u64,
    pub created: u64,
    pub expired: u64,
    pub revoked: u64,
    /// Live flows given up for new ones in a full bucket.
    pub evicted: u64,
}

impl FlowStats {
    /// From the program's counters: every entry taken is `created`, every
    /// entry given back or reused is one of the three outcomes.
    pub fn read(counters: &PerCpuArray<MapData, u64>) -> Result<FlowStats, LoadError> {
        let read = |i: u32| -> Result<u64, LoadError> {
            Ok(counters.get(&i, 0)?.iter().copied().fold(0u64, u64::wrapping_add))
        };
        let created = read(flow_stats::CREATED)?;
        let expired = read(flow_stats::EXPIRED)?;
        let revoked = read(flow_stats::REVOKED)?;
        let evicted = read(flow_stats::EVICTED)?;
        Ok(FlowStats {
            // Two CPUs racing for one entry can count an end twice; never
            // below zero.
            live: created.saturating_sub(expired + revoked + evicted),
            created,
            expired,
            revoked,
            evicted,
        })
    }
}

/// Gives a cache that has none a random hash seed, before the program runs
/// with it; a seed already set (the pinned maps of a running filter) stays,
/// or its flows would no longer be found.
pub fn seed(map: &mut Map) -> Result<u64, LoadError> {
    let mut seeds: Array<&mut MapData, u64> = Array::try_from(map)?;
    let current = seeds.get(&0, 0)?;
    if current != 0 {
        return Ok(current);
    }
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LoadError::system("reading /dev/urandom for the flow hash seed", e))?;
    // 0 means "not set".
    let seed = u64::from_ne_bytes(bytes) | 1;
    seeds.set(0, seed, 0)?;
    Ok(seed)
}

/// The flows of an earlier version's LRU table (`maps_dir/FLOWS`), written
/// into the new cache before the new program takes over, so connections
/// open across an upgrade keep their replies; then that table is unpinned.
/// Returns how many flows were carried over. Nothing to do without such a
/// table.
pub fn carry_over(maps_dir: &Path) -> Result<u64, LoadError> {
    let path = maps_dir.join(maps::LEGACY_FLOWS);
    if !path.exists() {
        return Ok(0);
    }
    let pinned = |name: &str| super::handles::pinned_map(maps_dir, name);
    let legacy: HashMap<MapData, FlowKey, FlowValue> =
        HashMap::try_from(pinned(maps::LEGACY_FLOWS)?)?;
    let seed = seed(&mut pinned(maps::FLOW_SEED)?)?;
    let mut cache: Array<MapData, FlowEntry> = Array::try_from(pinned(maps::FLOW_CACHE)?)?;
    let mut tags: Array<MapData, FlowTags> = Array::try_from(pinned(maps::FLOW_TAGS)?)?;
    let mut carried = 0u64;
    for entry in legacy.iter() {
        let (key, value) = entry?;
        let hash = flow_hash(&key, seed);
        let bucket = flow_bucket(hash);
        let mut line = tags.get(&bucket, 0)?;
        // More flows in one bucket than it has ways: the rest are dropped
        // as the program would evict them.
        let Some(way) = line.tags.iter().position(|t| *t == 0) else { continue };
        let tag = flow_tag(hash);
        cache.set(bucket * FLOW_WAYS + way as u32, FlowEntry { key, value, tag, _pad: 0 }, 0)?;
        line.tags[way] = tag;
        tags.set(bucket, line, 0)?;
        carried += 1;
    }
    // The old table's counters stay; what it created and did not end is
    // now either carried over or lost, the latter counted as evicted so
    // that the live count is the cache's.
    let mut counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(pinned(maps::FLOW_STATS)?)?;
    let sum = |v: &PerCpuValues<u64>| v.iter().copied().fold(0u64, u64::wrapping_add);
    let created = sum(&counters.get(&flow_stats::CREATED, 0)?);
    let ended =
        sum(&counters.get(&flow_stats::EXPIRED, 0)?) + sum(&counters.get(&flow_stats::REVOKED, 0)?);
    let mut evicted = counters.get(&flow_stats::EVICTED, 0)?.to_vec();
    if let Some(first) = evicted.first_mut() {
        *first = first.wrapping_add(created.saturating_sub(ended + carried));
    }
    counters.set(flow_stats::EVICTED, PerCpuValues::try_from(evicted)?, 0)?;
    std::fs::remove_file(&path).map_err(|e| LoadError::pin("", &path, e))?;
    Ok(carried)
}
