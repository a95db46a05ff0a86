//! The decision of ARCHITECTURE §3 for a parsed frame: operators' actions
//! (blocklist, quarantine), identity checks, infrastructure, the flow
//! table, then the rules (for a client's plain TCP segments the rules
//! first, `flow::rules_first`; the verdict is the same either way).
//!
//! Mirrored in plain Rust by `vlanguard_tests::reference` (tests/src/reference.rs); keep them in step.

use filter_common::{
    Addr, DEVICE_MAC_BOUND, DEVICE_MONITOR, DeviceInfo, FLOW_TIMEOUTS, GENERATION_MASK, Reason,
    Settings, VLAN_IDS, VLAN_PROTECTED, icmp, ipproto, settings,
};

use crate::{
    actions, devices,
    flow::{self, Lookup},
    frame::Frame,
    maps::{CONFIG, GENERATION, VLAN_FLAGS},
    parse::{Kind, Packet},
    rate,
    rules::{self, NO_MATCH, Query},
    scratch,
};

/// Counter slots of the devices a frame was decided for, [`NO_SLOT`] for
/// none. Plain integers rather than `Option<u32>`: LLVM leaves the payload of
/// a `None` undefined and may store an unwritten register, which the
/// verifier rejects.
pub struct Involved {
    pub src_slot: u32,
    pub dst_slot: u32,
    /// The rule of each device that let the frame through, [`NO_SLOT`] for
    /// none.
    pub src_rule: u32,
    pub dst_rule: u32,
    /// Every device involved is in monitor mode (false with none).
    pub monitor: bool,
}

pub const NO_SLOT: u32 = u32::MAX;

impl Involved {
    pub const NONE: Involved = Involved {
        src_slot: NO_SLOT,
        dst_slot: NO_SLOT,
        src_rule: NO_SLOT,
        dst_rule: NO_SLOT,
        monitor: false,
    };

    /// Whether a frame these devices would deny is passed and reported:
    /// by the devices' own mode, or for frames involving none by the
    /// policy's.
    #[inline(always)]
    pub fn monitored(&self, settings: &Settings) -> bool {
        if self.src_slot == NO_SLOT && self.dst_slot == NO_SLOT {
            settings.flags & settings::MONITOR != 0
        } else {
            self.monitor
        }
    }
}

/// The decision as the rest of the program sees it, laundered through the
/// CPU's scratch space (`scratch`).
///
/// Why: `decide` returns from a dozen places with different constants
/// (reason, slots, rule indexes); the verifier would walk the counting,
/// event and log code after it once for each. Read back from a map, the
/// values are plain unknown numbers, so the paths meet in one state and
/// that code is checked once (see `parse::slot`).
#[inline(always)]
pub fn settle(reason: Reason, devices: Involved) -> (Reason, Involved) {
    let Some(slot) = scratch::decision() else { return (reason, devices) };
    let slot = slot.ptr();
    // SAFETY: this CPU's scratch slot (`scratch::Slot`): this frame's from
    // the write to the read.
    let d = unsafe {
        slot.write(Decision {
            reason: reason as u32,
            src_slot: devices.src_slot,
            dst_slot: devices.dst_slot,
            src_rule: devices.src_rule,
            dst_rule: devices.dst_rule,
            monitor: u32::from(devices.monitor),
        });
        slot.read_volatile()
    };
    let reason = match Reason::from_u8(d.reason as u8) {
        Some(r) => r,
        None => Reason::Malformed,
    };
    let devices = Involved {
        src_slot: d.src_slot,
        dst_slot: d.dst_slot,
        src_rule: d.src_rule,
        dst_rule: d.dst_rule,
        monitor: d.monitor != 0,
    };
    (reason, devices)
}

/// `settle`'s slot (in `scratch`): `Involved` and the reason as plain
/// integers.
#[repr(C)]
pub struct Decision {
    reason: u32,
    src_slot: u32,
    dst_slot: u32,
    src_rule: u32,
    dst_rule: u32,
    monitor: u32,
}

/// The policy generation in force and its settings, read once per frame so
/// that everything decided for it comes from one generation.
pub struct Active {
    pub generation: u32,
    pub settings: &'static Settings,
}

