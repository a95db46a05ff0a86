//! The program's lifecycle: load (fresh or with pins), adopt from pins
//! (a restarted daemon), upgrade a pinned filter in place keeping its maps
//! (ARCHITECTURE §5).

use std::path::Path;

use aya::{
    maps::{Array, HashMap, MapData},
    programs::Xdp,
};
use filter_common::{
    COUNTER_SLOTS, CPUS_GLOBAL, DeviceName, GENERATIONS, PROGRAM_NAME, V6Table, VLAN_IDS, maps,
    meta,
};

use super::{
    Filter, Program, counters, flows,
    handles::{
        Maps, Pinned, check_map_layouts, maps_with_logger, pinned_map, possible_cpus, xdp_mut,
    },
    slots::default_device_capacity,
    tc::{self, TcSource},
};
use crate::error::LoadError;

impl Filter {
    /// Loads `object` (normally [`PROGRAM_OBJECT`]) into the kernel, verifier
    /// included. Nothing is attached or pinned.
    pub fn load(object: &[u8]) -> Result<Filter, LoadError> {
        Filter::load_inner(object, None, default_device_capacity())
    }

    /// As [`Filter::load`], with counters for `capacity` devices (at most
    /// `COUNTER_SLOTS`).
    pub fn load_with_capacity(object: &[u8], capacity: u32) -> Result<Filter, LoadError> {
        Filter::load_inner(object, None, capacity)
    }

    /// As [`Filter::load`], with room for `entries` rule hits past the
    /// counter lines (`RULE_HITS`, 2^20 in the object) instead. Reading the
    /// rule hits walks every bucket of that hash, about 1.5 ms at full size;
    /// the kernel fuzz target reads them after every frame, for policies
    /// whose hits fit a small table. Tests only (feature `lab`).
    #[cfg(feature = "lab")]
    pub fn load_with_rule_hits(object: &[u8], entries: u32) -> Result<Filter, LoadError> {
        let capacity = checked_capacity(default_device_capacity())?;
        let cpus = possible_cpus()? as u32;
        let mut loader = sized_loader(capacity, &cpus)?;
        loader.map_max_entries(maps::RULE_HITS, entries);
        let mut ebpf = loader.load(object)?;
        xdp_mut(&mut ebpf, PROGRAM_NAME)?.load()?;
        let maps = maps_with_logger(&mut ebpf, None)?;
        Filter::with(Program::Loaded(ebpf), maps)
    }

    /// Loads `object` and pins the program at `prog` and each map at
    /// `maps/NAME`, so they outlive this process. The per-device counters
    /// hold `capacity` devices (fixed while the pins last).
    pub fn load_pinned(
        object: &[u8],
        prog: &Path,
        maps: &Path,
        capacity: u32,
    ) -> Result<Filter, LoadError> {
        Filter::load_inner(object, Some((prog, maps)), capacity)
    }

    pub(super) fn load_inner(
        object: &[u8],
        pin: Option<(&Path, &Path)>,
        capacity: u32,
    ) -> Result<Filter, LoadError> {
        let capacity = checked_capacity(capacity)?;
        let cpus = possible_cpus()? as u32;
        let mut ebpf = sized_loader(capacity, &cpus)?.load(object)?;
        let prog = xdp_mut(&mut ebpf, PROGRAM_NAME)?;
        prog.load()?;
        if let Some((prog_pin, _)) = pin {
            prog.pin(prog_pin)
                .map_err(|e| LoadError::pin("pinning the program at", prog_pin, e))?;
        }
        let maps = maps_with_logger(&mut ebpf, pin.map(|(_, maps)| maps))?;
        let mut filter = Filter::with(Program::Loaded(ebpf), maps)?;
        filter.pins = pin.map(|(p, m)| (p.to_path_buf(), m.to_path_buf()));
        Ok(filter)
    }

    /// Adopts a program and maps pinned by an earlier daemon: nothing is
    /// reloaded or detached, the running filter keeps enforcing.
    pub fn from_pins(prog: &Path, maps: &Path) -> Result<Filter, LoadError> {
        let program = Xdp::from_pin(prog, aya_obj::programs::XdpAttachType::Interface)
            .map_err(|e| LoadError::pin("", prog, e))?;
        let maps_dir = maps;
        pin_unpinned(&program, maps_dir)?;
        let maps = Maps::take(&mut Pinned(maps))?;
        let mut filter = Filter::with(Program::Pinned(Box::new(program)), maps)?.restore_state()?;
        filter.pins = Some((prog.to_path_buf(), maps_dir.to_path_buf()));
        filter.tc = TcSource::from_pin(prog)?;
        Ok(filter)
    }

