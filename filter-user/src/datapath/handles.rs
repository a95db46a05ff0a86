//! The program's maps as the controller holds them: typed handles on every
//! map of `maps::ALL`, taken from a fresh load or from pins, and the checks
//! that pinned maps fit this version's program.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf,
    },
    programs::Xdp,
};
use filter_common::{
    BlockEntry, Config, Counter, CounterLine, DEBUG_PROGRAM_NAME, DeviceKey, DeviceName, IfaceConf,
    MAX_PEER_NETS, MacKey, PeerData, PeerSetKey, ProtectedKey, ProtectedNet, RuleHitKey, V6Table,
    maps,
};

use crate::error::LoadError;

/// Inner tries are created with the flags of the template in the object
/// (`BPF_F_NO_PREALLOC`, which LPM tries require).
pub(super) const INNER_TRIE_FLAGS: u32 = 1;

pub(super) const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;

/// Typed handles on every map, however obtained.
pub(super) struct Maps {
    pub(super) meta: Array<MapData, u64>,
    pub(super) generation: Array<MapData, u32>,
    pub(super) config: Array<MapData, Config>,
    pub(super) ifaces: HashMap<MapData, u32, IfaceConf>,
    pub(super) vlan_flags: Array<MapData, u32>,
    pub(super) devices: HashMap<MapData, DeviceKey, u32>,
    pub(super) device_lines: MapData,
    pub(super) v4_index: MapData,
    pub(super) protected: LpmTrie<MapData, ProtectedKey, ProtectedNet>,
    pub(super) rules: MapData,
    pub(super) peer_nets: MapData,
    /// `[slot * cpus + cpu]` (`filter_common::CounterLine`).
    pub(super) counter_lines: Array<MapData, CounterLine>,
    pub(super) global_stats: PerCpuArray<MapData, Counter>,
    pub(super) device_slots: HashMap<MapData, DeviceName, u32>,
    /// Until the daemon takes it for its reader.
    pub(super) events: Option<RingBuf<MapData>>,
    pub(super) event_stats: PerCpuArray<MapData, u64>,
    /// Only the program uses it; held so it is pinned with the rest.
    pub(super) _event_rate: Map,
    /// First fragments' ports; only the program uses it (held to pin it;
    /// the tests' `forget_flows` empties it).
    #[cfg_attr(
        not(feature = "lab"),
        expect(dead_code, reason = "read by the tests' forget_flows")
    )]
    pub(super) frags: Map,
    /// Each rate-limited device's counts this second; only the program
    /// uses it (held to pin it, so that limits hold across an upgrade).
    pub(super) _rate_state: Map,
    pub(super) rule_hits: PerCpuHashMap<MapData, RuleHitKey, u64>,
    pub(super) v6_nets: Array<MapData, V6Table>,
    /// A `Map` rather than a `ProgramArray`: aya 0.14's gives no access to
    /// its descriptor, which `debug_program_id` needs.
    pub(super) debug_progs: Map,
    /// Only the program uses the flow cache; held so it is pinned (flows
    /// outlive the daemon; the tests' `forget_flows` frees entries).
    pub(super) _flow_cache: Map,
    #[cfg_attr(
        not(feature = "lab"),
        expect(dead_code, reason = "read by the tests' forget_flows")
    )]
    pub(super) flow_tags: Map,
    /// Set once (`flows::seed`).
    pub(super) flow_seed: Map,
    pub(super) flow_stats: PerCpuArray<MapData, u64>,
    pub(super) blocks: LpmTrie<MapData, PeerData, BlockEntry>,
    pub(super) quarantine: HashMap<MapData, u32, BlockEntry>,
    pub(super) management: LpmTrie<MapData, ProtectedKey, u8>,
    pub(super) action_counts: Array<MapData, u32>,
    /// The maps of devices declared by MAC and of identity reports are
    /// `None` only in an object built before them, which the benchmark
    /// loads to compare (`bench --against`); this binary's always has them.
    pub(super) mac_devices: Option<HashMap<MapData, MacKey, u32>>,
    /// Until the daemon takes it for its reader.
    pub(super) identity: Option<RingBuf<MapData>>,
    pub(super) identity_stats: Option<PerCpuArray<MapData, u64>>,
    /// Only the program uses these (held to pin them).
    pub(super) _identity_rate: Option<Map>,
    pub(super) _identity_seen: Option<Map>,
}

