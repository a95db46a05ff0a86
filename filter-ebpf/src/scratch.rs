//! This CPU's scratch space for the frame being decided: the parsed frame,
//! the decision, the flow and fragment keys, the staged rule query and
//! the last clock reading, in one per-CPU map value.
//!
//! Why per-CPU map memory and not the stack: see `parse::slot`,
//! `rules::QueryStage` and `decide::settle` (the verifier keeps what it
//! learns about stack values and walks the decision once per variant).
//! Why one map: each per-CPU map a frame touches costs a read of the map's
//! per-CPU pointer table besides the value itself; end to end, where the
//! receive path evicts the program's data between frames, each line a
//! frame touches counts. XDP runs with preemption off, so the space is
//! this frame's from the program's start to its return.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::{FlowKey, FragKey};

use crate::{clock::Reading, decide::Decision, parse::Packet, rules::QueryStage};

#[repr(C)]
pub struct Scratch {
    pub packet: Packet,
    pub decision: Decision,
    pub flow_key: FlowKey,
    pub query: QueryStage,
    pub frag_key: FragKey,
    /// Kept across frames (`clock`).
    pub clock: Reading,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch space; `None` only if the map is missing, which a
/// loaded program cannot meet.
#[inline(always)]
pub fn get() -> Option<*mut Scratch> {
    SCRATCH.get_ptr_mut(0)
}
