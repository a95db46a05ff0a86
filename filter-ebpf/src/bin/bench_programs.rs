//! XDP_PASS and nothing else: the cost floor of running any XDP program,
//! measured next to vlanguard by the benchmarks.
#![no_std]
#![no_main]

// The panic handler.
use filter_ebpf as _;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn pass_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
