//! Frame parsing: Ethernet, up to two VLAN tags, ARP, IPv4 (options,
//! fragments), IPv6 (bounded extension-header walk), TCP, UDP, ICMP, ICMPv6.
//!
//! `Err(())` means malformed. The reference evaluator in `filter-user`
//! (`reference::parse`) states the same rules in plain Rust; keep the two
//! in step.

use core::mem::offset_of;

use filter_common::{Addr, MAX_HEADER_START, MAX_IPV6_EXT_HEADERS, ethertype, ipproto};
use network_types::{
    arp::ArpHdr,
    eth::EthHdr,
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::{frame::Frame, ptr, scratch};

/// Byte of the TCP header holding the data offset.
const TCP_DOFF_BYTE: usize = 12;
const TCP_FLAGS_BYTE: usize = 13;

/// Smallest ICMPv6 header we read: type, code, checksum.
const ICMPV6_MIN_LEN: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ip,
    Arp,
    /// Any other EtherType: no addresses to decide on.
    Other,
}

/// The parsed frame. The addresses come first and 8-aligned: the BPF
/// target has no unaligned loads, so LLVM reads an address it cannot
/// prove aligned a byte at a time (and every compare, copy and hash of
/// addresses paid for that); aligned, it reads them as two words.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Packet {
    /// Addresses, IPv4 v4-mapped. For ARP: sender and target protocol
    /// addresses.
    pub src: Addr,
    pub dst: Addr,
    pub len: u32,
    pub src_mac: [u8; 6],
    /// Innermost VLAN id; 0 when untagged or priority-tagged.
    pub vlan: u16,
    pub kind: Kind,
    /// For ARP: the sender hardware address.
    pub arp_sha: [u8; 6],
    pub proto: u8,
    /// Whether `port` holds an L4 value (false for non-first fragments and
    /// protocols without ports).
    pub l4_known: bool,
    /// For a DHCP client message: its UDP header's offset in the frame,
    /// halved (offsets are even; 0: none, or deeper than this holds), for
    /// the capture (`identity`). A byte, so that `Packet` stays one cache
    /// line.
    pub dhcp_at: u8,
    pub sport: u16,
    /// Destination port, or ICMP/ICMPv6 type.
    pub port: u16,
    /// TCP flags (FIN, SYN, RST, PSH, ACK, ...), 0 for other protocols.
    pub tcp_flags: u8,
    /// `frag::*`: whether the datagram is fragmented and which part this is.
    pub frag: u8,
    /// The fragmented datagram's identification (IPv4: 16 bits).
    pub frag_id: u32,
}

/// `Packet::frag` values.
pub mod frag {
    /// Not a fragment.
    pub const NONE: u8 = 0;
    /// The first fragment (offset 0, more to come): carries the ports.
    pub const FIRST: u8 = 1;
    /// A later fragment: no L4 header.
    pub const LATER: u8 = 2;
    /// A later fragment whose first fragment passed: the ports are that
    /// one's (`frags::recall`).
    pub const RECALLED: u8 = 3;
}

impl Packet {
    #[inline(always)]
    pub const fn empty(len: u32) -> Packet {
        Packet {
            len,
            src_mac: [0; 6],
            vlan: 0,
            kind: Kind::Other,
            arp_sha: [0; 6],
            src: Addr([0; 16]),
            dst: Addr([0; 16]),
            proto: 0,
            l4_known: false,
            dhcp_at: 0,
            sport: 0,
            port: 0,
            tcp_flags: 0,
            frag: frag::NONE,
            frag_id: 0,
        }
    }
}

/// This CPU's `Packet`, emptied for a frame of `len` bytes: where the
/// parse writes and the decision reads.
///
/// Why a map slot and not the stack: every way through the parser (ARP,
/// IPv4 with or without options, fragments, IPv6 with each extension
/// header, TCP, UDP, ICMP) leaves different known constants in the fields,
/// and every branch on a field narrows it further; on the stack the verifier
/// keeps all of that and walks the decision once for each variant. Map
/// memory it does not track: the decision is checked once (with
/// `decide::settle`, a fifth of the instructions verified). `None` only if
/// the slot is missing, which a loaded program cannot meet.
#[inline(always)]
pub fn slot(len: u32) -> Option<&'static mut Packet> {
    let slot = scratch::packet()?.ptr();
    // SAFETY: this CPU's scratch slot (`scratch::Slot`), this frame's
    // until the program returns. `write`: the slot starts zeroed,
    // which is a valid Packet but not this one.
    unsafe {
        slot.write(Packet::empty(len));
        Some(&mut *slot)
    }
}

