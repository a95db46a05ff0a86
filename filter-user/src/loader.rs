//! Loads the XDP program and writes compiled policies into its maps.
//!
//! A policy is written into the inactive generation, then `GENERATION[0]`
//! is flipped with one map write (ARCHITECTURE §4): a frame sees the old or the new
//! policy, never a mix. The old generation's entries are removed afterwards.
//!
//! Rule sets are consecutive `RULES` entries in the generation's half of
//! that array; the networks of rules with many of them go to a new inner
//! trie per generation (`PEER_NETS[generation]`), never changed once
//! published.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap,
        ProgramArray, RingBuf, lpm_trie::Key,
    },
    programs::Xdp,
};
use filter_common::{
    BlockEntry, COUNTER_SLOTS, CPUS_GLOBAL, Config, Counter, CounterLine, DEBUG_PROGRAM_NAME,
    DeviceInfo, DeviceKey, DeviceName, Direction, GENERATION_MASK, GENERATIONS, GLOBAL_STATS_LEN,
    IfaceConf, MAX_DEVICE_LINES, MAX_DEVICE_NAME, MAX_PEER_NETS, MAX_RULE_ENTRIES,
    MAX_UNTAGGED_IFACES, PEER_SET_KEY_BITS, PROGRAM_NAME, PeerData, PeerSetKey, ProtectedKey,
    ProtectedNet, Reason, Rule, RuleHitKey, RuleRange, Settings, UntaggedIface, V4_INDEX_ENTRIES,
    V6Table, VLAN_IDS, Verdict, global_stat_index, maps, meta, rule, v4net,
};
use ipnet::IpNet;

use crate::{
    compile::{Compiled, PeerPrefix},
    counters,
    error::LoadError,
    flows::{self, FlowStats},
    sys,
};

/// One of a device's counters (`filter_common::CounterLine`): the
/// device's counter slot, the direction relative to it, the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceStat {
    pub slot: u32,
    pub direction: Direction,
    pub verdict: Verdict,
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

/// The release build of the XDP program, built by build.rs.
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlanguard-xdp"));

/// The benchmarks' programs: `pass_floor` (XDP_PASS, the floor) and
/// `flood_tx` (XDP_TX, the flood generator).
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-programs"));

/// Inner tries are created with the flags of the template in the object
/// (`BPF_F_NO_PREALLOC`, which LPM tries require).
const INNER_TRIE_FLAGS: u32 = 1;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;

/// Where the program came from: loaded from the object now, or adopted from
/// its pin (a restarted daemon).
enum Program {
    Loaded(Ebpf),
    Pinned(Box<Xdp>),
}

mod tc;
use tc::TcSource;
pub use tc::{link_type, tc_pin};

/// The loaded program, its maps and what the controller keeps about them.
pub struct Filter {
    program: Program,
    /// The TC variant when it is not in `program`'s object (`tc`).
    tc: Option<TcSource>,
    /// Where the program and the maps are pinned, if they are.
    pins: Option<(std::path::PathBuf, std::path::PathBuf)>,
    maps: Maps,
    /// `RULES` entries and `PEER_NETS` networks each generation holds
    /// (mirrored in `META`).
    rules_written: [u32; GENERATIONS as usize],
    /// Device addresses each generation holds (mirrored in `META`).
    addrs_written: [u32; GENERATIONS as usize],
    nets_written: [u32; GENERATIONS as usize],
    /// The trie just published for the generation being applied, until
    /// the switch is done (`wait_for_readers` publishes it again).
    published: Option<Map>,
    /// A trie with no entries: what a cleared generation's slot points at
    /// (it matches nothing, like no trie at all).
    empty_peers: Map,
    /// Device name -> counter slot (mirrors `DEVICE_SLOTS`).
    slots: BTreeMap<String, u32>,
    /// The reverse, for naming every drop event without rebuilding a map
    /// of all devices each time.
    names: std::collections::HashMap<u32, String>,
    /// Device name -> fingerprints of its rule lists as last applied.
    fingerprints: std::collections::HashMap<String, (u64, u64)>,
    /// `VLAN_FLAGS` indices each generation has set, so clearing touches
    /// those instead of reading all 4,096.
    vlans_set: [Vec<u32>; GENERATIONS as usize],
    /// Possible CPUs: the length of a per-CPU value, and the lines of a
    /// device in `COUNTER_LINES` (the program's `VLANGUARD_CPUS`, set from
    /// the same count at load); read once rather than per device.
    cpus: usize,
}

