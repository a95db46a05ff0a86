//! Programs the benchmarks run next to vlanguard; not used in production.
#![no_std]
#![no_main]

// The panic handler.
use filter_ebpf as _;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, xdp_action},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use filter_common::{FLOW_BUCKETS, FLOW_WAYS, MAX_FLOWS};

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

// Floors of a flow insert (`cargo xtask bench` runs them on the new
// connections' frames next to vlanguard): only the memory work of recording
// a new flow in a table of vlanguard's size, no parsing or decision.

/// The flow table's tags and entries as vlanguard holds them: two maps.
#[map]
static SPLIT_TAGS: Array<[u32; FLOW_WAYS as usize]> = Array::with_max_entries(FLOW_BUCKETS, 0);
#[map]
static SPLIT_ENTRIES: Array<[u64; 8]> = Array::with_max_entries(MAX_FLOWS, 0);

/// The same flows with each bucket's tags in the first line of the bucket
/// and 7 ways in the next seven: 512 bytes a bucket, page-aligned
/// (mmapable arrays start on a page), so a bucket never straddles pages.
#[map]
static COLOCATED: Array<[u64; 64]> = Array::with_max_entries(MAX_FLOWS / 7 + 1, BPF_F_MMAPABLE);

/// Records the frame's "flow" (16 bytes that hold the TCP ports) in the
/// split layout: the bucket's tags line, then a free way's entry.
#[xdp]
pub fn insert_split(ctx: XdpContext) -> u32 {
    let Some(hash) = frame_hash(&ctx) else { return xdp_action::XDP_PASS };
    let bucket = (hash as u32) & (FLOW_BUCKETS - 1);
    let tag = ((hash >> 32) as u32) | 1;
    let Some(tags) = SPLIT_TAGS.get_ptr_mut(bucket) else { return xdp_action::XDP_PASS };
    // SAFETY: a live map value; `way` < FLOW_WAYS.
    unsafe {
        let way = free_way(tags.cast::<u32>(), FLOW_WAYS);
        if let Some(e) = SPLIT_ENTRIES.get_ptr_mut(bucket * FLOW_WAYS + way) {
            write_entry(e.cast::<u64>(), hash);
        }
        tags.cast::<u32>().add(way as usize).write_volatile(tag);
    }
    xdp_action::XDP_PASS
}

/// The same in the co-located layout.
#[xdp]
pub fn insert_colocated(ctx: XdpContext) -> u32 {
    let Some(hash) = frame_hash(&ctx) else { return xdp_action::XDP_PASS };
    let bucket = (hash as u32) % (MAX_FLOWS / 7);
    let tag = ((hash >> 32) as u32) | 1;
    let Some(b) = COLOCATED.get_ptr_mut(bucket) else { return xdp_action::XDP_PASS };
    // SAFETY: a live 512-byte map value: tags in its first 28 bytes, way
    // `w`'s entry at byte 64 * (w + 1).
    unsafe {
        let tags = b.cast::<u32>();
        let way = free_way(tags, 7);
        write_entry(b.cast::<u64>().add(8 * (way as usize + 1)), hash);
        tags.add(way as usize).write_volatile(tag);
    }
    xdp_action::XDP_PASS
}

// The floor of a frame to one of many devices: what any design must touch
// for it, the device's line found by direct index and its per-CPU counter
// line, nothing else.

/// 64-byte device lines, one per address of 10.110.0.0/15 (the benchmarks'
/// device subnet).
#[map]
static PROBE_DEVICES: Array<[u64; 8]> = Array::with_max_entries(1 << 17, 0);
/// A 96-byte per-CPU counter line per device, as vlanguard's.
#[map]
static PROBE_COUNTERS: PerCpuArray<[u64; 12]> = PerCpuArray::with_max_entries(1 << 17, 0);