/// Fills `pkt` (made with `Packet::empty`) from the frame. Inlined: as a
/// separate BPF function, LLVM would pass it `data_end` as a scalar, which
/// the verifier refuses.
#[inline(always)]
pub fn parse(ctx: &impl Frame, pkt: &mut Packet) -> Result<(), ()> {
    let eth = ptr::at::<EthHdr>(ctx, 0)?;
    pkt.src_mac = ptr::field(eth, offset_of!(EthHdr, src_addr));
    let mut ethertype = ptr::be16(eth, offset_of!(EthHdr, ether_type));
    let mut off = EthHdr::LEN;

    // Up to two tags (802.1Q, or 802.1ad/0x9100 outer + 802.1Q inner); a
    // third is not something a device VLAN carries and counts as malformed.
    // A tag kept beside the frame was its outermost: it counts as one of
    // the two, and a tag in the frame is inside it.
    let outer = ctx.outer_tag();
    if let Some(vlan) = outer {
        pkt.vlan = vlan;
    }
    for _ in 0..2 {
        if !is_vlan_tpid(ethertype) {
            break;
        }
        if outer.is_some() && off > EthHdr::LEN {
            return Err(());
        }
        let tag = ptr::at::<VlanHdr>(ctx, off)?;
        pkt.vlan = ptr::be16(tag, offset_of!(VlanHdr, tci)) & 0x0fff;
        ethertype = ptr::be16(tag, offset_of!(VlanHdr, ether_type));
        off += VlanHdr::LEN;
    }
    if is_vlan_tpid(ethertype) {
        return Err(());
    }

    match ethertype {
        ethertype::IPV4 => parse_ipv4(ctx, off, pkt),
        ethertype::IPV6 => parse_ipv6(ctx, off, pkt),
        ethertype::ARP => parse_arp(ctx, off, pkt),
        _ => Ok(()),
    }
}

/// The v4-mapped form (`::ffff:a.b.c.d`) of an IPv4 address read from
/// the frame.
#[inline(always)]
fn v4_mapped(a: [u8; 4]) -> Addr {
    Addr::from_v4(u32::from_be_bytes(a))
}

#[inline(always)]
fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == ethertype::VLAN_8021Q
        || ethertype == ethertype::VLAN_8021AD
        || ethertype == ethertype::QINQ_9100
}

#[inline(always)]
fn parse_arp(ctx: &impl Frame, off: usize, pkt: &mut Packet) -> Result<(), ()> {
    let arp = ptr::at::<ArpHdr>(ctx, off)?;
    // Only Ethernet/IPv4 ARP exists on these links; anything else is bogus.
    if ptr::be16(arp, offset_of!(ArpHdr, htype)) != 1
        || ptr::be16(arp, offset_of!(ArpHdr, ptype)) != ethertype::IPV4
        || ptr::field::<_, u8>(arp, offset_of!(ArpHdr, hlen)) != 6
        || ptr::field::<_, u8>(arp, offset_of!(ArpHdr, plen)) != 4
    {
        return Err(());
    }
    pkt.kind = Kind::Arp;
    pkt.arp_sha = ptr::field(arp, offset_of!(ArpHdr, sha));
    pkt.src = v4_mapped(ptr::field(arp, offset_of!(ArpHdr, spa)));
    pkt.dst = v4_mapped(ptr::field(arp, offset_of!(ArpHdr, tpa)));
    Ok(())
}

#[inline(always)]
fn parse_ipv4(ctx: &impl Frame, l3: usize, pkt: &mut Packet) -> Result<(), ()> {
    let ip = ptr::at::<Ipv4Hdr>(ctx, l3)?;
    let vihl: u8 = ptr::field(ip, offset_of!(Ipv4Hdr, vihl));
    let hdr_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || hdr_len < Ipv4Hdr::LEN {
        return Err(());
    }
    let total = usize::from(ptr::be16(ip, offset_of!(Ipv4Hdr, tot_len)));
    // The datagram must hold its own header and fit in the frame (anything
    // after it is Ethernet padding).
    if total < hdr_len || l3 + total > pkt.len as usize {
        return Err(());
    }
    let frags = ptr::be16(ip, offset_of!(Ipv4Hdr, frags));
    let frag_offset = frags & 0x1fff;
    // More fragments (MF) or an offset: a fragment of a larger datagram.
    if frags & 0x3fff != 0 {
        pkt.frag = if frag_offset == 0 { frag::FIRST } else { frag::LATER };
        pkt.frag_id = u32::from(ptr::be16(ip, offset_of!(Ipv4Hdr, id)));
    }
    pkt.proto = ptr::field(ip, offset_of!(Ipv4Hdr, proto));
    pkt.src = v4_mapped(ptr::field(ip, offset_of!(Ipv4Hdr, src_addr)));
    pkt.dst = v4_mapped(ptr::field(ip, offset_of!(Ipv4Hdr, dst_addr)));
    pkt.kind = Kind::Ip;

    if frag_offset != 0 {
        // A fragment at offset 8 can only exist to overwrite the TCP header
        // of the first fragment (RFC 1858).
        if frag_offset == 1 && pkt.proto == ipproto::TCP {
            return Err(());
        }
        // Non-first fragment: no L4 header, decided on addresses and
        // protocol alone (see README "Fragments").
        return Ok(());
    }
    parse_l4(ctx, l3 + hdr_len, l3 + total, false, pkt)
}

