//! The reference evaluator: ARCHITECTURE §3 written plainly, straight from the
//! resolved policy (linear scans, no compiled maps), for the differential
//! tests against the kernel program.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::collections::{HashMap, HashSet};

use filter_common::{Addr, FlowKey, MAX_HEADER_START, MAX_IPV6_EXT_HEADERS, Reason, Verdict};
use ipnet::IpNet;

use filter_policy::{
    addr,
    policy::{L4, Resolved, ResolvedDevice, Rule},
};

/// What the reference decides for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    /// The reason's verdict, or would-drop in monitor mode.
    pub verdict: Verdict,
    /// Device slot (index in `Resolved::devices`) of the sender, counted
    /// under direction `out`.
    pub src_device: Option<usize>,
    /// Device slot of the receiver, counted under direction `in`.
    pub dst_device: Option<usize>,
    /// For allowed frames: the first matching rule (index in the device's
    /// merged list) of the sender's `allow_out` and the receiver's
    /// `allow_in`, credited with a rule hit.
    pub src_rule: Option<usize>,
    pub dst_rule: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ip,
    Arp,
    Other,
}

/// A parsed frame; `None` from [`parse`] means malformed.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    src_mac: [u8; 6],
    vlan: u16,
    kind: Kind,
    arp_sha: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Destination port or ICMP type, when the frame carries an L4 header.
    l4: Option<(u16, u16)>,
    tcp_flags: u8,
    frag: Frag,
    /// The fragmented datagram's identification.
    frag_id: u32,
}

/// Which part of a fragmented datagram a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frag {
    None,
    First,
    Later,
    /// A later fragment given its first fragment's ports.
    Recalled,
}

/// Bounds-checked reads of a frame.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn get<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.0.get(off..off.checked_add(N)?)?.try_into().ok()
    }
    fn u8(&self, off: usize) -> Option<u8> {
        self.0.get(off).copied()
    }
    fn be16(&self, off: usize) -> Option<u16> {
        self.get::<2>(off).map(u16::from_be_bytes)
    }
}

const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// Parses Ethernet, up to two VLAN tags, ARP, IPv4, IPv6 and the L4 header.
pub fn parse(frame: &[u8]) -> Option<Frame> {
    let b = Bytes(frame);
    let mut f = Frame {
        src_mac: b.get::<6>(6)?,
        vlan: 0,
        kind: Kind::Other,
        arp_sha: [0; 6],
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        proto: 0,
        l4: None,
        tcp_flags: 0,
        frag: Frag::None,
        frag_id: 0,
    };
    let mut ethertype = b.be16(12)?;
    let mut off = 14;
    for _ in 0..2 {
        if !TPIDS.contains(&ethertype) {
            break;
        }
        f.vlan = b.be16(off)? & 0x0fff;
        ethertype = b.be16(off + 2)?;
        off += 4;
    }
    if TPIDS.contains(&ethertype) {
        return None; // a third tag
    }
    match ethertype {
        0x0800 => parse_ipv4(&b, off, &mut f)?,
        0x86dd => parse_ipv6(&b, off, &mut f)?,
        0x0806 => {
            let arp = b.get::<28>(off)?;
            if arp[0..2] != [0, 1] || arp[2..4] != [8, 0] || arp[4] != 6 || arp[5] != 4 {
                return None;
            }
            f.kind = Kind::Arp;
            f.arp_sha.copy_from_slice(&arp[8..14]);
            f.src = IpAddr::V4(Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]));
            f.dst = IpAddr::V4(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]));
        }
        _ => {}
    }
    Some(f)
}

