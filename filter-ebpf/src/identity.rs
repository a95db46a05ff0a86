//! Identity reports for the inventory (ARCHITECTURE §5): what a host on a
//! protected VLAN says about itself in ARP, in IPv6 neighbour and router
//! discovery, and in its DHCP client messages. Frames of any other kind
//! cost a few compares here; known devices' traffic is never reported.
//!
//! ARP and NDP report a (VLAN, MAC, address) once per `REPEAT_NS`
//! (`IDENTITY_SEEN`); DHCP messages are copied each time (their options
//! are the point). Everything stays within `identity::PER_SEC` reports per
//! CPU per second; the rest is counted.

use filter_common::{DhcpCapture, SeenKey, Sighting, identity, ipproto};

use crate::{
    clock, decide,
    events::within_rate,
    frame::Frame,
    maps::{IDENTITY, IDENTITY_RATE, IDENTITY_SEEN, IDENTITY_STATS},
    parse::{Kind, Packet},
    stats,
};

/// UDP header length: the DHCP message follows it.
const UDP_HEADER: u32 = 8;
const ROUTER_SOLICIT: u16 = 133;
const NEIGHBOUR_SOLICIT: u16 = 135;
const NEIGHBOUR_ADVERT: u16 = 136;

#[inline(always)]
pub fn observe(ctx: &impl Frame, pkt: &Packet, generation: u32) {
    let kind = kind_of(pkt);
    if kind == 0 {
        return;
    }
    let vlan = decide::frame_vlan(ctx, pkt, generation);
    if vlan == 0 || !decide::vlan_protected(generation, vlan) {
        return;
    }
    let now = clock::coarse_ns();
    let dhcp = kind == identity::DHCPV4 || kind == identity::DHCPV6;
    if !dhcp && reported_lately(pkt, vlan, now) {
        bump(identity::REPEATED);
        return;
    }
    if !within_rate(&IDENTITY_RATE, now, identity::PER_SEC) {
        bump(identity::SUPPRESSED);
        return;
    }
    let head = Sighting {
        ktime_ns: now,
        src: pkt.src.0,
        ifindex: ctx.arrived_on(),
        vlan,
        kind,
        _pad: 0,
        src_mac: pkt.src_mac,
        payload_len: 0,
    };
    let sent = if dhcp { capture(ctx, pkt, head) } else { sight(head) };
    bump(if sent { identity::SENT } else { identity::LOST });
}

/// `identity::*` for a frame worth reporting, 0 for the rest: client
/// messages only (a server's say nothing about the host it talks to).
#[inline(always)]
fn kind_of(pkt: &Packet) -> u8 {
    if pkt.kind == Kind::Arp {
        return identity::ARP;
    }
    if !pkt.l4_known {
        return 0;
    }
    match (pkt.proto, pkt.sport, pkt.port) {
        (ipproto::UDP, 68, 67) if pkt.dhcp_at != 0 => identity::DHCPV4,
        (ipproto::UDP, 546, 547) if pkt.dhcp_at != 0 => identity::DHCPV6,
        // Hosts' router and neighbour solicitations and neighbour
        // advertisements (router advertisements and redirects are routers').
        (ipproto::ICMPV6, _, ROUTER_SOLICIT | NEIGHBOUR_SOLICIT | NEIGHBOUR_ADVERT) => {
            identity::NDP
        }
        _ => 0,
    }
}

/// Whether this (VLAN, MAC, address) was reported within `REPEAT_NS`;
/// remembers it as reported now if not.
#[inline(always)]
fn reported_lately(pkt: &Packet, vlan: u16, now: u64) -> bool {
    let key = SeenKey { addr: pkt.src.0, mac: pkt.src_mac, vlan };
    // SAFETY: a plain u64 copied out at once.
    if let Some(at) = unsafe { IDENTITY_SEEN.get(key) }
        && now.wrapping_sub(*at) < identity::REPEAT_NS
    {
        return true;
    }
    let _ = IDENTITY_SEEN.insert(key, now, 0);
    false
}

#[inline(always)]
fn sight(head: Sighting) -> bool {
    IDENTITY.output::<Sighting>(&head, 0).is_ok()
}

/// Sends `head` with the UDP payload's first bytes.
#[inline(always)]
fn capture(ctx: &impl Frame, pkt: &Packet, mut head: Sighting) -> bool {
    let udp = u32::from(pkt.dhcp_at) * 2;
    // The UDP length field: the message is what follows the header.
    let mut field = [0u8; 2];
    // SAFETY: `field` holds the two bytes copied.
    if !unsafe { ctx.copy(udp + 4, field.as_mut_ptr(), 2) } {
        return false;
    }
    let udp_len = u32::from(u16::from_be_bytes(field));
    if udp_len <= UDP_HEADER {
        return false;
    }
    let start = udp + UDP_HEADER;
    let mut len = udp_len - UDP_HEADER;
    if len > identity::DHCP_PAYLOAD as u32 {
        len = identity::DHCP_PAYLOAD as u32;
    }
    let Some(mut entry) = IDENTITY.reserve::<DhcpCapture>(0) else { return false };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved slot of a whole `DhcpCapture`.
    let len = unsafe { opaque(&raw mut (*record).head.payload_len, len) };
    // Checked on the value the copy gets: the verifier wants its size
    // proven 1..=payload.
    if len == 0 || len > identity::DHCP_PAYLOAD as u32 {
        entry.discard(0);
        return false;
    }
    // SAFETY: as above, and `len` is at most its payload's size.
    let copied = unsafe { ctx.copy(start, (&raw mut (*record).payload).cast::<u8>(), len) };
    if !copied {
        entry.discard(0);
        return false;
    }
    head.payload_len = len as u16;
    // SAFETY: as above; the header is written whole before submit (the
    // payload beyond `len` is not read).
    unsafe { (&raw mut (*record).head).write(head) };
    entry.submit(0);
    true
}

/// `value`, passed through memory at `at` so that the compiler forgets
/// what it knew of it: it would otherwise drop the range check above as
/// implied by earlier ones the verifier cannot relate to this register.
///
/// # Safety
/// `at` is valid for reads and writes.
#[inline(always)]
unsafe fn opaque(at: *mut u16, value: u32) -> u32 {
    // SAFETY: the caller's.
    unsafe {
        at.write_volatile(value as u16);
        u32::from(at.read_volatile())
    }
}

#[inline(always)]
fn bump(index: u32) {
    stats::bump(&IDENTITY_STATS, index);
}