/// What a generation that was never written holds.
static NO_SETTINGS: Settings =
    Settings { flags: 0, events_per_sec: 0, epoch: 0, flow_timeouts: [0; FLOW_TIMEOUTS] };

#[inline(always)]
pub fn active() -> Active {
    let generation = match GENERATION.get(0) {
        Some(g) => *g & GENERATION_MASK,
        None => 0,
    };
    // User space writes a generation's settings before making it active
    // and never while it is active.
    let settings = match CONFIG.get(generation) {
        Some(c) => &c.settings,
        None => &NO_SETTINGS,
    };
    Active { generation, settings }
}

#[inline(always)]
pub fn decide(ctx: &impl Frame, pkt: &Packet, active: &Active) -> (Reason, Involved) {
    let Active { generation, settings } = *active;

    let vlan = frame_vlan(ctx, pkt, generation);
    let vlan_protected = vlan != 0 && vlan_protected(generation, vlan);

    if pkt.kind == Kind::Other {
        // Nothing to match a device on; only protected VLANs care.
        let reason = if vlan_protected { Reason::NotAllowed } else { Reason::Unmatched };
        return (reason, Involved::NONE);
    }

    let (src_dev, src_in_protected) = devices::locate(generation, &pkt.src);
    let (dst_dev, dst_in_protected) = devices::locate(generation, &pkt.dst);
    let involved = Involved {
        src_slot: match src_dev {
            Some(d) => d.slot,
            None => NO_SLOT,
        },
        dst_slot: match dst_dev {
            Some(d) => d.slot,
            None => NO_SLOT,
        },
        src_rule: NO_SLOT,
        dst_rule: NO_SLOT,
        monitor: (src_dev.is_some() || dst_dev.is_some())
            && src_dev.is_none_or(|d| d.flags & DEVICE_MONITOR != 0)
            && dst_dev.is_none_or(|d| d.flags & DEVICE_MONITOR != 0),
    };
    // Operators' actions (ARCHITECTURE §3 step 2): a blocked address is dropped
    // wherever it appears, device or not.
    let (any_blocks, any_quarantine) = (actions::any_blocks(), actions::any_quarantine());
    let now = if any_blocks || any_quarantine { actions::now() } else { 0 };
    if any_blocks && (actions::blocked(&pkt.src, now) || actions::blocked(&pkt.dst, now)) {
        return (Reason::Blocked, involved);
    }

    let src_protected = src_dev.is_none() && src_in_protected;
    let dst_protected = dst_dev.is_none() && dst_in_protected;
    if src_dev.is_none() && dst_dev.is_none() && !src_protected && !dst_protected && !vlan_protected
    {
        return (Reason::Unmatched, involved);
    }

    // Anti-spoofing: a device speaks only from its VLAN and its bound MAC.
    if let Some(d) = src_dev {
        if vlan != d.vlan {
            return (Reason::WrongVlan, involved);
        }
        if d.flags & DEVICE_MAC_BOUND != 0
            && (pkt.src_mac != d.mac || (pkt.kind == Kind::Arp && pkt.arp_sha != d.mac))
        {
            return (Reason::SpoofedMac, involved);
        }
    }

    // Infrastructure the operator enabled explicitly.
    if pkt.kind == Kind::Arp {
        let reason = if settings.flags & settings::ALLOW_ARP != 0 {
            Reason::Infra
        } else {
            Reason::NotAllowed
        };
        return (reason, involved);
    }
    if (settings.flags & settings::ALLOW_NDP != 0 && is_ndp(pkt))
        || (settings.flags & settings::ALLOW_DHCP != 0 && is_dhcp(pkt))
    {
        return (Reason::Infra, involved);
    }

    if src_dev.is_none() && (src_protected || vlan_protected) {
        // A device declared by MAC whose address is not bound yet: held
        // back, and the event tells the daemon to bind it (ARCHITECTURE §5).
        if let Some(d) = devices::by_mac(generation, vlan, &pkt.src_mac) {
            let monitor = d.flags & DEVICE_MONITOR != 0;
            return (Reason::Learning, Involved { src_slot: d.slot, monitor, ..Involved::NONE });
        }
        return (Reason::UnknownDevice, involved);
    }
    if dst_protected {
        return (Reason::UnknownDevice, involved);
    }

    // A quarantined device reaches only the management networks, flows
    // and rules notwithstanding.
    if any_quarantine
        && ((involved.src_slot != NO_SLOT
            && actions::quarantined(involved.src_slot, now)
            && !actions::management(generation, &pkt.dst))
            || (involved.dst_slot != NO_SLOT
                && actions::quarantined(involved.dst_slot, now)
                && !actions::management(generation, &pkt.src)))
    {
        return (Reason::Quarantined, involved);
    }

    // A client's TCP segment that neither opens nor closes its connection
    // (`flow::rules_first`) asks the rules first: one they allow passes
    // without the flow table (no key, no hash, no lookup), so it does not
    // refresh its flow; the server's answers, which need the flow, do.
    // Either order gives the same verdict; this one spares most segments
    // the step that would not decide them. Segments that open or close,
    // and UDP and ICMP, which open flows or refresh them by being allowed,
    // go through the flow table first.
    let plain = flow::rules_first(pkt);
    if plain {
        let (out_rule, in_rule) = frame_rules(generation, src_dev, dst_dev, pkt);
        if out_rule != NO_MATCH && in_rule != NO_MATCH {
            if over_rate(dst_dev, false) {
                return (Reason::RateLimited, involved);
            }
            return (Reason::Allowed, credit(involved, src_dev, dst_dev, out_rule, in_rule));
        }
    }

    // A flow an allowed packet opened (ARCHITECTURE §3 step 3). A bare SYN
    // starts a connection and answers nothing: `lookup` leaves it to the
    // rules (a retransmitted SYN of an open flow is allowed by the rule
    // that allowed the first), so a SYN flood or a port scan costs no
    // flow lookup.
    let tracked = flow::key(pkt);
    if let Some(t) = &tracked {
        match flow::lookup(t, pkt, settings) {
            Lookup::Miss => {}
            Lookup::Current { flow: f, from_opener, now } => {
                if over_rate(dst_dev, false) {
                    return (Reason::RateLimited, involved);
                }
                // SAFETY: `f` is the value `lookup` found for this frame.
                unsafe { flow::touch(f, pkt, from_opener, settings, now) };
                return (Reason::Established, involved);
            }
            Lookup::Stale { flow: f, at, from_opener, open_port, now } => {
                // Ask the rules about the packet that opened the flow: its
                // source port is this frame's at the opener's end.
                let (opener, other, opener_addr, other_addr, opener_port) = if from_opener {
                    (src_dev, dst_dev, &pkt.src, &pkt.dst, pkt.sport)
                } else {
                    (dst_dev, src_dev, &pkt.dst, &pkt.src, pkt.port)
                };
                let opener_port = if pkt.proto == ipproto::TCP || pkt.proto == ipproto::UDP {
                    opener_port
                } else {
                    0
                };
                let (o, i) = rules(
                    generation,
                    opener,
                    other,
                    opener_addr,
                    other_addr,
                    pkt.proto,
                    opener_port,
                    open_port,
                    true,
                );
                if o != NO_MATCH && i != NO_MATCH {
                    if over_rate(dst_dev, false) {
                        return (Reason::RateLimited, involved);
                    }
                    // SAFETY: as above.
                    unsafe { flow::touch(f, pkt, from_opener, settings, now) };
                    return (Reason::Established, involved);
                }
                flow::revoke(t, at);
            }
        }
    }

    // The rules said no above, and no flow passed it.
    if plain {
        return (Reason::NotAllowed, involved);
    }
    // Both ends that are devices must allow it.
    let (out_rule, in_rule) = frame_rules(generation, src_dev, dst_dev, pkt);
    if out_rule == NO_MATCH || in_rule == NO_MATCH {
        return (Reason::NotAllowed, involved);
    }
    // Limits count what would pass, before a flow is opened: a dropped SYN
    // opens nothing that its retransmission could ride on.
    if over_rate(dst_dev, flow::is_syn(pkt)) {
        return (Reason::RateLimited, involved);
    }
    if let Some(t) = &tracked {
        flow::open(t, pkt, settings);
    }
    (Reason::Allowed, credit(involved, src_dev, dst_dev, out_rule, in_rule))
}