fn parse_ipv4(b: &Bytes<'_>, l3: usize, f: &mut Frame) -> Option<()> {
    let h = b.get::<20>(l3)?;
    let hdr_len = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || hdr_len < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < hdr_len || l3 + total > b.0.len() {
        return None;
    }
    f.kind = Kind::Ip;
    f.proto = h[9];
    f.src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    f.dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let frags = u16::from_be_bytes([h[6], h[7]]);
    let frag_offset = frags & 0x1fff;
    if frags & 0x3fff != 0 {
        f.frag = if frag_offset == 0 { Frag::First } else { Frag::Later };
        f.frag_id = u32::from(u16::from_be_bytes([h[4], h[5]]));
    }
    if frag_offset == 1 && f.proto == 6 {
        return None; // RFC 1858 overlap attack
    }
    if frag_offset != 0 {
        return Some(()); // non-first fragment: no L4 header
    }
    parse_l4(b, l3 + hdr_len, l3 + total, false, f)
}

fn parse_ipv6(b: &Bytes<'_>, l3: usize, f: &mut Frame) -> Option<()> {
    let h = b.get::<40>(l3)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let end = l3 + 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
    if end > b.0.len() {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?);
    if src.to_ipv4_mapped().is_some() || dst.to_ipv4_mapped().is_some() {
        return None; // never valid on the wire (RFC 4291 2.5.5.2)
    }
    f.kind = Kind::Ip;
    f.src = IpAddr::V6(src);
    f.dst = IpAddr::V6(dst);
    let mut next = h[6];
    let mut off = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if off > MAX_HEADER_START {
            return None;
        }
        match next {
            0 | 43 | 60 => {
                let e = b.get::<2>(off)?;
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            44 => {
                let e = b.get::<8>(off)?;
                next = e[0];
                off += 8;
                let offset_m = u16::from_be_bytes([e[2], e[3]]);
                if offset_m & 0xfff9 != 0 {
                    f.frag = if offset_m & 0xfff8 == 0 { Frag::First } else { Frag::Later };
                    f.frag_id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                }
                if offset_m & 0xfff8 != 0 {
                    f.proto = next;
                    return if off > end { None } else { Some(()) };
                }
            }
            _ => break,
        }
    }
    if matches!(next, 0 | 43 | 44 | 60) || off > end {
        return None;
    }
    f.proto = next;
    parse_l4(b, off, end, true, f)
}

fn parse_l4(b: &Bytes<'_>, l4: usize, end: usize, v6: bool, f: &mut Frame) -> Option<()> {
    if l4 > MAX_HEADER_START {
        return None;
    }
    let need = match (f.proto, v6) {
        (6, _) => 20,
        (17, _) => 8,
        (1, false) => 8,
        (58, true) => 4,
        _ => return Some(()),
    };
    if l4 + need > end {
        return None;
    }
    let h = b.get::<4>(l4)?;
    match f.proto {
        6 => {
            let _ = b.get::<20>(l4)?;
            let doff = usize::from(b.u8(l4 + 12)? >> 4) * 4;
            if doff < 20 || l4 + doff > end {
                return None;
            }
            f.tcp_flags = b.u8(l4 + 13)?;
            f.l4 = Some((u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]])));
        }
        17 => {
            let _ = b.get::<8>(l4)?;
            f.l4 = Some((u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]])));
        }
        _ => f.l4 = Some((0, u16::from(h[0]))),
    }
    Some(())
}

/// What the program keeps besides the policy, as the reference sees it:
/// the flow table (every flow an allowed opening packet created, never
/// timing out: the differential tests use timeouts far longer than a run)
/// and the operators' actions.
#[derive(Debug, Default)]
pub struct Flows {
    table: HashMap<FlowKey, RefFlow>,
    /// `Settings::epoch` of the policy in force; bump it with every apply.
    pub epoch: u32,
    /// Blocklist entries and whether each is in force (not expired).
    pub blocks: Vec<(IpNet, bool)>,
    /// Quarantined devices by name, and whether each is in force.
    pub quarantined: Vec<(String, bool)>,
    /// Ports of first fragments that passed, by (source, destination,
    /// identification, protocol): the program's `FRAGS`.
    frags: HashMap<(IpAddr, IpAddr, u32, u8), (u16, u16)>,
    /// Every flow key created or refreshed since the last `forget`.
    made: HashSet<FlowKey>,
}