impl Maps {
    pub(super) fn take(source: &mut impl MapSource) -> Result<Maps, LoadError> {
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
            frags: source.map(maps::FRAGS)?,
            _rate_state: source.map(maps::RATE_STATE)?,
            rule_hits: source.typed(maps::RULE_HITS)?,
            v6_nets: source.typed(maps::V6_NETS)?,
            debug_progs: source.map(maps::DEBUG_PROGS)?,
            _flow_cache: source.map(maps::FLOW_CACHE)?,
            flow_tags: source.map(maps::FLOW_TAGS)?,
            flow_seed: source.map(maps::FLOW_SEED)?,
            flow_stats: source.typed(maps::FLOW_STATS)?,
            blocks: source.typed(maps::BLOCKS)?,
            quarantine: source.typed(maps::QUARANTINE)?,
            management: source.typed(maps::MANAGEMENT)?,
            action_counts: source.typed(maps::ACTION_COUNTS)?,
            mac_devices: optional(source.typed(maps::MAC_DEVICES))?,
            identity: optional(source.typed(maps::IDENTITY))?,
            identity_stats: optional(source.typed(maps::IDENTITY_STATS))?,
            _identity_rate: optional(source.map(maps::IDENTITY_RATE))?,
            _identity_seen: optional(source.map(maps::IDENTITY_SEEN))?,
        })
    }
}

/// A map the object may lack (see `Maps::mac_devices`).
fn optional<T>(map: Result<T, LoadError>) -> Result<Option<T>, LoadError> {
    match map {
        Ok(m) => Ok(Some(m)),
        Err(LoadError::MissingMap(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hands out the program's maps by name, from a fresh load or from pins.
pub(super) trait MapSource {
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
pub(super) struct Fresh<'a> {
    pub(super) ebpf: &'a mut Ebpf,
    pub(super) pin: Option<&'a Path>,
}

impl MapSource for Fresh<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map, LoadError> {
        let map = self.ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        if let Some(dir) = self.pin {
            map.pin(dir.join(name))
                .map_err(|e| LoadError::system(format!("pinning map {name}"), e))?;
        }
        Ok(map)
    }
}

/// Maps pinned by an earlier daemon, in `dir`.
pub(super) struct Pinned<'a>(pub(super) &'a Path);

impl MapSource for Pinned<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map, LoadError> {
        pinned_map(self.0, name)
    }
}

/// The map pinned at `maps_dir/name`.
pub(crate) fn pinned_map(maps_dir: &Path, name: &str) -> Result<Map, LoadError> {
    let path = maps_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| LoadError::pin("", &path, e))?;
    Ok(Map::from_map_data(data)?)
}

/// The object's XDP program `name`.
pub(super) fn xdp_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Xdp, LoadError> {
    Ok(ebpf.program_mut(name).ok_or(LoadError::MissingMap(name))?.try_into()?)
}

/// Loads the debug-log program, takes the maps out of `ebpf` (pinning them
/// under `pin` if given) and installs the logger in `DEBUG_PROGS`:
/// whether or not the policy turns the log on, since the filter tail-calls
/// it only when `settings::DEBUG_LOG` is set.
pub(super) fn maps_with_logger(ebpf: &mut Ebpf, pin: Option<&Path>) -> Result<Maps, LoadError> {
    xdp_mut(ebpf, DEBUG_PROGRAM_NAME)?.load()?;
    let mut maps = Maps::take(&mut Fresh { ebpf, pin })?;
    let logger = xdp_mut(ebpf, DEBUG_PROGRAM_NAME)?;
    ProgramArray::try_from(&mut maps.debug_progs)?.set(0, logger.fd()?, 0)?;
    Ok(maps)
}

/// Possible CPUs: the length of a per-CPU map's value.
pub(super) fn possible_cpus() -> Result<usize, LoadError> {
    aya::util::nr_cpus().map_err(|(_, e)| LoadError::system("CPU count", e))
}

/// Refuses an upgrade whose maps would not fit the pinned ones (type, key
/// and value size, flags, capacity): the new program would misread them.
pub(super) fn check_map_layouts(object: &[u8], maps_dir: &Path) -> Result<(), LoadError> {
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

/// A new, empty `PEER_NETS` inner trie.
pub(super) fn new_peer_trie() -> Result<Map, LoadError> {
    let def = aya_obj::Map::new_from_params(
        BPF_MAP_TYPE_LPM_TRIE,
        (size_of::<u32>() + size_of::<PeerSetKey>()) as u32,
        size_of::<u8>() as u32,
        MAX_PEER_NETS,
        INNER_TRIE_FLAGS,
    );
    Ok(Map::LpmTrie(MapData::create(def, "vlanguard_nets", None)?))
}

pub(super) fn map_fd(map: &Map) -> u32 {
    match map {
        Map::LpmTrie(data) => data.fd().as_fd().as_raw_fd() as u32,
        _ => unreachable!("inner maps are LPM tries"),
    }
}