/// Typed handles on every map, however obtained.
struct Maps {
    meta: Array<MapData, u64>,
    generation: Array<MapData, u32>,
    config: Array<MapData, Config>,
    ifaces: HashMap<MapData, u32, IfaceConf>,
    vlan_flags: Array<MapData, u32>,
    devices: HashMap<MapData, DeviceKey, u32>,
    device_lines: MapData,
    v4_index: MapData,
    protected: LpmTrie<MapData, ProtectedKey, ProtectedNet>,
    rules: MapData,
    peer_nets: MapData,
    /// `[slot * cpus + cpu]` (`filter_common::CounterLine`).
    counter_lines: Array<MapData, CounterLine>,
    global_stats: PerCpuArray<MapData, Counter>,
    device_slots: HashMap<MapData, DeviceName, u32>,
    /// Until the daemon takes it for its reader.
    events: Option<RingBuf<MapData>>,
    event_stats: PerCpuArray<MapData, u64>,
    /// Only the program uses it; held so it is pinned with the rest.
    _event_rate: Map,
    /// First fragments' ports; only the program uses it (held to pin it).
    _frags: Map,
    /// Each rate-limited device's counts this second; only the program
    /// uses it (held to pin it, so that limits hold across an upgrade).
    _rate_state: Map,
    rule_hits: PerCpuHashMap<MapData, RuleHitKey, u64>,
    v6_nets: Array<MapData, V6Table>,
    /// A `Map` rather than a `ProgramArray`: aya 0.14's gives no access to
    /// its descriptor, which `debug_program_id` needs.
    debug_progs: Map,
    /// Only the program uses the flow cache; held so it is pinned (flows
    /// outlive the daemon).
    _flow_cache: Map,
    _flow_tags: Map,
    /// Set once (`flows::seed`).
    flow_seed: Map,
    flow_stats: PerCpuArray<MapData, u64>,
    blocks: LpmTrie<MapData, PeerData, BlockEntry>,
    quarantine: HashMap<MapData, u32, BlockEntry>,
    management: LpmTrie<MapData, ProtectedKey, u8>,
    action_counts: Array<MapData, u32>,
}

impl Maps {
    fn take(source: &mut impl MapSource) -> Result<Maps, LoadError> {
        Ok(Maps {
            generation: source.typed(maps::GENERATION)?,
            config: source.typed(maps::CONFIG)?,
            ifaces: source.typed(maps::IFACES)?,
            vlan_flags: source.typed(maps::VLAN_FLAGS)?,
            devices: source.typed(maps::DEVICES)?,
            device_lines: source.raw(maps::DEVICE_LINES)?,
            v4_index: source.raw(maps::V4_INDEX)?,
            protected: source.typed(maps::PROTECTED)?,
            rules: source.raw(maps::RULES)?,
            peer_nets: source.raw(maps::PEER_NETS)?,
            counter_lines: source.typed(maps::COUNTER_LINES)?,
            global_stats: source.typed(maps::GLOBAL_STATS)?,
            meta: source.typed(maps::META)?,
            device_slots: source.typed(maps::DEVICE_SLOTS)?,
            events: Some(source.typed(maps::EVENTS)?),
            event_stats: source.typed(maps::EVENT_STATS)?,
            _event_rate: source.map(maps::EVENT_RATE)?,
            _frags: source.map(maps::FRAGS)?,
            _rate_state: source.map(maps::RATE_STATE)?,
            rule_hits: source.typed(maps::RULE_HITS)?,
            v6_nets: source.typed(maps::V6_NETS)?,
            debug_progs: source.map(maps::DEBUG_PROGS)?,
            _flow_cache: source.map(maps::FLOW_CACHE)?,
            _flow_tags: source.map(maps::FLOW_TAGS)?,
            flow_seed: source.map(maps::FLOW_SEED)?,
            flow_stats: source.typed(maps::FLOW_STATS)?,
            blocks: source.typed(maps::BLOCKS)?,
            quarantine: source.typed(maps::QUARANTINE)?,
            management: source.typed(maps::MANAGEMENT)?,
            action_counts: source.typed(maps::ACTION_COUNTS)?,
        })
    }
}

/// Hands out the program's maps by name, from a fresh load or from pins.
trait MapSource {
    fn map(&mut self, name: &'static str) -> Result<Map, LoadError>;

    fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
        &mut self,
        name: &'static str,
    ) -> Result<T, LoadError> {
        Ok(T::try_from(self.map(name)?)?)
    }

    /// The maps written with raw batched updates (see `sys`): `RULES` and
    /// the arrays of maps.
    fn raw(&mut self, name: &'static str) -> Result<MapData, LoadError> {
        match self.map(name)? {
            Map::ArrayOfMaps(data) | Map::Array(data) => Ok(data),
            _ => Err(LoadError::MissingMap(name)),
        }
    }
}

/// A fresh load, pinning each map under `pin` when given.
struct Fresh<'a> {
    ebpf: &'a mut Ebpf,
    pin: Option<&'a Path>,
}

