//! The datapath as the controller drives it: the program's lifecycle
//! (`lifecycle`: load, pin, adopt, upgrade), its maps (`handles`), applying a
//! compiled policy (`generation`), device slots (`slots`), operators'
//! actions (`actions`), the readers of counters and statistics (`stats`,
//! `counters`, `flows`), attaching (`attach`, `tc` for VLAN offload,
//! `offload`), the pin directory (`pins`), the debug log (`program_log`) and
//! every raw bpf(2) and libc call aya does not wrap (`sys`). [`Filter`] is
//! the facade; ARCHITECTURE §4–§5 say how generations and pins work.

pub mod actions;
pub mod attach;
pub mod counters;
pub mod flows;
mod generation;
mod handles;
mod learned;
mod lifecycle;
pub mod offload;
pub mod pins;
pub mod program_log;
mod slots;
mod stats;
mod tc;

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    os::fd::AsFd as _,
};

use aya::{
    Ebpf,
    maps::{Map, MapData, RingBuf},
    programs::Xdp,
};
use filter_common::{GENERATIONS, PROGRAM_NAME, maps};

use crate::{error::LoadError, sys::bpf};

use handles::{Maps, new_peer_trie, possible_cpus};
use slots::name_of;
pub use slots::{COUNTERS_BUDGET, SLOT_BYTES, default_device_capacity};
pub use stats::{DeviceStat, MapMemory, Occupancy};
use tc::TcSource;
pub use tc::{link_type, tc_pin};

/// The release build of the XDP program, built by build.rs.
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vlanguard-xdp"));

/// Where the program came from: loaded from the object now, or adopted from
/// its pin (a restarted daemon).
enum Program {
    Loaded(Ebpf),
    Pinned(Box<Xdp>),
}

/// The loaded program, its maps and what the controller keeps about them:
/// the facade the daemon, the CLI's local commands and the tests use.
pub struct Filter {
    program: Program,
    /// The TC variant when it is not in `program`'s object (`tc`).
    tc: Option<TcSource>,
    /// Where the program and the maps are pinned, if they are.
    pins: Option<(std::path::PathBuf, std::path::PathBuf)>,
    maps: Maps,
    /// What each generation holds (`generation`).
    generations: Generations,
    /// Which device has which slot (`slots`).
    slots: Slots,
    /// Possible CPUs: the length of a per-CPU value, and the lines of a
    /// device in `COUNTER_LINES` (the program's `VLANGUARD_CPUS`, set from
    /// the same count at load); read once rather than per device.
    cpus: usize,
}

/// What each generation of the maps holds, so applying and clearing one
/// touches only its own entries.
struct Generations {
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
    /// `VLAN_FLAGS` indices each generation has set, so clearing touches
    /// those instead of reading all 4,096.
    vlans_set: [Vec<u32>; GENERATIONS as usize],
}

/// Device slots as the controller keeps them (mirrors `DEVICE_SLOTS`).
struct Slots {
    /// Device name -> counter slot.
    by_name: BTreeMap<String, u32>,
    /// The reverse, for naming every drop event without rebuilding a map
    /// of all devices each time.
    names: StdHashMap<u32, String>,
    /// Device name -> fingerprints of its rule lists as last applied.
    fingerprints: StdHashMap<String, (u64, u64)>,
}

impl Filter {
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

    fn with(program: Program, mut maps: Maps) -> Result<Filter, LoadError> {
        flows::seed(&mut maps.flow_seed)?;
        let mut by_name = BTreeMap::new();
        for entry in maps.device_slots.iter() {
            let (name, slot) = entry?;
            by_name.insert(name_of(&name), slot);
        }
        let names = by_name.iter().map(|(n, s)| (*s, n.clone())).collect();
        Ok(Filter {
            program,
            tc: None,
            pins: None,
            maps,
            generations: Generations {
                rules_written: [0; GENERATIONS as usize],
                addrs_written: [0; GENERATIONS as usize],
                nets_written: [0; GENERATIONS as usize],
                published: None,
                empty_peers: new_peer_trie()?,
                vlans_set: Default::default(),
            },
            slots: Slots { by_name, names, fingerprints: StdHashMap::new() },
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
        bpf::lookup_u32(data.fd().as_fd(), 0)
            .map_err(|e| LoadError::system(format!("reading {}", maps::DEBUG_PROGS), e))
    }

    /// The drop-event ring buffer, for one reader.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.maps.events.take()
    }

    /// The identity-report ring buffer (the inventory's), for one reader.
    pub fn take_identity(&mut self) -> Option<RingBuf<MapData>> {
        self.maps.identity.take()
    }
}