    /// An upgrade (or downgrade) of a pinned filter to the program in
    /// `object`: when its instructions differ from the pinned program's,
    /// loads it over the pinned maps (state, counters, flows and policy
    /// kept), swaps it into every pinned link at once (BPF_LINK_UPDATE: the
    /// interface is never without a program), and pins it in place of the
    /// old one; returns the filter, the old and new tags, and the flows
    /// carried over from an earlier version's flow table. `Ok(None)`: the
    /// same program; adopt it. Refused, changing nothing, when this
    /// version's maps differ from the pinned ones.
    pub fn upgrade_pinned(
        object: &[u8],
        prog_pin: &Path,
        maps_dir: &Path,
        links: &[std::path::PathBuf],
        capacity: u32,
    ) -> Result<Option<(Filter, u64, u64, u64)>, LoadError> {
        let running = Xdp::from_pin(prog_pin, aya_obj::programs::XdpAttachType::Interface)
            .map_err(|e| LoadError::pin("", prog_pin, e))?;
        let old_tag = running.info()?.tag();
        pin_unpinned(&running, maps_dir)?;
        check_map_layouts(object, maps_dir)?;
        clear_unkept(&running, maps_dir)?;
        // aya takes a pinned map as it is, so the program's CPU count and
        // the lines' size are what the pinned lines hold; a filter without
        // them (an upgrade from an earlier layout) gets the earlier
        // counters' size, or `capacity`, or more if its devices already
        // hold higher slots.
        let cpus = possible_cpus()? as u32;
        let capacity = counters_capacity(maps_dir, capacity, cpus)?;
        let mut loader = sized_loader(capacity, &cpus)?;
        let paths: Vec<(&'static str, std::path::PathBuf)> =
            maps::ALL.iter().map(|name| (*name, maps_dir.join(name))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object)?;
        let (xdp_links, tc_links) = tc::links_by_hook(links)?;
        // The TC variant first, where the filter runs it: a program the
        // verifier refuses must stop the upgrade before any link changes.
        let tc_changes = tc::needs_upgrade(&mut ebpf, prog_pin, &tc_links)?;
        let prog = xdp_mut(&mut ebpf, PROGRAM_NAME)?;
        prog.load()?;
        let new_tag = prog.info()?.tag();
        if new_tag == old_tag {
            // The same XDP program; a release may still change the TC one.
            if tc_changes {
                tc::upgrade(&mut ebpf, prog_pin, tc_links)?;
            }
            return Ok(None);
        }
        // Counters first: a failure there stops the upgrade before the
        // flows' carry-over unpins the old flow table (after the old
        // counters' unpin it loses them, never counts them twice).
        counters::carry_over(maps_dir, cpus as usize)?;
        let carried = flows::carry_over(maps_dir)?;
        for link in xdp_links {
            let id = prog.attach_to_link(link)?;
            // The pin keeps the link; this handle only closes its descriptor.
            drop(prog.take_link(id)?);
        }
        std::fs::remove_file(prog_pin).map_err(|e| LoadError::pin("", prog_pin, e))?;
        prog.pin(prog_pin).map_err(|e| LoadError::pin("pinning the program at", prog_pin, e))?;
        tc::upgrade(&mut ebpf, prog_pin, tc_links)?;
        // The maps are pinned already (they are the running filter's).
        let maps = maps_with_logger(&mut ebpf, None)?;
        let mut filter = Filter::with(Program::Loaded(ebpf), maps)?.restore_state()?;
        filter.pins = Some((prog_pin.to_path_buf(), maps_dir.to_path_buf()));
        Ok(Some((filter, old_tag, new_tag, carried)))
    }

    /// What an earlier daemon wrote, so the next apply can clear it.
    pub(super) fn restore_state(mut self) -> Result<Filter, LoadError> {
        for g in 0..GENERATIONS {
            self.generations.rules_written[g as usize] =
                self.maps.meta.get(&(meta::RULES + g), 0)? as u32;
            self.generations.addrs_written[g as usize] =
                self.maps.meta.get(&(meta::DEVICE_ADDRS + g), 0)? as u32;
            self.generations.nets_written[g as usize] =
                self.maps.meta.get(&(meta::PEER_NETS + g), 0)? as u32;
            for vid in 0..VLAN_IDS {
                let index = g * VLAN_IDS + vid;
                if self.maps.vlan_flags.get(&index, 0)? != 0 {
                    self.generations.vlans_set[g as usize].push(index);
                }
            }
        }
        Ok(self)
    }
}

/// `capacity` if the counters can hold that many devices (1 to
/// `COUNTER_SLOTS`).
pub(super) fn checked_capacity(capacity: u32) -> Result<u32, LoadError> {
    if capacity == 0 || capacity > COUNTER_SLOTS {
        return Err(LoadError::Capacity(format!(
            "device capacity {capacity}: it must be 1 to {COUNTER_SLOTS}"
        )));
    }
    Ok(capacity)
}

/// Prepares pinned maps this version's program reads that earlier
/// versions' did not, when the running program does not use them: such a
/// map was left by a later version before a downgrade, and the earlier
/// version running since kept it no more. The IPv6 table is zeroed: a
/// policy the earlier version applied is not in it (the program would take
/// the old table's word for which addresses are protected); an empty one
/// makes the program ask the hash and trie until the start's apply writes
/// it. The counter lines' pin is removed: a slot the earlier version gave
/// another device still holds the first device's counts, and what it
/// counted since is in its own maps, which are carried over into new lines.
pub(super) fn clear_unkept(running: &Xdp, maps_dir: &Path) -> Result<(), LoadError> {
    let used = running.info()?.map_ids()?.unwrap_or_default();
    let unused = |name: &str| {
        aya::maps::MapInfo::from_pin(maps_dir.join(name)).is_ok_and(|i| !used.contains(&i.id()))
    };
    if unused(maps::V6_NETS) {
        let mut tables: Array<MapData, V6Table> =
            Array::try_from(pinned_map(maps_dir, maps::V6_NETS)?)?;
        for generation in 0..GENERATIONS {
            tables.set(generation, V6Table::default(), 0)?;
        }
    }
    if unused(maps::COUNTER_LINES) {
        let pin = maps_dir.join(maps::COUNTER_LINES);
        std::fs::remove_file(&pin).map_err(|e| LoadError::pin("", &pin, e))?;
    }
    Ok(())
}

/// Maps earlier versions used without pinning them (they did not take
/// them at load).
pub(super) const LEFT_UNPINNED: [&str; 1] = [maps::RATE_STATE];

/// Pins, under `maps_dir`, the maps of [`LEFT_UNPINNED`] that the running
/// program uses and that are not pinned, so that adopting or upgrading a
/// filter an earlier version loaded keeps them and what they hold instead
/// of starting new ones. The kernel keeps 15 bytes of a map's name, as many
/// as the longest in `maps::ALL` (a test in filter-common).
pub(super) fn pin_unpinned(running: &Xdp, maps_dir: &Path) -> Result<(), LoadError> {
    for id in running.info()?.map_ids()?.unwrap_or_default() {
        let Ok(info) = aya::maps::MapInfo::from_id(id) else { continue };
        let Some(name) = LEFT_UNPINNED.iter().find(|n| Some(**n) == info.name_as_str()) else {
            continue;
        };
        let pin = maps_dir.join(name);
        if pin.exists() {
            continue;
        }
        MapData::from_id(id)?.pin(&pin).map_err(|e| LoadError::pin("", &pin, e))?;
    }
    Ok(())
}

/// The counters' capacity (devices) for a filter pinned in `maps_dir`:
/// the pinned lines', else the pinned counters of an earlier layout's,
/// else `wanted` raised to fit the highest slot a device holds (earlier
/// versions handed out slots up to `MAX_DEVICE_SLOTS`), at most
/// `COUNTER_SLOTS`.
pub(super) fn counters_capacity(maps_dir: &Path, wanted: u32, cpus: u32) -> Result<u32, LoadError> {
    if let Ok(info) = aya::maps::MapInfo::from_pin(maps_dir.join(maps::COUNTER_LINES)) {
        return Ok(info.max_entries() / cpus);
    }
    if let Ok(info) = aya::maps::MapInfo::from_pin(maps_dir.join(maps::LEGACY_DEVICE_COUNTERS)) {
        return Ok(info.max_entries().min(COUNTER_SLOTS));
    }
    let wanted = checked_capacity(wanted)?;
    let slots: HashMap<MapData, DeviceName, u32> =
        HashMap::try_from(pinned_map(maps_dir, maps::DEVICE_SLOTS)?)?;
    let highest = slots.iter().filter_map(Result::ok).map(|(_, s)| s).max();
    let needed = highest.map_or(0, |s| s.saturating_add(1).next_power_of_two());
    Ok(wanted.max(needed).min(COUNTER_SLOTS))
}

/// A loader for this machine with counters for `capacity` devices: the
/// lines sized `capacity` × possible CPUs, the program told the CPUs.
pub(super) fn sized_loader(capacity: u32, cpus: &u32) -> Result<aya::EbpfLoader<'_>, LoadError> {
    let lines = capacity.checked_mul(*cpus).ok_or_else(|| {
        LoadError::Capacity(format!("device capacity {capacity} on {cpus} CPUs: too many lines"))
    })?;
    let mut loader = aya::EbpfLoader::new();
    loader.map_max_entries(maps::COUNTER_LINES, lines).override_global(CPUS_GLOBAL, cpus, true);
    Ok(loader)
}