impl MapSource for Fresh<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map, LoadError> {
        let map = self.ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        if let Some(dir) = self.pin {
            map.pin(dir.join(name)).map_err(|e| LoadError::Pin(format!("map {name}: {e}")))?;
        }
        Ok(map)
    }
}

/// Maps pinned by an earlier daemon, in `dir`.
struct Pinned<'a>(&'a Path);

impl MapSource for Pinned<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map, LoadError> {
        pinned_map(self.0, name)
    }
}

/// The map pinned at `maps_dir/name`.
pub(crate) fn pinned_map(maps_dir: &Path, name: &str) -> Result<Map, LoadError> {
    let path = maps_dir.join(name);
    let data =
        MapData::from_pin(&path).map_err(|e| LoadError::Pin(format!("{}: {e}", path.display())))?;
    Ok(Map::from_map_data(data)?)
}

/// `capacity` if the counters can hold that many devices (1 to
/// `COUNTER_SLOTS`).
fn checked_capacity(capacity: u32) -> Result<u32, LoadError> {
    if capacity == 0 || capacity > COUNTER_SLOTS {
        return Err(LoadError::Capacity(format!(
            "device capacity {capacity}: it must be 1 to {COUNTER_SLOTS}"
        )));
    }
    Ok(capacity)
}

/// The object's XDP program `name`.
fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, LoadError> {
    Ok(ebpf.program_mut(name).ok_or(LoadError::MissingMap(name))?.try_into()?)
}

/// Loads the debug-log program, takes the maps out of `ebpf` (pinning them
/// under `pin` if given) and installs the logger in `DEBUG_PROGS`:
/// whether or not the policy turns the log on, since the filter tail-calls
/// it only when `settings::DEBUG_LOG` is set.
fn maps_with_logger(ebpf: &mut Ebpf, pin: Option<&Path>) -> Result<Maps, LoadError> {
    xdp_mut(ebpf, DEBUG_PROGRAM_NAME)?.load()?;
    let mut maps = Maps::take(&mut Fresh { ebpf, pin })?;
    let logger = xdp_mut(ebpf, DEBUG_PROGRAM_NAME)?;
    ProgramArray::try_from(&mut maps.debug_progs)?.set(0, logger.fd()?, 0)?;
    Ok(maps)
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
fn clear_unkept(running: &Xdp, maps_dir: &Path) -> Result<(), LoadError> {
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
        std::fs::remove_file(&pin)
            .map_err(|e| LoadError::Pin(format!("{}: {e}", pin.display())))?;
    }
    Ok(())
}

/// Maps earlier versions used without pinning them (they did not take
/// them at load).
const LEFT_UNPINNED: [&str; 1] = [maps::RATE_STATE];

/// Pins, under `maps_dir`, the maps of [`LEFT_UNPINNED`] that the running
/// program uses and that are not pinned, so that adopting or upgrading a
/// filter an earlier version loaded keeps them and what they hold instead
/// of starting new ones. The kernel keeps 15 bytes of a map's name, as many
/// as the longest in `maps::ALL` (a test in filter-common).
fn pin_unpinned(running: &Xdp, maps_dir: &Path) -> Result<(), LoadError> {
    for id in running.info()?.map_ids()?.unwrap_or_default() {
        let Ok(info) = aya::maps::MapInfo::from_id(id) else { continue };
        let Some(name) = LEFT_UNPINNED.iter().find(|n| Some(**n) == info.name_as_str()) else {
            continue;
        };
        let pin = maps_dir.join(name);
        if pin.exists() {
            continue;
        }
        MapData::from_id(id)?
            .pin(&pin)
            .map_err(|e| LoadError::Pin(format!("{}: {e}", pin.display())))?;
    }
    Ok(())
}

/// Possible CPUs: the length of a per-CPU map's value.
fn possible_cpus() -> Result<usize, LoadError> {
    aya::util::nr_cpus().map_err(|(_, e)| LoadError::Pin(format!("CPU count: {e}")))
}

/// Refuses an upgrade whose maps would not fit the pinned ones (type, key
/// and value size, flags, capacity): the new program would misread them.
fn check_map_layouts(object: &[u8], maps_dir: &Path) -> Result<(), LoadError> {
    let obj = aya_obj::Object::parse(object).map_err(|e| LoadError::Refused(format!("{e}")))?;
    for name in maps::ALL {
        let (Some(want), Ok(have)) =
            (obj.maps.get(name), aya::maps::MapInfo::from_pin(maps_dir.join(name)))
        else {
            continue;
        };
        let mut differs = Vec::new();
        if want.map_type() != have.map_type().map(|t| t as u32).unwrap_or(u32::MAX) {
            differs.push("type");
        }
        if want.key_size() != have.key_size() {
            differs.push("key size");
        }
        if want.value_size() != have.value_size() {
            differs.push("value size");
        }
        // The counters' capacity is set at load (`--device-capacity`); the
        // program reads whatever the pinned map holds.
        let sized_at_load = name == maps::COUNTER_LINES;
        if want.max_entries() != 0 && want.max_entries() != have.max_entries() && !sized_at_load {
            differs.push("capacity");
        }
        if !differs.is_empty() {
            return Err(LoadError::Refused(format!(
                "this version's map {name} differs from the running filter's ({}): it cannot take \
                 over without a gap; run `vlanguard detach` and start it again, or keep the \
                 running version",
                differs.join(", ")
            )));
        }
    }
    Ok(())
}