/// `involved` with the first matching rule of each device credited with
/// the hit.
#[inline(always)]
fn credit(
    mut involved: Involved,
    src_dev: Option<&DeviceInfo>,
    dst_dev: Option<&DeviceInfo>,
    out_rule: u32,
    in_rule: u32,
) -> Involved {
    if src_dev.is_some() {
        involved.src_rule = out_rule;
    }
    if dst_dev.is_some() {
        involved.dst_rule = in_rule;
    }
    involved
}

/// Whether a frame towards `dst` (a device, or none) is over its rate
/// limits; counts it.
#[inline(always)]
fn over_rate(dst: Option<&DeviceInfo>, syn: bool) -> bool {
    match dst {
        Some(d) => rate::over(d, syn),
        None => false,
    }
}

/// [`rules`] asked about the frame itself.
#[inline(always)]
fn frame_rules(
    generation: u32,
    src_dev: Option<&DeviceInfo>,
    dst_dev: Option<&DeviceInfo>,
    pkt: &Packet,
) -> (u32, u32) {
    rules(
        generation,
        src_dev,
        dst_dev,
        &pkt.src,
        &pkt.dst,
        pkt.proto,
        pkt.sport,
        pkt.port,
        pkt.l4_known,
    )
}

/// The first matching rule of each side of a packet from `src` to `dst`
/// ([`NO_MATCH`] for none; 0 where that side is no device, which allows
/// it): the sender's `allow_out` asked about the receiver's address, the
/// receiver's `allow_in` about the sender's.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "plain values, kept in registers")]
fn rules(
    generation: u32,
    src_dev: Option<&DeviceInfo>,
    dst_dev: Option<&DeviceInfo>,
    src: &Addr,
    dst: &Addr,
    proto: u8,
    sport: u16,
    dport: u16,
    l4_known: bool,
) -> (u32, u32) {
    let out_rule = match src_dev {
        Some(d) => rules::first_match(
            generation,
            &d.rules_out,
            Query { peer: dst, proto, sport, dport, l4_known },
        ),
        None => 0,
    };
    let in_rule = match dst_dev {
        Some(d) => rules::first_match(
            generation,
            &d.rules_in,
            Query { peer: src, proto, sport, dport, l4_known },
        ),
        None => 0,
    };
    (out_rule, in_rule)
}