#[inline(always)]
fn parse_ipv6(ctx: &impl Frame, l3: usize, pkt: &mut Packet) -> Result<(), ()> {
    let ip = ptr::at::<Ipv6Hdr>(ctx, l3)?;
    if ptr::field::<_, u8>(ip, 0) >> 4 != 6 {
        return Err(());
    }
    let end = l3 + Ipv6Hdr::LEN + usize::from(ptr::be16(ip, offset_of!(Ipv6Hdr, payload_len)));
    if end > pkt.len as usize {
        return Err(());
    }
    pkt.src = Addr(ptr::field(ip, offset_of!(Ipv6Hdr, src_addr)));
    pkt.dst = Addr(ptr::field(ip, offset_of!(Ipv6Hdr, dst_addr)));
    // IPv4 lives at ::ffff:0:0/96 in the maps; such addresses are never
    // valid on the wire (RFC 4291 2.5.5.2), and would impersonate IPv4 hosts.
    if pkt.src.is_v4_mapped() || pkt.dst.is_v4_mapped() {
        return Err(());
    }
    pkt.kind = Kind::Ip;

    let mut next: u8 = ptr::field(ip, offset_of!(Ipv6Hdr, next_hdr));
    let mut off = l3 + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if off > MAX_HEADER_START {
            return Err(());
        }
        match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                // Next header, then length in 8-byte units beyond the first 8.
                let ext = ptr::at::<[u8; 2]>(ctx, off)?;
                let [nh, len]: [u8; 2] = ptr::field(ext, 0);
                next = nh;
                off += (usize::from(len) + 1) * 8;
            }
            ipproto::FRAGMENT => {
                let hdr = ptr::at::<[u8; 8]>(ctx, off)?;
                let [nh, _, hi, lo, i0, i1, i2, i3]: [u8; 8] = ptr::field(hdr, 0);
                next = nh;
                off += 8;
                let offset_m = u16::from_be_bytes([hi, lo]);
                // Offset (13 bits) and M (more fragments): an atomic
                // fragment (both zero) is a whole datagram.
                if offset_m & 0xfff9 != 0 {
                    pkt.frag = if offset_m & 0xfff8 == 0 { frag::FIRST } else { frag::LATER };
                    pkt.frag_id = u32::from_be_bytes([i0, i1, i2, i3]);
                }
                if offset_m & 0xfff8 != 0 {
                    // Non-first fragment: as for IPv4.
                    pkt.proto = next;
                    return if off > end { Err(()) } else { Ok(()) };
                }
            }
            _ => break,
        }
    }
    if matches!(next, ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS | ipproto::FRAGMENT) {
        // Longer chain than we walk.
        return Err(());
    }
    if off > end {
        return Err(());
    }
    pkt.proto = next;
    parse_l4(ctx, off, end, true, pkt)
}

/// Reads ports (TCP, UDP) or the message type (ICMP, ICMPv6) at `l4`,
/// which must fit before `end`, the end of the IP datagram.
#[inline(always)]
fn parse_l4(ctx: &impl Frame, l4: usize, end: usize, v6: bool, pkt: &mut Packet) -> Result<(), ()> {
    if l4 > MAX_HEADER_START {
        return Err(());
    }
    let need = match pkt.proto {
        ipproto::TCP => TcpHdr::LEN,
        ipproto::UDP => UdpHdr::LEN,
        ipproto::ICMP if !v6 => Icmpv4Hdr::LEN,
        ipproto::ICMPV6 if v6 => ICMPV6_MIN_LEN,
        // No ports to read: decided on addresses and protocol.
        _ => return Ok(()),
    };
    if l4 + need > end {
        return Err(());
    }
    match pkt.proto {
        ipproto::TCP => {
            let tcp = ptr::at::<TcpHdr>(ctx, l4)?;
            pkt.sport = ptr::be16(tcp, offset_of!(TcpHdr, source));
            pkt.port = ptr::be16(tcp, offset_of!(TcpHdr, dest));
            // Data offset (high nibble of byte 12): the header's own length.
            let doff = usize::from(ptr::field::<_, u8>(tcp, TCP_DOFF_BYTE) >> 4) * 4;
            if doff < TcpHdr::LEN || l4 + doff > end {
                return Err(());
            }
            pkt.tcp_flags = ptr::field(tcp, TCP_FLAGS_BYTE);
        }
        ipproto::UDP => {
            let udp = ptr::at::<UdpHdr>(ctx, l4)?;
            pkt.sport = ptr::be16(udp, offset_of!(UdpHdr, src));
            pkt.port = ptr::be16(udp, offset_of!(UdpHdr, dst));
            if matches!((pkt.sport, pkt.port), (68, 67) | (546, 547)) && l4 / 2 <= 255 {
                pkt.dhcp_at = (l4 / 2) as u8;
            }
        }
        _ => {
            // ICMP and ICMPv6 both start with the type byte.
            let icmp = ptr::at::<[u8; ICMPV6_MIN_LEN]>(ctx, l4)?;
            pkt.port = u16::from(ptr::field::<_, u8>(icmp, 0));
        }
    }
    pkt.l4_known = true;
    Ok(())
}