/// Reads the line of the untagged IPv4 frame's destination and counts the
/// frame in its counter line.
#[xdp]
pub fn device_touch(ctx: XdpContext) -> u32 {
    let Some(slot) = device_slot(&ctx) else { return xdp_action::XDP_PASS };
    if let Some(c) = PROBE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's value; XDP runs with preemption off.
        unsafe {
            (*c)[6] = (*c)[6].wrapping_add(1);
            (*c)[7] = (*c)[7].wrapping_add(60);
        }
    }
    xdp_action::XDP_PASS
}

/// Counter lines as vlanguard's (`filter_common::CounterLine`, 192 bytes)
/// in one plain mmapable array, `[slot][cpu]` (two CPUs here): no per-CPU
/// pointer table between the slot and its line.
#[map]
static PROBE_FLAT_COUNTERS: Array<[u64; 24]> =
    Array::with_max_entries(2 << 17, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// `device_touch` with the flat counters: what vlanguard must do at least
/// for a mixed frame (the floor of that row).
#[xdp]
pub fn device_touch_flat(ctx: XdpContext) -> u32 {
    let Some(slot) = device_slot(&ctx) else { return xdp_action::XDP_PASS };
    // SAFETY: a helper without arguments.
    let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() } & 1;
    if let Some(c) = PROBE_FLAT_COUNTERS.get_ptr_mut(slot * 2 + cpu) {
        // SAFETY: this CPU's line; XDP runs with preemption off.
        unsafe {
            (*c)[0] = (*c)[0].wrapping_add(1);
            (*c)[1] = (*c)[1].wrapping_add(60);
        }
    }
    xdp_action::XDP_PASS
}

/// `device_touch` without the counter: the device's line alone.
#[xdp]
pub fn device_line(ctx: XdpContext) -> u32 {
    match device_slot(&ctx) {
        Some(slot) if slot == u32::MAX => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// The counter slot in the line of the untagged IPv4 frame's destination.
#[inline(always)]
fn device_slot(ctx: &XdpContext) -> Option<u32> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Bounds check beside the access: the destination address, bytes 30..34.
    if start + 34 > end {
        return None;
    }
    // SAFETY: bytes 30..34 lie in the frame (checked above).
    let dst = u32::from_be(unsafe { ((start + 30) as *const u32).read_unaligned() });
    let index = dst & ((1 << 17) - 1);
    let line = PROBE_DEVICES.get(index)?;
    // The slot is read from the line, as vlanguard's counter slot is.
    Some((line[0] as u32).wrapping_add(index) & ((1 << 17) - 1))
}

/// A hash of bytes 26..42 of the frame (an untagged IPv4 frame's addresses
/// and ports; a tagged one's too, shifted).
#[inline(always)]
fn frame_hash(ctx: &XdpContext) -> Option<u64> {
    let (start, end) = (ctx.data(), ctx.data_end());
    // Bounds check beside the access.
    if start + 42 > end {
        return None;
    }
    // SAFETY: bytes 26..42 lie in the frame (checked above).
    let (a, b) = unsafe {
        let p = (start + 26) as *const u64;
        (p.read_unaligned(), p.add(1).read_unaligned())
    };
    let h =
        (a.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(b.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    Some(h ^ (h >> 29))
}

/// The first free (tag 0) of `ways` tags at `tags`, else way 0.
///
/// # Safety
/// `tags` points at `ways` live `u32`s.
#[inline(always)]
unsafe fn free_way(tags: *const u32, ways: u32) -> u32 {
    let mut way = 0;
    while way < ways {
        // SAFETY: guaranteed by the caller.
        if unsafe { tags.add(way as usize).read_volatile() } == 0 {
            return way;
        }
        way += 1;
    }
    0
}

/// Writes a 64-byte entry, as vlanguard's insert does.
///
/// # Safety
/// `e` points at 8 live `u64`s.
#[inline(always)]
unsafe fn write_entry(e: *mut u64, hash: u64) {
    let mut i = 0;
    while i < 8 {
        // SAFETY: guaranteed by the caller.
        unsafe { e.add(i).write_volatile(hash.wrapping_add(i as u64)) };
        i += 1;
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
