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

/// A part of this CPU's scratch value, as only this module hands it out:
/// whoever holds one holds a live, aligned `T` of map memory that this
/// frame's run has to itself until the program returns (the value lives as
/// long as the program; XDP runs with preemption off). A safe function may
/// therefore read and write through a `Slot` it is given, where it may not
/// through a raw pointer.
#[repr(transparent)]
pub struct Slot<T>(*mut T);

impl<T> Clone for Slot<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Slot<T> {}

impl<T> Slot<T> {
    #[inline(always)]
    pub fn ptr(self) -> *mut T {
        self.0
    }
}

/// The one projection into the scratch value: field `$field` of this CPU's
/// `Scratch` as a [`Slot`], `None` only if the map is missing, which a
/// loaded program cannot meet.
macro_rules! part {
    ($field:ident) => {{
        match SCRATCH.get_ptr_mut(0) {
            // SAFETY: `s` is this CPU's live scratch value (a per-CPU
            // array's only entry); taking a field's address reads nothing.
            Some(s) => Some(Slot(unsafe { &raw mut (*s).$field })),
            None => None,
        }
    }};
}

/// Where the parse writes the frame and the decision reads it (`parse::slot`).
#[inline(always)]
pub fn packet() -> Option<Slot<Packet>> {
    part!(packet)
}

/// Where the decision is laundered (`decide::settle`).
#[inline(always)]
pub fn decision() -> Option<Slot<Decision>> {
    part!(decision)
}

/// This frame's flow key (`flow::key`).
#[inline(always)]
pub fn flow_key() -> Option<Slot<FlowKey>> {
    part!(flow_key)
}

/// The staged rule query (`rules::QueryStage`).
#[inline(always)]
pub fn query() -> Option<Slot<QueryStage>> {
    part!(query)
}

/// This frame's fragment key (`frags`).
#[inline(always)]
pub fn frag_key() -> Option<Slot<FragKey>> {
    part!(frag_key)
}

/// The last clock reading on this CPU (`clock`).
#[inline(always)]
pub fn clock() -> Option<Slot<Reading>> {
    part!(clock)
}