/// The counters' capacity (devices) for a filter pinned in `maps_dir`:
/// the pinned lines', else the pinned counters of an earlier layout's,
/// else `wanted` raised to fit the highest slot a device holds (earlier
/// versions handed out slots up to `MAX_DEVICE_SLOTS`), at most
/// `COUNTER_SLOTS`.
fn counters_capacity(maps_dir: &Path, wanted: u32, cpus: u32) -> Result<u32, LoadError> {
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
fn sized_loader(capacity: u32, cpus: &u32) -> Result<aya::EbpfLoader<'_>, LoadError> {
    let lines = capacity.checked_mul(*cpus).ok_or_else(|| {
        LoadError::Capacity(format!("device capacity {capacity} on {cpus} CPUs: too many lines"))
    })?;
    let mut loader = aya::EbpfLoader::new();
    loader.map_max_entries(maps::COUNTER_LINES, lines).override_global(CPUS_GLOBAL, cpus, true);
    Ok(loader)
}

/// A new, empty `PEER_NETS` inner trie.
fn new_peer_trie() -> Result<Map, LoadError> {
    let def = aya_obj::Map::new_from_params(
        BPF_MAP_TYPE_LPM_TRIE,
        (size_of::<u32>() + size_of::<PeerSetKey>()) as u32,
        size_of::<u8>() as u32,
        MAX_PEER_NETS,
        INNER_TRIE_FLAGS,
    );
    Ok(Map::LpmTrie(MapData::create(def, "vlanguard_nets", None)?))
}