/// Neighbour solicitation/advertisement, router solicitation/advertisement,
/// redirect.
#[inline(always)]
fn is_ndp(pkt: &Packet) -> bool {
    pkt.proto == ipproto::ICMPV6
        && pkt.l4_known
        && pkt.port >= icmp::V6_NDP_FIRST
        && pkt.port <= icmp::V6_NDP_LAST
}

/// DHCPv4 (68 <-> 67) and DHCPv6 (546 <-> 547), either direction.
#[inline(always)]
fn is_dhcp(pkt: &Packet) -> bool {
    pkt.proto == ipproto::UDP
        && pkt.l4_known
        && matches!((pkt.sport, pkt.port), (68, 67) | (67, 68) | (546, 547) | (547, 546))
}

/// The frame's VLAN: its innermost tag, else the interface's untagged VLAN
/// (0: none).
#[inline(always)]
pub fn frame_vlan(ctx: &impl Frame, pkt: &Packet, generation: u32) -> u16 {
    if pkt.vlan != 0 { pkt.vlan } else { devices::untagged_vlan(ctx, generation) }
}

#[inline(always)]
pub fn vlan_protected(generation: u32, vlan: u16) -> bool {
    vlan_flags(generation, vlan) & VLAN_PROTECTED != 0
}

#[inline(always)]
fn vlan_flags(generation: u32, vlan: u16) -> u32 {
    let index = generation * VLAN_IDS + u32::from(vlan & 0x0fff);
    match VLAN_FLAGS.get(index) {
        Some(f) => *f,
        None => 0,
    }
}
