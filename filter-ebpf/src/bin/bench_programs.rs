//! Programs the benchmarks run next to vlanguard; not used in production.
#![no_std]
#![no_main]

// The panic handler.
use filter_ebpf as _;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// XDP_PASS and nothing else: the cost floor of running any XDP program.
#[xdp]
pub fn pass_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The flood generator: run with BPF_PROG_TEST_RUN in live-frames mode on
/// the sender's veth, every frame goes out of it (XDP_TX) to the peer.
#[xdp]
pub fn flood_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// XDP_DROP and nothing else: the most any XDP filter can drop end to
/// end (the ceiling of the end-to-end benchmark).
#[xdp]
pub fn drop_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