fn map_fd(map: &Map) -> u32 {
    match map {
        Map::LpmTrie(data) => data.fd().as_fd().as_raw_fd() as u32,
        _ => unreachable!("inner maps are LPM tries"),
    }
}

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

    fn load_inner(
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
            prog.pin(prog_pin).map_err(|e| LoadError::Pin(format!("program: {e}")))?;
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
            .map_err(|e| LoadError::Pin(format!("{}: {e}", prog.display())))?;
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
            .map_err(|e| LoadError::Pin(format!("{}: {e}", prog_pin.display())))?;
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
        std::fs::remove_file(prog_pin)
            .map_err(|e| LoadError::Pin(format!("{}: {e}", prog_pin.display())))?;
        prog.pin(prog_pin).map_err(|e| LoadError::Pin(format!("program: {e}")))?;
        tc::upgrade(&mut ebpf, prog_pin, tc_links)?;
        // The maps are pinned already (they are the running filter's).
        let maps = maps_with_logger(&mut ebpf, None)?;
        let mut filter = Filter::with(Program::Loaded(ebpf), maps)?.restore_state()?;
        filter.pins = Some((prog_pin.to_path_buf(), maps_dir.to_path_buf()));
        Ok(Some((filter, old_tag, new_tag, carried)))
    }

    /// The running program's tag (a hash of its instructions), as
    /// `status` shows it.
    pub fn program_tag(&self) -> Result<u64, LoadError> {
        Ok(self.program_info()?.tag())
    }

    /// The kernel's information on the running program.
    fn program_info(&self) -> Result<aya::programs::ProgramInfo, LoadError> {
        Ok(match &self.program {
            Program::Loaded(ebpf) => {
                ebpf.program(PROGRAM_NAME).ok_or(LoadError::MissingMap(PROGRAM_NAME))?.info()?
            }
            Program::Pinned(xdp) => xdp.info()?,
        })
    }

    /// What an earlier daemon wrote, so the next apply can clear it.
    fn restore_state(mut self) -> Result<Filter, LoadError> {
        for g in 0..GENERATIONS {
            self.rules_written[g as usize] = self.maps.meta.get(&(meta::RULES + g), 0)? as u32;
            self.addrs_written[g as usize] =
                self.maps.meta.get(&(meta::DEVICE_ADDRS + g), 0)? as u32;
            self.nets_written[g as usize] = self.maps.meta.get(&(meta::PEER_NETS + g), 0)? as u32;
            for vid in 0..VLAN_IDS {
                let index = g * VLAN_IDS + vid;
                if self.maps.vlan_flags.get(&index, 0)? != 0 {
                    self.vlans_set[g as usize].push(index);
                }
            }
        }
        Ok(self)
    }

    fn with(program: Program, mut maps: Maps) -> Result<Filter, LoadError> {
        flows::seed(&mut maps.flow_seed)?;
        let mut slots = BTreeMap::new();
        for entry in maps.device_slots.iter() {
            let (name, slot) = entry?;
            slots.insert(name_of(&name), slot);
        }
        Ok(Filter {
            program,
            tc: None,
            pins: None,
            maps,
            rules_written: [0; GENERATIONS as usize],
            addrs_written: [0; GENERATIONS as usize],
            nets_written: [0; GENERATIONS as usize],
            published: None,
            empty_peers: new_peer_trie()?,
            names: slots.iter().map(|(n, s)| (*s, n.clone())).collect(),
            slots,
            fingerprints: std::collections::HashMap::new(),
            vlans_set: Default::default(),
            cpus: possible_cpus()?,
        })
    }

    pub fn program(&mut self) -> &mut Xdp {
        match &mut self.program {
            Program::Loaded(ebpf) => ebpf
                .program_mut(PROGRAM_NAME)
                .and_then(|p| p.try_into().ok())
                .expect("loaded in Filter::load"),
            Program::Pinned(xdp) => xdp,
        }
    }

    /// The id of the debug-log program installed in `DEBUG_PROGS`, whose
    /// `AYA_LOGS` ring buffer carries the log (see `aya_log`).
    pub fn debug_program_id(&self) -> Result<Option<u32>, LoadError> {
        let Map::ProgramArray(data) = &self.maps.debug_progs else {
            return Err(LoadError::MissingMap(maps::DEBUG_PROGS));
        };
        sys::lookup_u32(data.fd().as_fd(), 0)
            .map_err(|e| LoadError::Pin(format!("reading {}: {e}", maps::DEBUG_PROGS)))
    }

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
        // The switch: one word.
        self.maps.generation.set(0, next, 0)?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.maps.meta.set(meta::APPLIED_AT, now.as_secs(), 0)?;
        // Frames being decided may still read the old generation. Updating
        // a map of maps makes the kernel wait an RCU grace period, after
        // which no run of the program that read the old word is left.
        self.wait_for_readers(next)?;
        self.clear_generation(active)?;
        self.release_slots(&removed)?;
        Ok(next)
    }

    /// Gives every device of `policy` its stable counter slot: the one it
    /// had, else the lowest free one. Returns the devices that are gone.
    fn assign_slots(&mut self, policy: &mut Compiled) -> Result<Vec<String>, LoadError> {
        let wanted: HashSet<&str> = policy.devices.iter().map(|d| d.name.as_str()).collect();
        let removed: Vec<String> =
            self.slots.keys().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
        // Slots of removed devices stay taken until the switch, so a frame
        // decided by the old policy never counts against a new device.
        let mut taken: HashSet<u32> = self.slots.values().copied().collect();
        // Refused before anything changes if the new devices do not fit
        // the free slots.
        let capacity = self.device_capacity();
        let free = (0..capacity).filter(|s| !taken.contains(s)).count();
        let new = policy.devices.iter().filter(|d| !self.slots.contains_key(&d.name)).count();
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
            let slot = match self.slots.get(&d.name) {
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
                    self.slots.insert(d.name.clone(), next_free);
                    self.names.insert(next_free, d.name.clone());
                    next_free
                }
            };
            d.slot = slot;
            // Rule-hit counters are per rule index: a changed list starts over.
            if let Some(old) = self.fingerprints.insert(d.name.clone(), d.rules_fingerprint) {
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
            self.fingerprints.remove(name);
        }
        Ok(removed)
    }

    fn reset_rule_hits(&mut self, which: impl Fn(&RuleHitKey) -> bool) -> Result<(), LoadError> {
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
    fn reset_rule_hit_line(&mut self, slot: u32, dir: u8) -> Result<(), LoadError> {
        for index in self.line_indexes(slot)? {
            let mut line = self.maps.counter_lines.get(&index, 0)?;
            let Some(passed) = line.passed.get_mut(usize::from(dir)) else { return Ok(()) };
            passed.hits = Default::default();
            self.maps.counter_lines.set(index, line, 0)?;
        }
        Ok(())
    }

    /// The indexes of `slot`'s lines in `COUNTER_LINES`, one per CPU.
    fn line_indexes(&self, slot: u32) -> Result<std::ops::Range<u32>, LoadError> {
        let cpus = self.cpus as u32;
        let first = slot.checked_mul(cpus).filter(|f| f + cpus <= self.maps.counter_lines.len());
        let first = first.ok_or_else(|| {
            LoadError::Capacity(format!("counter slot {slot} beyond the counters' capacity"))
        })?;
        Ok(first..first + cpus)
    }

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

    /// Forgets removed devices: their slots and counters.
    fn release_slots(&mut self, removed: &[String]) -> Result<(), LoadError> {
        let gone: HashSet<u32> = removed.iter().filter_map(|n| self.slots.remove(n)).collect();
        self.names.retain(|slot, _| !gone.contains(slot));
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

    /// Blocks `net` until boot time `expires_ns` (0: until unblocked).
    /// Keeps the program's longest-prefix lookup right: an entry inside
    /// another lasts at least as long as the one around it, so a more
    /// specific entry expiring never unblocks addresses its enclosing entry
    /// still blocks. Replaces an entry for the same `net`.
    pub fn block(&mut self, net: IpNet, mut entry: BlockEntry) -> Result<(), LoadError> {
        let net = net.trunc();
        // IPv4 lives at ::ffff:0:0/96 in the program's keys: an IPv6 block
        // around or inside it would block IPv4 hosts.
        if crate::compile::overlaps_v4_mapped(&net) {
            return Err(LoadError::Refused(format!(
                "{net} covers IPv4-mapped addresses (::ffff:0:0/96); block IPv4 networks as \
                 such and IPv6 ones outside that range"
            )));
        }
        let later = |a: u64, b: u64| if a == 0 || b == 0 { 0 } else { a.max(b) };
        let existing = self.blocks()?;
        for (other, e) in &existing {
            if *other != net && other.contains(&net) {
                entry.expires_ns = later(entry.expires_ns, e.expires_ns);
            }
        }
        for (inner, mut e) in existing {
            if inner != net && net.contains(&inner) {
                e.expires_ns = later(e.expires_ns, entry.expires_ns);
                self.maps.blocks.insert(&block_key(inner), e, 0)?;
            }
        }
        self.maps.blocks.insert(&block_key(net), entry, 0)?;
        self.count_actions()
    }

    /// Removes the entry for exactly `net`; false if there is none.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, LoadError> {
        let removed = self.maps.blocks.remove(&block_key(net.trunc())).is_ok();
        self.count_actions()?;
        Ok(removed)
    }

    /// Every blocklist entry, expired ones included.
    pub fn blocks(&self) -> Result<Vec<(IpNet, BlockEntry)>, LoadError> {
        let mut out = Vec::new();
        for key in self.maps.blocks.keys() {
            let key = key?;
            let entry = self.maps.blocks.get(&key, 0)?;
            out.push((block_net(&key), entry));
        }
        Ok(out)
    }

    /// Quarantines the device with counter slot `slot`.
    pub fn quarantine(&mut self, slot: u32, entry: BlockEntry) -> Result<(), LoadError> {
        self.maps.quarantine.insert(slot, entry, 0)?;
        self.count_actions()
    }

    /// Lifts the quarantine of `slot`; false if it had none.
    pub fn release(&mut self, slot: u32) -> Result<bool, LoadError> {
        let removed = self.maps.quarantine.remove(&slot).is_ok();
        self.count_actions()?;
        Ok(removed)
    }

    /// Quarantined devices by counter slot, expired ones included.
    pub fn quarantined(&self) -> Result<Vec<(u32, BlockEntry)>, LoadError> {
        self.maps.quarantine.iter().map(|r| r.map_err(LoadError::from)).collect()
    }

    /// Removes entries that expired before boot time `now_ns`.
    pub fn prune_actions(&mut self, now_ns: u64) -> Result<usize, LoadError> {
        let mut n = 0;
        for (net, e) in self.blocks()? {
            if !e.active(now_ns) && self.maps.blocks.remove(&block_key(net)).is_ok() {
                n += 1;
            }
        }
        for (slot, e) in self.quarantined()? {
            if !e.active(now_ns) && self.maps.quarantine.remove(&slot).is_ok() {
                n += 1;
            }
        }
        self.count_actions()?;
        Ok(n)
    }

    /// Tells the program how many entries to look for (0: skip lookups).
    fn count_actions(&mut self) -> Result<(), LoadError> {
        let blocks = self.maps.blocks.keys().count() as u32;
        let quarantined = self.maps.quarantine.keys().count() as u32;
        self.maps.action_counts.set(filter_common::action_counts::BLOCKS, blocks, 0)?;
        self.maps.action_counts.set(filter_common::action_counts::QUARANTINE, quarantined, 0)?;
        Ok(())
    }

    /// The drop-event ring buffer, for one reader.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.maps.events.take()
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

    /// The counter slot of device `name`.
    pub fn device_slot(&self, name: &str) -> Option<u32> {
        self.slots.get(name).copied()
    }

    /// Counter slot -> device name, for every device of the running policy.
    pub fn slot_names(&self) -> &std::collections::HashMap<u32, String> {
        &self.names
    }

    fn write_generation(
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
        for (id, flags) in &c.vlans {
            let index = generation * VLAN_IDS + u32::from(*id);
            self.maps.vlan_flags.set(index, *flags, 0)?;
            self.vlans_set[generation as usize].push(index);
        }
        for (prefix, vlan) in &c.protected {
            let value = ProtectedNet { vlan: *vlan, _pad: 0 };
            self.maps.protected.insert(&generation_key(generation, prefix), value, 0)?;
        }
        for prefix in &c.management {
            self.maps.management.insert(&generation_key(generation, prefix), 1, 0)?;
        }
        // Rule sets before the devices that point at them: each set's
        // entries at its offset, peer sets renumbered for the generation
        // (equal network lists share one).
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
        sys::update_batch(self.maps.rules.fd().as_fd(), &keys, &entries)?;
        let mut trie = new_peer_trie()?;
        {
            let mut t: LpmTrie<&mut MapData, PeerSetKey, u8> = (&mut trie).try_into()?;
            for (set, p) in &nets {
                let key = PeerSetKey { set: *set, addr: p.value.to_be_bytes() };
                t.insert(&Key::new(PEER_SET_KEY_BITS - 128 + p.len, key), 1, 0)?;
            }
        }
        sys::update_batch(self.maps.peer_nets.fd().as_fd(), &[generation], &[map_fd(&trie)])?;
        self.published = Some(trie);
        let g = generation as usize;
        self.rules_written[g] = entries.len() as u32;
        self.nets_written[g] = nets.len() as u32;
        self.maps.meta.set(meta::RULES + generation, u64::from(self.rules_written[g]), 0)?;
        self.maps.meta.set(meta::PEER_NETS + generation, u64::from(self.nets_written[g]), 0)?;
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
        sys::update_batch(self.maps.device_lines.fd().as_fd(), &keys, &lines)?;
        // Each address: by direct index in its subnet's part of V4_INDEX,
        // else in DEVICES.
        let (flags, v4_nets) = c.v4_table();
        let (mut index_keys, mut index_lines) = (Vec::new(), Vec::new());
        let mut addrs = 0u32;
        for (line, d) in c.devices.iter().enumerate() {
            for addr in &d.addrs {
                addrs += 1;
                let v4 = std::net::Ipv6Addr::from(*addr).to_ipv4_mapped().map(u32::from);
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
        sys::update_batch(self.maps.v4_index.fd().as_fd(), &index_keys, &index_lines)?;
        self.addrs_written[generation as usize] = addrs;
        self.maps.meta.set(meta::DEVICE_ADDRS + generation, u64::from(addrs), 0)?;
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

    /// Removes every entry of `generation` from the policy maps.
    fn clear_generation(&mut self, generation: u32) -> Result<(), LoadError> {
        // Its direct index, by the subnets its configuration line lists
        // (also after a restart, when nothing else says what was written).
        let config = self.maps.config.get(&generation, 0)?;
        for n in config.v4_nets.iter().take(config.v4_count as usize) {
            if n.flags & v4net::INDEXED != 0 {
                let size = (!n.mask).saturating_add(1).min(V4_INDEX_ENTRIES);
                let keys: Vec<u32> =
                    (0..size).map(|i| generation * V4_INDEX_ENTRIES + n.base + i).collect();
                sys::update_batch(self.maps.v4_index.fd().as_fd(), &keys, &vec![0u32; keys.len()])?;
            }
        }
        self.maps.config.set(generation, Config::default(), 0)?;
        self.maps.v6_nets.set(generation, V6Table::default(), 0)?;
        self.addrs_written[generation as usize] = 0;
        self.maps.meta.set(meta::DEVICE_ADDRS + generation, 0, 0)?;
        for index in std::mem::take(&mut self.vlans_set[generation as usize]) {
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
        clear_generation_trie(&mut self.maps.protected, generation)?;
        clear_generation_trie(&mut self.maps.management, generation)?;
        // Point the generation's slot at the empty trie, which matches
        // nothing (the same as no trie), so its trie can be freed. Its
        // `RULES` entries are left: no device of it points at them now.
        sys::update_batch(
            self.maps.peer_nets.fd().as_fd(),
            &[generation],
            &[map_fd(&self.empty_peers)],
        )?;
        let g = generation as usize;
        self.rules_written[g] = 0;
        self.nets_written[g] = 0;
        self.maps.meta.set(meta::RULES + generation, 0, 0)?;
        self.maps.meta.set(meta::PEER_NETS + generation, 0, 0)?;
        Ok(())
    }

    /// Returns after an RCU grace period: every run of the program that
    /// started before the call has finished. Publishing the new
    /// generation's trie again changes no decision; the update of a map of
    /// maps is what waits.
    fn wait_for_readers(&mut self, generation: u32) -> Result<(), LoadError> {
        let trie = self.published.take();
        let fd = map_fd(trie.as_ref().unwrap_or(&self.empty_peers));
        sys::update_batch(self.maps.peer_nets.fd().as_fd(), &[generation], &[fd])?;
        Ok(())
    }

    fn set_ifaces(&mut self, ifaces: &[(u32, u16)]) -> Result<(), LoadError> {
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
    fn for_each_device_total(&self, mut f: impl FnMut(u32, &CounterLine)) -> Result<(), LoadError> {
        let Some(&highest) = self.names.keys().max() else { return Ok(()) };
        let cpus = self.cpus;
        let len = (highest as usize + 1).min(self.device_capacity() as usize) * cpus;
        let fd = self.maps.counter_lines.map().fd().as_fd();
        sys::for_each_chunk(fd, len, cpus, |first, lines: &[CounterLine]| {
            for (slot, per_cpu) in (first / cpus..).zip(lines.chunks_exact(cpus)) {
                let slot = slot as u32;
                if self.names.contains_key(&slot) {
                    let mut total = CounterLine::default();
                    per_cpu.iter().for_each(|line| total.add(line));
                    f(slot, &total);
                }
            }
        })?;
        Ok(())
    }

    /// Devices the per-device counters hold (`--device-capacity`).
    pub fn device_capacity(&self) -> u32 {
        self.maps.counter_lines.len() / self.cpus as u32
    }

    /// Zeroes `slot`'s lines on every CPU: a slot handed to another device
    /// starts from nothing.
    fn clear_counters(&mut self, slot: u32) -> Result<(), LoadError> {
        for index in self.line_indexes(slot)? {
            self.maps.counter_lines.set(index, CounterLine::default(), 0)?;
        }
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
            let id = sys::lookup_u32(self.maps.peer_nets.fd().as_fd(), g)
                .map_err(|e| LoadError::Pin(format!("reading {}: {e}", maps::PEER_NETS)))?;
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
            device_addrs: self.addrs_written.iter().map(|n| *n as usize).sum(),
            protected_nets: self.maps.protected.keys().count(),
            rule_entries: self.rules_written.iter().map(|n| *n as usize).sum(),
            peer_nets: self.nets_written.iter().map(|n| *n as usize).sum(),
        }
    }
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

fn device_name(name: &str) -> DeviceName {
    let mut bytes = [0u8; MAX_DEVICE_NAME + 1];
    let n = name.len().min(MAX_DEVICE_NAME);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    DeviceName { bytes }
}

fn name_of(name: &DeviceName) -> String {
    let end = name.bytes.iter().position(|b| *b == 0).unwrap_or(name.bytes.len());
    String::from_utf8_lossy(&name.bytes[..end]).into_owned()
}

fn sum<'a>(values: impl Iterator<Item = &'a Counter>) -> Counter {
    values.fold(Counter::default(), |mut acc, c| {
        acc.add(c);
        acc
    })
}

/// The test lab's VLAN switch program (tc); see `filter_common::lab`.
#[cfg(feature = "lab")]
pub static LAB_VLAN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab-vlan"));

fn block_key(net: IpNet) -> Key<PeerData> {
    let prefix = crate::compile::net_prefixes(&net);
    // An IPv4 net is one prefix; IPv6 nets overlapping ::ffff:0:0/96 are
    // split by net_prefixes, but blocks are taken as given.
    let (addr, len) = match net {
        IpNet::V4(_) => (prefix[0].value.to_be_bytes(), prefix[0].len),
        IpNet::V6(n) => (n.network().octets(), u32::from(n.prefix_len())),
    };
    Key::new(len, addr)
}

fn block_net(key: &Key<PeerData>) -> IpNet {
    let v6 = std::net::Ipv6Addr::from(key.data());
    match v6.to_ipv4_mapped() {
        Some(v4) if key.prefix_len() >= 96 => {
            IpNet::V4(ipnet::Ipv4Net::new(v4, (key.prefix_len() - 96) as u8).expect("prefix"))
        }
        _ => IpNet::V6(ipnet::Ipv6Net::new(v6, key.prefix_len() as u8).expect("prefix")),
    }
}

/// One map's kernel memory, from its fdinfo.
fn map_memory(id: u32) -> Result<MapMemory, LoadError> {
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

/// The key of `prefix` in a trie keyed by generation, then address
/// (`PROTECTED`, `MANAGEMENT`): prefix lengths count the generation bits.
fn generation_key(generation: u32, prefix: &PeerPrefix) -> Key<ProtectedKey> {
    Key::new(32 + prefix.len, ProtectedKey { generation, addr: prefix.value.to_be_bytes() })
}

/// Removes `generation`'s entries from such a trie.
fn clear_generation_trie<V: aya::Pod>(
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