impl Flows {
    /// Forgets every flow and first fragment (the epoch and the actions
    /// stay); returns the keys of the flows made since the last call, for
    /// `Filter::forget_flows` to free in the program alike.
    pub fn forget(&mut self) -> Vec<FlowKey> {
        self.table.clear();
        self.frags.clear();
        self.made.drain().collect()
    }
}

#[derive(Clone, Copy, Debug)]
struct RefFlow {
    lo_opened: bool,
    open_port: u16,
    closing: bool,
    epoch: u32,
}

/// Decides `frame` arriving on an interface whose untagged VLAN is
/// `iface_vlan` (0 = none), without flow tracking: for frames that neither
/// open nor continue flows.
pub fn evaluate(policy: &Resolved, frame: &[u8], iface_vlan: u16) -> Decision {
    evaluate_with_flows(policy, frame, iface_vlan, &mut Flows::default())
}

/// Echo request (`request`) or reply, ICMP or ICMPv6.
fn is_echo(f: &Frame, request: bool) -> bool {
    let t = match f.l4 {
        Some((_, t)) => t,
        None => return false,
    };
    match (f.proto, request) {
        (1, true) => t == 8,
        (1, false) => t == 0,
        (58, true) => t == 128,
        (58, false) => t == 129,
        _ => false,
    }
}

/// As [`evaluate`], with the flow table `flows` consulted and updated as the
/// program does (ARCHITECTURE §3 step 3).
pub fn evaluate_with_flows(
    policy: &Resolved,
    frame: &[u8],
    iface_vlan: u16,
    flows: &mut Flows,
) -> Decision {
    let mut d = decide(policy, frame, iface_vlan, flows);
    // A first fragment that passed: its ports serve the later ones.
    if matches!(d.reason, Reason::Allowed | Reason::Established)
        && let Some(f) = parse(frame)
        && f.frag == Frag::First
        && let Some(ports) = f.l4
    {
        flows.frags.insert((f.src, f.dst, f.frag_id, f.proto), ports);
    }
    // Monitor mode: the devices' own, or for frames involving none the
    // policy's.
    let involved = [d.src_device, d.dst_device];
    let monitored = if involved.iter().all(Option::is_none) {
        policy.monitor
    } else {
        involved.iter().flatten().all(|&i| policy.devices[i].monitor)
    };
    if d.verdict == Verdict::Drop && !d.reason.is_operator_action() && monitored {
        d.verdict = Verdict::WouldDrop;
    }
    d
}

