//! The test-only BPF programs build.rs builds with the filter (feature
//! `lab`, which only the tests crate turns on): the product binary does not
//! carry them.

/// The benchmarks' programs: `pass_floor` (XDP_PASS, the floor) and
/// `flood_tx` (XDP_TX, the flood generator).
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-programs"));

/// The test lab's VLAN switch program (tc); see `filter_common::lab`.
pub static LAB_VLAN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lab-vlan"));