fn decide(policy: &Resolved, frame: &[u8], iface_vlan: u16, flows: &mut Flows) -> Decision {
    let none = |reason: Reason| Decision {
        reason,
        verdict: reason.verdict(),
        src_device: None,
        dst_device: None,
        src_rule: None,
        dst_rule: None,
    };
    let Some(mut f) = parse(frame) else {
        return none(Reason::Malformed);
    };
    // A later fragment of a datagram whose first fragment passed is decided
    // with that one's ports.
    if f.frag == Frag::Later
        && let Some(ports) = flows.frags.get(&(f.src, f.dst, f.frag_id, f.proto))
    {
        f.l4 = Some(*ports);
        f.frag = Frag::Recalled;
    }

    let vlan = if f.vlan != 0 { f.vlan } else { iface_vlan };
    let vlan_protected = vlan != 0 && policy.vlans.iter().any(|v| v.id == vlan && v.protected);
    if f.kind == Kind::Other {
        return none(if vlan_protected { Reason::NotAllowed } else { Reason::Unmatched });
    }

    let find = |addr: IpAddr| policy.devices.iter().position(|d| d.addrs.contains(&addr));
    let in_protected = |addr: IpAddr| {
        policy.vlans.iter().any(|v| v.protected && v.subnets.iter().any(|n| n.contains(&addr)))
    };
    let src = find(f.src);
    let dst = find(f.dst);
    let decision = |reason: Reason| Decision {
        reason,
        verdict: reason.verdict(),
        src_device: src,
        dst_device: dst,
        src_rule: None,
        dst_rule: None,
    };
    // Operators' actions: a blocked address anywhere in the frame.
    let blocked = |a: IpAddr| flows.blocks.iter().any(|(n, on)| *on && n.contains(&a));
    if blocked(f.src) || blocked(f.dst) {
        return decision(Reason::Blocked);
    }

    let src_protected = src.is_none() && in_protected(f.src);
    let dst_protected = dst.is_none() && in_protected(f.dst);
    if src.is_none() && dst.is_none() && !src_protected && !dst_protected && !vlan_protected {
        return decision(Reason::Unmatched);
    }

    if let Some(d) = src.map(|i| &policy.devices[i]) {
        if vlan != d.vlan {
            return decision(Reason::WrongVlan);
        }
        if let Some(mac) = d.mac
            && (f.src_mac != mac || (f.kind == Kind::Arp && f.arp_sha != mac))
        {
            return decision(Reason::SpoofedMac);
        }
    }

    if f.kind == Kind::Arp {
        return decision(if policy.allow_arp { Reason::Infra } else { Reason::NotAllowed });
    }
    let ndp = f.proto == 58 && matches!(f.l4, Some((_, 133..=137)));
    let dhcp = f.proto == 17 && matches!(f.l4, Some((68, 67) | (67, 68) | (546, 547) | (547, 546)));
    if (policy.allow_ndp && ndp) || (policy.allow_dhcp && dhcp) {
        return decision(Reason::Infra);
    }

    if src.is_none() && (src_protected || vlan_protected) {
        // A device declared by MAC with this address not bound to it yet.
        let learning = |d: &ResolvedDevice| d.learns && d.vlan == vlan && d.mac == Some(f.src_mac);
        if let Some(i) = policy.devices.iter().position(learning) {
            return Decision { src_device: Some(i), dst_device: None, ..none(Reason::Learning) };
        }
    }
    if (src.is_none() && (src_protected || vlan_protected)) || dst_protected {
        return decision(Reason::UnknownDevice);
    }

    // A quarantined device reaches only the management networks.
    let quarantined = |d: Option<usize>| {
        d.is_some_and(|i| {
            flows.quarantined.iter().any(|(n, on)| *on && *n == policy.devices[i].name)
        })
    };
    let management = |a: IpAddr| policy.management.iter().any(|n| n.contains(&a));
    if (quarantined(src) && !management(f.dst)) || (quarantined(dst) && !management(f.src)) {
        return decision(Reason::Quarantined);
    }

    // Rules of a packet from `s` (device `sd`) to `d` (device `dd`), with
    // protocol and ports `l4`: the first matching rule of each device side.
    let first_match = |rules: &[Rule], peer: IpAddr, l4: Option<(u16, u16)>| {
        rules.iter().position(|r| {
            r.peer.contains(peer)
                && l4_matches(&r.l4, f.proto, l4)
                && (r.sport == Rule::ANY_SPORT
                    || l4.is_some_and(|(s, _)| (r.sport.0..=r.sport.1).contains(&s)))
        })
    };
    let check = |sd: Option<usize>, dd: Option<usize>, s: IpAddr, d: IpAddr, l4| {
        (
            sd.map(|i| first_match(&policy.devices[i].allow_out, d, l4)),
            dd.map(|i| first_match(&policy.devices[i].allow_in, s, l4)),
        )
    };
    let allows =
        |(o, i): (Option<Option<usize>>, Option<Option<usize>>)| o != Some(None) && i != Some(None);

    let allowed = |(out_rule, in_rule): (Option<Option<usize>>, Option<Option<usize>>)| Decision {
        src_rule: out_rule.flatten(),
        dst_rule: in_rule.flatten(),
        ..decision(Reason::Allowed)
    };
    // A TCP segment without SYN, FIN or RST from a port not below its
    // destination port asks the rules first; only one they deny asks the
    // flow table.
    let plain = f.proto == 6
        && f.tcp_flags & 0x07 == 0
        && f.l4.is_some_and(|(sport, dport)| sport >= dport);
    if plain {
        let rules = check(src, dst, f.src, f.dst, f.l4);
        if allows(rules) {
            return allowed(rules);
        }
    }

    // Flow tracking: TCP, UDP, ICMP echo with an L4 header.
    let tracked = match (f.proto, f.l4) {
        (6 | 17, Some((sport, dport))) => Some((sport, dport)),
        _ if is_echo(&f, true) || is_echo(&f, false) => Some((0, 0)),
        _ => None,
    }
    .map(|(sport, dport)| {
        let mut key = FlowKey::default();
        let src_lo =
            key.set(&Addr(addr::key(f.src)), sport, &Addr(addr::key(f.dst)), dport, f.proto);
        (key, src_lo)
    });
    // A bare SYN answers nothing: the rules decide it.
    let bare_syn = f.proto == 6 && f.tcp_flags & 0x12 == 0x02;
    if let Some((key, src_lo)) = tracked
        && !bare_syn
        && let Some(flow) = flows.table.get(&key).copied()
    {
        let from_opener = flow.lo_opened == src_lo;
        let continues = match f.proto {
            6 | 17 => true,
            _ => is_echo(&f, from_opener),
        };
        if continues {
            let still = flow.epoch == flows.epoch || {
                let (o, r, oa, ra) =
                    if from_opener { (src, dst, f.src, f.dst) } else { (dst, src, f.dst, f.src) };
                // The opening packet's source port: this frame's at the
                // opener's end (ICMP: none).
                let opener_port = match (f.proto, f.l4) {
                    (6 | 17, Some((s, d))) => {
                        if from_opener {
                            s
                        } else {
                            d
                        }
                    }
                    _ => 0,
                };
                allows(check(o, r, oa, ra, Some((opener_port, flow.open_port))))
            };
            if still {
                let closing = flow.closing || (f.proto == 6 && f.tcp_flags & 0x05 != 0);
                let epoch = flows.epoch;
                flows.table.insert(key, RefFlow { closing, epoch, ..flow });
                flows.made.insert(key);
                return decision(Reason::Established);
            }
            flows.table.remove(&key);
        }
    }

    let rules = check(src, dst, f.src, f.dst, f.l4);
    // A side without a device allows; a device side needs a matching rule.
    if plain || !allows(rules) {
        return decision(Reason::NotAllowed);
    }
    if let Some((key, src_lo)) = tracked {
        let opens = f.frag != Frag::Recalled
            && match f.proto {
                6 => f.tcp_flags & 0x17 == 0x02,
                17 => true,
                _ => is_echo(&f, true),
            };
        if opens {
            let open_port = f.l4.map_or(0, |(_, p)| p);
            let flow = RefFlow { lo_opened: src_lo, open_port, closing: false, epoch: flows.epoch };
            flows.table.insert(key, flow);
            flows.made.insert(key);
        }
    }
    allowed(rules)
}

/// A rule's protocol/port part against a frame. Without an L4 header (a
/// non-first fragment, a protocol without ports) only rules that leave the
/// port open match.
fn l4_matches(l4: &L4, proto: u8, ports: Option<(u16, u16)>) -> bool {
    match *l4 {
        L4::Any => true,
        L4::Proto(p) => p == proto,
        L4::Ports { proto: p, lo, hi } => {
            p == proto && ports.is_some_and(|(_, port)| (lo..=hi).contains(&port))
        }
        L4::IcmpType { proto: p, icmp_type } => {
            p == proto && ports.is_some_and(|(_, t)| t == u16::from(icmp_type))
        }
    }
}
