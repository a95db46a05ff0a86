//! The real XDP program, in the real kernel (BPF_PROG_TEST_RUN), on
//! hand-written frames: each encapsulation, v4 and v6, each protocol,
//! truncations, bad headers, fragments, spoofing and unknown hosts. Every
//! case checks the action, the reason and exactly which counters moved,
//! and that the reference evaluator agrees.

use std::collections::BTreeMap;

use filter_common::{Addr, Direction, FLOW_WAYS, FlowKey, Reason, Verdict, flow_bucket, flow_hash};
use filter_user::Resolved;
use vlanguard_tests::reference;
use vlanguard_tests::{
    frame::{Body, Ext, Frame, L4, TPID_8021AD, TPID_8021Q, v4, v6},
    harness::{Harness, XDP_DROP, XDP_PASS},
    monotonic_second,
    policies::{MONITOR, PUMP, PUMP_MAC, hospital, hospital_with_pump, resolve},
    privileged,
};

/// Runs `frame` and asserts the verdict, reason and counters: the global
/// counter of the reason moved by one frame and its bytes; the devices in
/// `devices` (slot, direction) moved the same; nothing else moved.
#[track_caller]
fn check(
    h: &mut Harness,
    policy: &Resolved,
    iface_vlan: u16,
    what: &str,
    frame: &[u8],
    reason: Reason,
    devices: &[(u32, Direction)],
) {
    check_verdict(h, policy, iface_vlan, what, frame, reason, reason.verdict(), devices);
}

/// `check` with the verdict given (monitor mode turns drops into
/// would-drops).
#[expect(clippy::too_many_arguments, reason = "one assertion, spelled out at each call")]
fn check_verdict(
    h: &mut Harness,
    policy: &Resolved,
    iface_vlan: u16,
    what: &str,
    frame: &[u8],
    reason: Reason,
    verdict: Verdict,
    devices: &[(u32, Direction)],
) {
    let out = h.run(frame);
    let len = frame.len() as u64;
    let action = if verdict.passes() { XDP_PASS } else { XDP_DROP };
    assert_eq!(out.action, action, "{what}: action (outcome {out:?})");
    assert_eq!(
        out.global,
        BTreeMap::from([((verdict, reason), (1, len))]),
        "{what}: global counters"
    );
    let expected: BTreeMap<_, _> =
        devices.iter().map(|(slot, dir)| ((*slot, *dir, verdict), (1, len))).collect();
    assert_eq!(out.devices, expected, "{what}: device counters");

    let r = reference::evaluate_with_flows(policy, frame, iface_vlan, &mut h.flows);
    assert_eq!((r.reason, r.verdict), (reason, verdict), "{what}: reference evaluator disagrees");
}

fn setup(policy: &Resolved, iface_vlan: u16) -> Option<Harness> {
    if !privileged() {
        return None;
    }
    let mut h = Harness::new();
    h.apply(policy, iface_vlan);
    Some(h)
}

const NURSE: &str = "10.30.1.1";
const PUMP4: &str = "10.110.0.7";
const PUMP6: &str = "2001:db8:110::7";
const MON4: &str = "10.120.0.5";

#[test]
fn allowlist_rules_decide_traffic_to_and_from_devices() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    use Direction::{In, Out};

    let to_pump = |l4| Frame::ip(v4(NURSE), v4(PUMP4), l4).bytes();
    check(
        h,
        &p,
        0,
        "nurse -> pump tcp/443",
        &to_pump(L4::tcp(40000, 443)),
        Reason::Allowed,
        &[(PUMP, In)],
    );
    check(
        h,
        &p,
        0,
        "nurse -> pump tcp/80",
        &to_pump(L4::tcp(40000, 80)),
        Reason::NotAllowed,
        &[(PUMP, In)],
    );
    check(
        h,
        &p,
        0,
        "nurse -> pump udp/443",
        &to_pump(L4::udp(40000, 443)),
        Reason::NotAllowed,
        &[(PUMP, In)],
    );
    check(
        h,
        &p,
        0,
        "nurse -> pump icmp echo",
        &to_pump(L4::icmp(8)),
        Reason::Allowed,
        &[(PUMP, In)],
    );
    check(
        h,
        &p,
        0,
        "nurse -> pump icmp timestamp",
        &to_pump(L4::icmp(13)),
        Reason::NotAllowed,
        &[(PUMP, In)],
    );
    check(
        h,
        &p,
        0,
        "other protocol (GRE) to pump",
        &to_pump(L4::Other { proto: 47, len: 8 }),
        Reason::NotAllowed,
        &[(PUMP, In)],
    );

    // The device's own rule (a /32 and ssh) merged with its profile.
    let ssh = Frame::ip(v4("10.30.4.20"), v4(PUMP4), L4::tcp(40000, 22)).bytes();
    check(h, &p, 0, "admin -> pump ssh", &ssh, Reason::Allowed, &[(PUMP, In)]);
    let ssh = Frame::ip(v4("10.30.4.21"), v4(PUMP4), L4::tcp(40000, 22)).bytes();
    check(h, &p, 0, "other nurse -> pump ssh", &ssh, Reason::NotAllowed, &[(PUMP, In)]);

    let from_pump =
        |dst: &str, l4| Frame::ip(v4(PUMP4), v4(dst), l4).vlan(110).from_mac(PUMP_MAC).bytes();
    check(
        h,
        &p,
        0,
        "pump -> drug library",
        &from_pump("10.20.5.10", L4::tcp(40000, 443)),
        Reason::Allowed,
        &[(PUMP, Out)],
    );
    check(
        h,
        &p,
        0,
        "pump -> next to drug library",
        &from_pump("10.20.5.11", L4::tcp(40000, 443)),
        Reason::NotAllowed,
        &[(PUMP, Out)],
    );
    check(
        h,
        &p,
        0,
        "pump -> any ntp",
        &from_pump("192.0.2.1", L4::udp(123, 123)),
        Reason::Allowed,
        &[(PUMP, Out)],
    );
    check(
        h,
        &p,
        0,
        "pump -> internet https",
        &from_pump("192.0.2.1", L4::tcp(40000, 443)),
        Reason::NotAllowed,
        &[(PUMP, Out)],
    );

    // Port ranges at and beyond their edges.
    let mon = |port| Frame::ip(v4(MON4), v4(NURSE), L4::tcp(40000, port)).vlan(120).bytes();
    check(h, &p, 0, "monitor -> nurse 8000", &mon(8000), Reason::Allowed, &[(MONITOR, Out)]);
    check(h, &p, 0, "monitor -> nurse 8080", &mon(8080), Reason::Allowed, &[(MONITOR, Out)]);
    check(h, &p, 0, "monitor -> nurse 7999", &mon(7999), Reason::NotAllowed, &[(MONITOR, Out)]);
    check(h, &p, 0, "monitor -> nurse 8081", &mon(8081), Reason::NotAllowed, &[(MONITOR, Out)]);
}

#[test]
fn device_to_device_needs_both_sides() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    use Direction::{In, Out};
    let d2d = |port| {
        Frame::ip(v4(PUMP4), v4(MON4), L4::udp(40000, port)).vlan(110).from_mac(PUMP_MAC).bytes()
    };
    let both = [(PUMP, Out), (MONITOR, In)];
    check(h, &p, 0, "pump -> monitor 5005 (both allow)", &d2d(5005), Reason::Allowed, &both);
    check(
        h,
        &p,
        0,
        "pump -> monitor 5050 (monitor allows, pump does not)",
        &d2d(5050),
        Reason::NotAllowed,
        &both,
    );
    let back =
        |sport, dport| Frame::ip(v4(MON4), v4(PUMP4), L4::udp(sport, dport)).vlan(120).bytes();
    let back_sides = [(MONITOR, Out), (PUMP, In)];
    check(
        h,
        &p,
        0,
        "monitor -> pump, not a reply (neither allows)",
        &back(5006, 40000),
        Reason::NotAllowed,
        &back_sides,
    );
    check(
        h,
        &p,
        0,
        "monitor -> pump, the reply to the allowed datagram",
        &back(5005, 40000),
        Reason::Established,
        &back_sides,
    );
}

/// Flow tracking (ARCHITECTURE §3 step 3) through the kernel program: what opens
/// a flow, what continues it, what does not, and a revoked rule ending it.
#[test]
fn flows_let_replies_through_until_revoked() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    use Direction::{In, Out};
    let server = "10.20.5.10";
    let out = |l4| Frame::ip(v4(PUMP4), v4(server), l4).vlan(110).from_mac(PUMP_MAC).bytes();
    let back = |l4| Frame::ip(v4(server), v4(PUMP4), l4).bytes();
    let pout = [(PUMP, Out)];
    let pin = [(PUMP, In)];
    let tcp = |sport, dport, flags| L4::Tcp { sport, dport, doff: 5, flags };

    // Unsolicited: the server's SYN-ACK before any SYN is dropped.
    check(h, &p, 0, "unsolicited syn-ack", &back(tcp(443, 40001, 0x12)), Reason::NotAllowed, &pin);
    check(h, &p, 0, "pump syn", &out(L4::syn(40001, 443)), Reason::Allowed, &pout);
    // A retransmitted SYN is the rules' again (a bare SYN answers
    // nothing) and leaves the flow as it is: no new flow is counted.
    let created = |h: &Harness| h.filter.flow_stats().expect("flow stats").created;
    let before = created(h);
    check(h, &p, 0, "pump syn again", &out(L4::syn(40001, 443)), Reason::Allowed, &pout);
    check(h, &p, 0, "server syn-ack", &back(tcp(443, 40001, 0x12)), Reason::Established, &pin);
    check(h, &p, 0, "pump syn late", &out(L4::syn(40001, 443)), Reason::Allowed, &pout);
    assert_eq!(created(h), before, "a retransmitted SYN opens no flow");
    // A segment without SYN, FIN or RST that the rules allow passes by
    // them, without the flow table: counted as allowed, with its rule hit.
    check(h, &p, 0, "pump ack", &out(tcp(40001, 443, 0x10)), Reason::Allowed, &pout);
    // From a port below the destination's (where servers answer from),
    // the flow table is asked first.
    check(h, &p, 0, "low-port syn", &out(L4::syn(80, 443)), Reason::Allowed, &pout);
    check(h, &p, 0, "low-port ack", &out(tcp(80, 443, 0x10)), Reason::Established, &pout);
    check(h, &p, 0, "server data", &back(tcp(443, 40001, 0x18)), Reason::Established, &pin);
    // The server may not open its own connection on the same ports.
    check(h, &p, 0, "server bare syn", &back(L4::syn(443, 40001)), Reason::NotAllowed, &pin);
    // Another client port is another flow.
    check(h, &p, 0, "other port", &back(tcp(443, 40002, 0x12)), Reason::NotAllowed, &pin);
    check(h, &p, 0, "server fin", &back(tcp(443, 40001, 0x11)), Reason::Established, &pin);
    check(h, &p, 0, "pump fin-ack", &out(tcp(40001, 443, 0x11)), Reason::Established, &pout);
    // After the close a new SYN is a new connection, for the rules.
    check(h, &p, 0, "new syn after close", &out(L4::syn(40001, 443)), Reason::Allowed, &pout);

    // The pump's NTP query (allow_out udp 123) and its answer.
    check(h, &p, 0, "ntp query", &out(L4::udp(50123, 123)), Reason::Allowed, &pout);
    check(h, &p, 0, "ntp answer", &back(L4::udp(123, 50123)), Reason::Established, &pin);
    check(h, &p, 0, "other udp", &back(L4::udp(123, 50124)), Reason::NotAllowed, &pin);

    // Echo: a nurse pings the pump; the pump's reply is the flow's.
    let nurse_ping = Frame::ip(v4(NURSE), v4(PUMP4), L4::icmp(8)).bytes();
    let pump_reply =
        Frame::ip(v4(PUMP4), v4(NURSE), L4::icmp(0)).vlan(110).from_mac(PUMP_MAC).bytes();
    check(h, &p, 0, "nurse echo request", &nurse_ping, Reason::Allowed, &pin);
    check(h, &p, 0, "pump echo reply", &pump_reply, Reason::Established, &pout);

    // IPv6: the pump's HTTPS to the drug library.
    let out6 =
        |l4| Frame::ip(v6(PUMP6), v6("2001:db8:20::10"), l4).vlan(110).from_mac(PUMP_MAC).bytes();
    let back6 = |l4| Frame::ip(v6("2001:db8:20::10"), v6(PUMP6), l4).bytes();
    check(h, &p, 0, "v6 syn", &out6(L4::syn(40003, 443)), Reason::Allowed, &pout);
    check(h, &p, 0, "v6 syn-ack", &back6(tcp(443, 40003, 0x12)), Reason::Established, &pin);

    // Revoking the rule that opened the flows ends them: the pump's
    // allow_out loses HTTPS to the drug library.
    let mut revoked = p.clone();
    let pump = revoked.devices.iter_mut().find(|d| d.name == "pump-1").expect("pump");
    pump.allow_out.retain(|r| !matches!(r.l4, filter_user::policy::L4::Ports { lo: 443, .. }));
    h.apply(&revoked, 0);
    check(
        h,
        &revoked,
        0,
        "syn-ack after revoke",
        &back(tcp(443, 40003, 0x12)),
        Reason::NotAllowed,
        &pin,
    );
    check(
        h,
        &revoked,
        0,
        "v6 after revoke",
        &back6(tcp(443, 40003, 0x18)),
        Reason::NotAllowed,
        &pin,
    );
    // Flows a policy change leaves allowed carry on.
    check(
        h,
        &revoked,
        0,
        "ntp answer still",
        &back(L4::udp(123, 50123)),
        Reason::Established,
        &pin,
    );
}

#[test]
fn every_vlan_encapsulation() {
    let p = hospital();
    let base = || Frame::ip(v4(PUMP4), v4("10.20.5.10"), L4::tcp(40000, 443)).from_mac(PUMP_MAC);
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    let out = [(PUMP, Direction::Out)];
    check(h, &p, 0, "802.1Q", &base().vlan(110).bytes(), Reason::Allowed, &out);
    check(
        h,
        &p,
        0,
        "QinQ 802.1ad + 802.1Q",
        &base().qinq(3000, 110).bytes(),
        Reason::Allowed,
        &out,
    );
    let mut f = base();
    f.tags = vec![(0x9100, 3000), (TPID_8021Q, 110)];
    check(h, &p, 0, "QinQ 0x9100 + 802.1Q", &f.bytes(), Reason::Allowed, &out);
    let mut f = base();
    f.tags = vec![(TPID_8021AD, 110)];
    check(h, &p, 0, "single 802.1ad tag", &f.bytes(), Reason::Allowed, &out);
    check(h, &p, 0, "wrong VLAN tag", &base().vlan(120).bytes(), Reason::WrongVlan, &out);
    check(
        h,
        &p,
        0,
        "QinQ with wrong inner VLAN",
        &base().qinq(110, 120).bytes(),
        Reason::WrongVlan,
        &out,
    );
    check(h, &p, 0, "untagged on an uplink", &base().bytes(), Reason::WrongVlan, &out);
    check(
        h,
        &p,
        0,
        "priority tag (VID 0) on an uplink",
        &base().vlan(0).bytes(),
        Reason::WrongVlan,
        &out,
    );
    let mut f = base();
    f.tags = vec![(TPID_8021AD, 1), (TPID_8021Q, 2), (TPID_8021Q, 110)];
    check(h, &p, 0, "three tags", &f.bytes(), Reason::Malformed, &[]);
    check(
        h,
        &p,
        0,
        "padded to 60 bytes",
        &Frame::ip(v4(NURSE), v4(PUMP4), L4::icmp(8)).padded(),
        Reason::Allowed,
        &[(PUMP, Direction::In)],
    );

    // An access interface declared to carry VLAN 110 untagged.
    h.apply(&p, 110);
    check(h, &p, 110, "untagged on a VLAN 110 access port", &base().bytes(), Reason::Allowed, &out);
    check(
        h,
        &p,
        110,
        "priority tag on a VLAN 110 access port",
        &base().vlan(0).bytes(),
        Reason::Allowed,
        &out,
    );
    check(
        h,
        &p,
        110,
        "a tag still wins over the port's VLAN",
        &base().vlan(120).bytes(),
        Reason::WrongVlan,
        &out,
    );
    let stranger = Frame::ip(v4("192.0.2.9"), v4("192.0.2.1"), L4::tcp(1, 2)).bytes();
    check(h, &p, 110, "unknown source on the VLAN 110 port", &stranger, Reason::UnknownDevice, &[]);
}

#[test]
fn ipv6_and_extension_headers() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    let nurse6 = v6("2001:db8:30::1");
    let to_pump = |l4| Frame::ip(nurse6, v6(PUMP6), l4);
    let pin = [(PUMP, Direction::In)];
    check(h, &p, 0, "v6 tcp/443", &to_pump(L4::tcp(40000, 443)).bytes(), Reason::Allowed, &pin);
    check(h, &p, 0, "v6 tcp/80", &to_pump(L4::tcp(40000, 80)).bytes(), Reason::NotAllowed, &pin);
    check(h, &p, 0, "v6 echo request", &to_pump(L4::icmp(128)).bytes(), Reason::Allowed, &pin);
    check(
        h,
        &p,
        0,
        "v6 icmp type 8 is not v4 echo",
        &to_pump(L4::icmp(8)).bytes(),
        Reason::NotAllowed,
        &pin,
    );
    let from_pump = Frame::ip(v6(PUMP6), v6("2001:db8:20::10"), L4::tcp(40000, 443))
        .vlan(110)
        .from_mac(PUMP_MAC);
    check(
        h,
        &p,
        0,
        "v6 pump -> drug library",
        &from_pump.bytes(),
        Reason::Allowed,
        &[(PUMP, Direction::Out)],
    );

    let with_ext = |ext: Vec<Ext>| {
        to_pump(L4::tcp(40000, 443)).with_ip(|b| {
            if let Body::Ip { ext: e, .. } = b {
                *e = ext
            }
        })
    };
    let chain = vec![
        Ext::HopByHop { len8: 0 },
        Ext::DestOpts { len8: 1 },
        Ext::Routing { len8: 2 },
        Ext::DestOpts { len8: 0 },
    ];
    check(h, &p, 0, "v6 four extension headers", &with_ext(chain).bytes(), Reason::Allowed, &pin);
    let first = vec![Ext::HopByHop { len8: 0 }, Ext::Fragment { offset8: 0, more: true }];
    check(h, &p, 0, "v6 first fragment", &with_ext(first).bytes(), Reason::Allowed, &pin);
    let six = vec![Ext::DestOpts { len8: 0 }; 6];
    check(
        h,
        &p,
        0,
        "v6 six extension headers (the bound)",
        &with_ext(six).bytes(),
        Reason::Allowed,
        &pin,
    );
    let seven = vec![Ext::DestOpts { len8: 0 }; 7];
    check(h, &p, 0, "v6 seven extension headers", &with_ext(seven).bytes(), Reason::Malformed, &[]);
    let long = vec![Ext::DestOpts { len8: 255 }, Ext::DestOpts { len8: 0 }];
    check(
        h,
        &p,
        0,
        "v6 headers past the offset bound",
        &with_ext(long).bytes(),
        Reason::Malformed,
        &[],
    );
    let mapped = Frame::ip(v6("::ffff:10.30.1.1"), v6(PUMP6), L4::tcp(40000, 443)).bytes();
    check(h, &p, 0, "v6 with a v4-mapped source", &mapped, Reason::Malformed, &[]);
}

#[test]
fn fragments_and_ipv4_options() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    let pin = [(PUMP, Direction::In)];
    let frag = |src: &str, dst: &str, l4, offset8: u16, more: bool| {
        Frame::ip(v4(src), v4(dst), l4).with_ip(|b| {
            if let Body::Ip { frag_offset8, more_frags, .. } = b {
                *frag_offset8 = offset8;
                *more_frags = more;
            }
        })
    };
    check(
        h,
        &p,
        0,
        "first fragment, tcp/443",
        &frag(NURSE, PUMP4, L4::tcp(1, 443), 0, true).bytes(),
        Reason::Allowed,
        &pin,
    );
    // Non-first fragments carry no ports: they take those of their
    // datagram's first fragment when it passed...
    check(
        h,
        &p,
        0,
        "non-first tcp fragment after its allowed first",
        &frag(NURSE, PUMP4, L4::Other { proto: 6, len: 16 }, 10, false).bytes(),
        Reason::Allowed,
        &pin,
    );
    // ...else only rules that leave the port open can pass them: the first
    // fragment missing (another sender's datagram), or denied.
    check(
        h,
        &p,
        0,
        "non-first tcp fragment without its first",
        &frag("10.30.9.9", PUMP4, L4::Other { proto: 6, len: 16 }, 10, false).bytes(),
        Reason::NotAllowed,
        &pin,
    );
    check(
        h,
        &p,
        0,
        "first fragment, tcp/80",
        &frag("10.30.9.8", PUMP4, L4::tcp(1, 80), 0, true).bytes(),
        Reason::NotAllowed,
        &pin,
    );
    check(
        h,
        &p,
        0,
        "non-first tcp fragment after its denied first",
        &frag("10.30.9.8", PUMP4, L4::Other { proto: 6, len: 16 }, 10, false).bytes(),
        Reason::NotAllowed,
        &pin,
    );
    check(
        h,
        &p,
        0,
        "non-first udp fragment to a port-less rule",
        &frag(NURSE, MON4, L4::Other { proto: 17, len: 16 }, 10, false).bytes(),
        Reason::Allowed,
        &[(MONITOR, Direction::In)],
    );
    check(
        h,
        &p,
        0,
        "tcp fragment at offset 8 (RFC 1858)",
        &frag(NURSE, PUMP4, L4::Other { proto: 6, len: 16 }, 1, false).bytes(),
        Reason::Malformed,
        &[],
    );
    check(
        h,
        &p,
        0,
        "tiny first fragment without the tcp header",
        &frag(NURSE, PUMP4, L4::Other { proto: 6, len: 8 }, 0, true).bytes(),
        Reason::Malformed,
        &[],
    );

    let nurse6 = v6("2001:db8:30::1");
    let v6frag = Frame::ip(nurse6, v6("2001:db8:120::5"), L4::Other { proto: 17, len: 16 })
        .with_ip(|b| {
            if let Body::Ip { ext, .. } = b {
                *ext = vec![Ext::Fragment { offset8: 3, more: false }]
            }
        });
    check(
        h,
        &p,
        0,
        "v6 non-first udp fragment",
        &v6frag.bytes(),
        Reason::Allowed,
        &[(MONITOR, Direction::In)],
    );

    let ihl = |n: u8| {
        Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(1, 443)).with_ip(|b| {
            if let Body::Ip { ihl, .. } = b {
                *ihl = n
            }
        })
    };
    check(h, &p, 0, "ipv4 options (ihl 8)", &ihl(8).bytes(), Reason::Allowed, &pin);
    check(h, &p, 0, "ipv4 options (ihl 15)", &ihl(15).bytes(), Reason::Allowed, &pin);
    let mut bad = ihl(5).bytes();
    bad[14] = 0x44;
    check(h, &p, 0, "ihl 4", &bad, Reason::Malformed, &[]);
    bad[14] = 0x40;
    check(h, &p, 0, "ihl 0", &bad, Reason::Malformed, &[]);
    bad[14] = 0x65;
    check(h, &p, 0, "version 6 in an ipv4 ethertype", &bad, Reason::Malformed, &[]);
    let mut long = ihl(5).bytes();
    long[14] = 0x4f; // claims 60 header bytes, total length says 40
    check(h, &p, 0, "ihl beyond total length", &long, Reason::Malformed, &[]);
    let doff = |d: u8| {
        Frame::ip(v4(NURSE), v4(PUMP4), L4::Tcp { sport: 1, dport: 443, doff: d, flags: 0x02 })
            .bytes()
    };
    check(h, &p, 0, "tcp doff 8", &doff(8), Reason::Allowed, &pin);
    let mut short = doff(5);
    short[14 + 20 + 12] = 0x40;
    check(h, &p, 0, "tcp doff 4", &short, Reason::Malformed, &[]);
    short[14 + 20 + 12] = 0xf0;
    check(h, &p, 0, "tcp doff beyond the datagram", &short, Reason::Malformed, &[]);
}

#[test]
fn every_truncation_is_malformed() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let nurse6 = v6("2001:db8:30::1");
    let frames = [
        ("v4 tcp", Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(1, 443))),
        ("v4 udp 802.1Q", Frame::ip(v4(PUMP4), v4("192.0.2.1"), L4::udp(123, 123)).vlan(110)),
        ("v4 icmp QinQ", Frame::ip(v4(PUMP4), v4(NURSE), L4::icmp(0)).qinq(7, 110)),
        (
            "v4 options",
            Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(1, 443)).with_ip(|b| {
                if let Body::Ip { ihl, .. } = b {
                    *ihl = 7
                }
            }),
        ),
        ("v6 tcp", Frame::ip(nurse6, v6(PUMP6), L4::tcp(1, 443))),
        (
            "v6 udp ext",
            Frame::ip(nurse6, v6(PUMP6), L4::udp(1, 443)).vlan(110).with_ip(|b| {
                if let Body::Ip { ext, .. } = b {
                    *ext = vec![Ext::HopByHop { len8: 1 }, Ext::Fragment { offset8: 0, more: true }]
                }
            }),
        ),
        ("v6 icmpv6", Frame::ip(nurse6, v6(PUMP6), L4::icmp(128)).qinq(7, 110)),
        (
            "arp",
            Frame::arp(
                PUMP_MAC,
                "10.110.0.7".parse().expect("ip"),
                "10.110.0.1".parse().expect("ip"),
            )
            .vlan(110),
        ),
    ];
    for (name, f) in frames {
        let whole = f.bytes();
        // BPF_PROG_TEST_RUN refuses frames under 14 bytes; so do NICs.
        for len in 14..whole.len() {
            check(
                &mut h,
                &p,
                0,
                &format!("{name} cut to {len} of {}", whole.len()),
                &whole[..len],
                Reason::Malformed,
                &[],
            );
        }
    }
}

#[test]
fn spoofing_and_unknown_hosts() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    let pout = [(PUMP, Direction::Out)];
    let lib = "10.20.5.10";
    let spoofed = Frame::ip(v4(PUMP4), v4(lib), L4::tcp(1, 443))
        .vlan(110)
        .from_mac([0x02, 0xbb, 0, 0, 0, 1])
        .bytes();
    check(h, &p, 0, "pump address from another MAC", &spoofed, Reason::SpoofedMac, &pout);
    let unbound = Frame::ip(v4(MON4), v4(NURSE), L4::tcp(1, 8000))
        .vlan(120)
        .from_mac([0x02, 0xbb, 0, 0, 0, 1])
        .bytes();
    check(
        h,
        &p,
        0,
        "monitor has no MAC binding",
        &unbound,
        Reason::Allowed,
        &[(MONITOR, Direction::Out)],
    );
    let stranger = Frame::ip(v4("10.110.0.99"), v4(lib), L4::tcp(1, 443)).vlan(110).bytes();
    check(h, &p, 0, "unknown host in the pump VLAN", &stranger, Reason::UnknownDevice, &[]);
    let foreign = Frame::ip(v4("192.0.2.50"), v4(lib), L4::tcp(1, 443)).vlan(110).bytes();
    check(h, &p, 0, "foreign address on the pump VLAN", &foreign, Reason::UnknownDevice, &[]);
    let to_stranger = Frame::ip(v4(NURSE), v4("10.110.0.99"), L4::tcp(1, 443)).bytes();
    check(
        h,
        &p,
        0,
        "to an unknown host in the pump VLAN",
        &to_stranger,
        Reason::UnknownDevice,
        &[],
    );
    let stranger_to_pump =
        Frame::ip(v4("10.110.0.99"), v4(PUMP4), L4::tcp(1, 443)).vlan(110).bytes();
    check(
        h,
        &p,
        0,
        "unknown host to a pump",
        &stranger_to_pump,
        Reason::UnknownDevice,
        &[(PUMP, Direction::In)],
    );
    let unmatched = Frame::ip(v4(NURSE), v4("192.0.2.1"), L4::tcp(1, 443)).vlan(30).bytes();
    check(h, &p, 0, "nurse VLAN to the internet", &unmatched, Reason::Unmatched, &[]);
    check(
        h,
        &p,
        0,
        "LLDP on the pump VLAN",
        &Frame::ether(0x88cc, 40).vlan(110).bytes(),
        Reason::NotAllowed,
        &[],
    );
    check(
        h,
        &p,
        0,
        "LLDP on the uplink",
        &Frame::ether(0x88cc, 40).bytes(),
        Reason::Unmatched,
        &[],
    );
}

#[test]
fn infrastructure_follows_settings() {
    let on = hospital();
    let off = resolve(&vlanguard_tests::policies::HOSPITAL.replace("= true\n", "= false\n"));
    assert!(!off.allow_arp && !off.allow_ndp && !off.allow_dhcp);
    let Some(mut h) = setup(&on, 0) else { return };
    let h = &mut h;
    let pout = [(PUMP, Direction::Out)];
    let gw: std::net::Ipv4Addr = "10.110.0.1".parse().expect("ip");
    let pump: std::net::Ipv4Addr = PUMP4.parse().expect("ip");
    let arp = Frame::arp(PUMP_MAC, pump, gw).vlan(110).bytes();
    let mut arp_spoof = Frame::arp([0x02, 0xbb, 0, 0, 0, 1], pump, gw).vlan(110);
    arp_spoof.src_mac = PUMP_MAC;
    let arp_spoof = arp_spoof.bytes();
    let arp_stranger = Frame::arp([0x02, 0xbb, 0, 0, 0, 1], "10.110.0.99".parse().expect("ip"), gw)
        .vlan(110)
        .bytes();
    let ns = Frame::ip(v6("fe80::7"), v6("ff02::1:ff00:1"), L4::icmp(135))
        .vlan(110)
        .from_mac(PUMP_MAC)
        .bytes();
    let dhcp = Frame::ip(v4("0.0.0.0"), v4("255.255.255.255"), L4::udp(68, 67))
        .vlan(110)
        .from_mac(PUMP_MAC)
        .bytes();

    check(h, &on, 0, "ARP from the pump", &arp, Reason::Infra, &pout);
    check(h, &on, 0, "ARP claiming the pump's address", &arp_spoof, Reason::SpoofedMac, &pout);
    check(h, &on, 0, "ARP from an unknown host", &arp_stranger, Reason::Infra, &[]);
    check(h, &on, 0, "neighbour solicitation", &ns, Reason::Infra, &[]);
    check(h, &on, 0, "DHCP discover", &dhcp, Reason::Infra, &[]);

    h.apply(&off, 0);
    check(h, &off, 0, "ARP, ARP off", &arp, Reason::NotAllowed, &pout);
    check(h, &off, 0, "neighbour solicitation, NDP off", &ns, Reason::UnknownDevice, &[]);
    check(h, &off, 0, "DHCP discover, DHCP off", &dhcp, Reason::UnknownDevice, &[]);
}

#[test]
fn policy_swap_takes_effect_and_leaves_one_generation() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let f = Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(40000, 443)).bytes();
    check(&mut h, &p, 0, "before", &f, Reason::Allowed, &[(PUMP, Direction::In)]);
    let occupied = h.filter.occupancy();
    let g0 = h.filter.active_generation().expect("generation");

    let tighter =
        resolve(&vlanguard_tests::policies::HOSPITAL.replace("port = 443 }", "port = 8443 }"));
    h.apply(&tighter, 0);
    assert_ne!(h.filter.active_generation().expect("generation"), g0, "apply flips the generation");
    check(&mut h, &tighter, 0, "after", &f, Reason::NotAllowed, &[(PUMP, Direction::In)]);
    h.apply(&p, 0);
    check(&mut h, &p, 0, "back", &f, Reason::Allowed, &[(PUMP, Direction::In)]);
    assert_eq!(h.filter.occupancy(), occupied, "the old generation is removed after a swap");
}

#[test]
fn devices_keep_their_counters_when_others_come_and_go() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let to_monitor = Frame::ip(v4(NURSE), v4(MON4), L4::tcp(40000, 9)).bytes();
    check(&mut h, &p, 0, "before", &to_monitor, Reason::NotAllowed, &[(MONITOR, Direction::In)]);
    let to_pump = Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(40000, 443)).bytes();
    check(&mut h, &p, 0, "pump before", &to_pump, Reason::Allowed, &[(PUMP, Direction::In)]);
    let monitor_slot = h.filter.device_slot("monitor-1").expect("slot");
    let pump_slot = h.filter.device_slot("pump-1").expect("slot");
    let count = |h: &Harness, slot: u32| -> u64 {
        h.filter
            .device_stats()
            .expect("stats")
            .iter()
            .filter(|(k, _)| k.slot == slot)
            .map(|(_, c)| c.packets)
            .sum()
    };
    assert_eq!(count(&h, monitor_slot), 1);

    // Remove the pump (listed first): the monitor keeps its slot and
    // counters, the pump's counters go.
    let text = vlanguard_tests::policies::HOSPITAL;
    let start = text.find("[[device]]\nname = \"pump-1\"").expect("pump table");
    let end = text[start + 1..].find("[[device]]").expect("next device") + start + 1;
    let without_pump = format!("{}{}", &text[..start], &text[end..]);
    let q = resolve(&without_pump);
    h.apply(&q, 0);
    assert_eq!(h.filter.device_slot("monitor-1"), Some(monitor_slot));
    assert_eq!(h.filter.device_slot("pump-1"), None);
    assert_eq!(count(&h, monitor_slot), 1, "the monitor's counters stay its own");
    assert_eq!(count(&h, pump_slot), 0, "a removed device's counters go with it");

    // A new device reuses the free slot, starting from zero.
    let with_new = format!(
        "{without_pump}\n[[device]]\nname = \"pump-2\"\nvlan = 110\nip = [\"10.110.0.8\"]\nallow_in = [ {{ from = \"any\", proto = \"udp\" }} ]\n"
    );
    let r = resolve(&with_new);
    h.apply(&r, 0);
    assert_eq!(h.filter.device_slot("pump-2"), Some(pump_slot));
    assert_eq!(count(&h, pump_slot), 0);
    let to_new = Frame::ip(v4(NURSE), v4("10.110.0.8"), L4::udp(1, 2)).bytes();
    check(&mut h, &r, 0, "new device", &to_new, Reason::Allowed, &[(pump_slot, Direction::In)]);
    assert_eq!(count(&h, monitor_slot), 1);
}

/// Monitor mode: per device and for the whole policy, denied frames pass
/// as would-drops (counted, reported); devices in enforce mode still drop.
#[test]
fn monitor_mode_passes_and_counts_would_drops() {
    let text = hospital_with_pump("mode = \"monitor\"");
    let p = resolve(&text);
    assert!(p.devices[PUMP as usize].monitor && !p.devices[MONITOR as usize].monitor);
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    use Direction::{In, Out};
    let nurse_to = |dst, port| Frame::ip(v4(NURSE), v4(dst), L4::udp(41000, port)).bytes();
    let (would, drop) = (Verdict::WouldDrop, Verdict::Drop);
    let nr = Reason::NotAllowed;
    check_verdict(h, &p, 0, "pump in monitor", &nurse_to(PUMP4, 9), nr, would, &[(PUMP, In)]);
    let tcp_to_monitor = Frame::ip(v4(NURSE), v4(MON4), L4::tcp(41000, 9999)).bytes();
    check_verdict(h, &p, 0, "monitor-1 enforces", &tcp_to_monitor, nr, drop, &[(MONITOR, In)]);
    let allowed = nurse_to(MON4, 5000);
    check(h, &p, 0, "allowed stays allowed", &allowed, Reason::Allowed, &[(MONITOR, In)]);
    // Pump (monitor) to monitor-1 (enforce): the enforcing side decides.
    let d2d = Frame::ip(v4(PUMP4), v4(MON4), L4::udp(40000, 6000)).vlan(110).from_mac(PUMP_MAC);
    check_verdict(
        h,
        &p,
        0,
        "to an enforcing device",
        &d2d.bytes(),
        nr,
        drop,
        &[(PUMP, Out), (MONITOR, In)],
    );
    // A spoofed frame from the monitored pump is reported, not dropped.
    let spoof = Frame::ip(v4(PUMP4), v4(NURSE), L4::udp(40000, 53)).vlan(110);
    check_verdict(
        h,
        &p,
        0,
        "spoofed, monitored",
        &spoof.bytes(),
        Reason::SpoofedMac,
        would,
        &[(PUMP, Out)],
    );
    // Frames with no device: the policy's mode.
    let rogue = Frame::ip(v4("10.110.0.99"), v4(NURSE), L4::udp(1, 2)).vlan(110).bytes();
    check(h, &p, 0, "unknown host, policy enforces", &rogue, Reason::UnknownDevice, &[]);
    let mut all = resolve(&text.replacen("[settings]\n", "[settings]\nmode = \"monitor\"\n", 1));
    all.devices[MONITOR as usize].monitor = false;
    h.apply(&all, 0);
    check_verdict(
        h,
        &all,
        0,
        "unknown host, policy monitors",
        &rogue,
        Reason::UnknownDevice,
        would,
        &[],
    );
    let mut bad = rogue.clone();
    bad.truncate(20);
    check_verdict(h, &all, 0, "malformed, policy monitors", &bad, Reason::Malformed, would, &[]);
}

/// Runs `frames` within one second of the program's clock (retrying when a
/// run straddles a second) and returns how many of them each reason got.
fn within_one_second(h: &mut Harness, frames: &[Vec<u8>]) -> BTreeMap<Reason, usize> {
    for _ in 0..5 {
        // Start early in a second so the run fits in it.
        let before = monotonic_second();
        while monotonic_second() == before {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let start = monotonic_second();
        let mut got = BTreeMap::new();
        for f in frames {
            *got.entry(h.run(f).reason().expect("a reason")).or_insert(0) += 1;
        }
        if monotonic_second() == start {
            return got;
        }
    }
    panic!("could not fit the run in one second");
}

/// Rate limits towards a device, per second, in the kernel: frames over
/// the limit are dropped as `rate-limited`, SYNs over the connection limit
/// too, and neither opens a flow.
#[test]
fn rate_limits_cut_at_the_configured_rate() {
    let text =
        hospital_with_pump("rate_limit = { packets_per_second = 25, new_tcp_per_second = 5 }");
    let p = resolve(&text);
    let Some(mut h) = setup(&p, 0) else { return };
    // ACKs to the pump's HTTPS: allowed by the rules, no flows.
    let acks: Vec<Vec<u8>> = (0..100)
        .map(|i| Frame::ip(v4(NURSE), v4(PUMP4), L4::tcp(20000 + i, 443)).bytes())
        .collect();
    let got = within_one_second(&mut h, &acks);
    assert_eq!(got.get(&Reason::Allowed), Some(&25), "{got:?}");
    assert_eq!(got.get(&Reason::RateLimited), Some(&75), "{got:?}");

    // New connections: 5 per second, in the next second.
    let syns: Vec<Vec<u8>> =
        (0..20).map(|i| Frame::ip(v4(NURSE), v4(PUMP4), L4::syn(30000 + i, 443)).bytes()).collect();
    let got = within_one_second(&mut h, &syns);
    assert_eq!(got.get(&Reason::Allowed), Some(&5), "{got:?}");
    assert_eq!(got.get(&Reason::RateLimited), Some(&15), "{got:?}");
    // A dropped SYN opened no flow: the pump's answer to it is not a reply.
    let answer =
        Frame::ip(v4(PUMP4), v4(NURSE), L4::Tcp { sport: 443, dport: 30019, doff: 5, flags: 0x12 })
            .vlan(110)
            .from_mac(PUMP_MAC)
            .bytes();
    assert_ne!(h.run(&answer).reason(), Some(Reason::Established));
    // The other device has no limit.
    let to_monitor: Vec<Vec<u8>> = (0..100)
        .map(|i| Frame::ip(v4(NURSE), v4(MON4), L4::udp(20000 + i, 5000)).bytes())
        .collect();
    let got = within_one_second(&mut h, &to_monitor);
    assert_eq!(got.get(&Reason::Allowed), Some(&100), "{got:?}");
}

/// With RSS a reply, or a later fragment, is often received on another
/// CPU than the packet before it: the flow table and the fragments' map
/// are shared by all CPUs. BPF_PROG_TEST_RUN runs the program on the
/// calling thread's CPU, so each frame is sent from a thread pinned to the
/// CPU it should be decided on.
#[test]
fn flows_and_fragments_carry_across_cpus() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let h = &mut h;
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert!(cpus >= 2, "this test needs two CPUs; the machine has {cpus}");
    let on_cpu = |cpu: usize| {
        vlanguard_tests::pin_to_cpu(0, cpu).expect("pin to CPU");
        // SAFETY: sched_getcpu has no preconditions.
        assert_eq!(unsafe { libc::sched_getcpu() }, cpu as i32, "running on CPU {cpu}");
    };
    use Direction::{In, Out};
    let server = "10.20.5.10";
    let out = |l4| Frame::ip(v4(PUMP4), v4(server), l4).vlan(110).from_mac(PUMP_MAC).bytes();
    let back = |l4| Frame::ip(v4(server), v4(PUMP4), l4).bytes();
    let tcp = |sport, dport, flags| L4::Tcp { sport, dport, doff: 5, flags };

    on_cpu(0);
    check(h, &p, 0, "syn on CPU 0", &out(L4::syn(40100, 443)), Reason::Allowed, &[(PUMP, Out)]);
    on_cpu(1);
    let syn_ack = back(tcp(443, 40100, 0x12));
    check(h, &p, 0, "syn-ack on CPU 1", &syn_ack, Reason::Established, &[(PUMP, In)]);

    let frag = |offset8: u16, more: bool, l4| {
        Frame::ip(v4(NURSE), v4(PUMP4), l4)
            .with_ip(|b| {
                if let Body::Ip { frag_offset8, more_frags, .. } = b {
                    *frag_offset8 = offset8;
                    *more_frags = more;
                }
            })
            .bytes()
    };
    let pin = [(PUMP, In)];
    on_cpu(0);
    check(
        h,
        &p,
        0,
        "first fragment on CPU 0",
        &frag(0, true, L4::tcp(2, 443)),
        Reason::Allowed,
        &pin,
    );
    on_cpu(1);
    let later = frag(20, false, L4::Other { proto: 6, len: 16 });
    check(h, &p, 0, "later fragment on CPU 1", &later, Reason::Allowed, &pin);
}

/// A bucket of the flow cache holds FLOW_WAYS flows; a new flow that finds
/// its bucket full takes the entry of the flow closest to expiring (here
/// the oldest: all are UDP flows with one timeout), counted as evicted, and
/// the other flows stay. Flows aimed at one bucket with the filter's own
/// seed.
#[test]
fn a_full_flow_bucket_gives_way_to_the_flow_closest_to_expiry() {
    let p = hospital();
    let Some(mut h) = setup(&p, 0) else { return };
    let seed = h.filter.flow_seed().expect("seed");
    assert_ne!(seed, 0, "the loader seeds the flow hash");
    let pump = Addr(filter_user::addr::key(v4(PUMP4)));
    let bucket_of = |server: &str, sport: u16| {
        let mut key = FlowKey::default();
        key.set(&pump, sport, &Addr(filter_user::addr::key(v4(server))), 123, 17);
        flow_bucket(flow_hash(&key, seed))
    };
    // NTP queries (allowed to any address) from 250 x 1,000 (server,
    // source port) pairs: about 7.6 per bucket, so many buckets get 9.
    let mut buckets: std::collections::HashMap<u32, Vec<(String, u16)>> = Default::default();
    for host in 1..=250 {
        let server = format!("10.20.6.{host}");
        for sport in 40_000..41_000 {
            buckets.entry(bucket_of(&server, sport)).or_default().push((server.clone(), sport));
        }
    }
    let flows = buckets
        .into_values()
        .find(|f| f.len() > FLOW_WAYS as usize)
        .expect("a bucket with more flows than ways");
    let flows = &flows[..=FLOW_WAYS as usize];
    let query = |(server, sport): &(String, u16)| {
        Frame::ip(v4(PUMP4), v4(server), L4::udp(*sport, 123)).vlan(110).from_mac(PUMP_MAC).bytes()
    };
    let answer = |(server, sport): &(String, u16)| {
        Frame::ip(v4(server), v4(PUMP4), L4::udp(123, *sport)).bytes()
    };

    let before = h.filter.flow_stats().expect("flow stats");
    for (i, flow) in flows.iter().enumerate() {
        assert_eq!(h.run(&query(flow)).reason(), Some(Reason::Allowed), "query {i}");
        // The coarse clock ticks every few ms: give each flow its own expiry.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let after = h.filter.flow_stats().expect("flow stats");
    assert_eq!(after.created - before.created, FLOW_WAYS as u64 + 1);
    assert_eq!(after.evicted - before.evicted, 1, "{after:?}");
    assert_eq!(after.live - before.live, FLOW_WAYS as u64);
    assert_eq!(h.run(&answer(&flows[0])).reason(), Some(Reason::NotAllowed), "the evicted flow");
    for (i, flow) in flows.iter().enumerate().skip(1) {
        assert_eq!(h.run(&answer(flow)).reason(), Some(Reason::Established), "answer {i}");
    }
}

/// The per-device counters hold as many devices as the filter was loaded
/// for (`--device-capacity`): a policy with more new devices than free
/// slots is refused before anything changes, the policy in force stays, and
/// removed devices give their slots back only after their change.
#[test]
fn devices_beyond_the_counter_capacity_are_refused_and_change_nothing() {
    if !privileged() {
        return;
    }
    let mut filter = filter_user::Filter::load_with_capacity(filter_user::PROGRAM_OBJECT, 4)
        .expect("load with counters for 4 devices");
    assert_eq!(filter.device_capacity(), 4);
    let five = vlanguard_tests::scale::policy(5);
    let err = filter.apply(&filter_user::compile(&five), &[]).expect_err("5 devices in 4 slots");
    assert!(err.to_string().contains("5 new device(s), 4 free counter slot(s)"), "{err}");
    assert_eq!(filter.revision().expect("revision"), 0, "nothing applied");
    assert!(filter.device_slot("pump-0").is_none(), "no slot handed out");

    let mut four = five.clone();
    four.devices.truncate(4);
    filter.apply(&filter_user::compile(&four), &[]).expect("4 devices fit");
    // Replacing pump-0 by pump-4 at once needs a fifth slot during the
    // change; in two steps it fits.
    let mut swapped = five.clone();
    swapped.devices.remove(0);
    let err = filter.apply(&filter_user::compile(&swapped), &[]).expect_err("a fifth slot");
    assert!(err.to_string().contains("1 new device(s), 0 free counter slot(s)"), "{err}");
    assert!(filter.device_slot("pump-0").is_some(), "the policy in force stays");
    let mut three = swapped.clone();
    three.devices.truncate(3);
    filter.apply(&filter_user::compile(&three), &[]).expect("remove pump-0");
    filter.apply(&filter_user::compile(&swapped), &[]).expect("then add pump-4");
    assert!(filter.device_slot("pump-4").is_some());
}

/// The readers of the per-device lines (`device_stats`, `rule_hits`) read
/// them in batches (4,096 slots on two CPUs): a device in the second batch
/// is counted like one in the first, and only devices that saw frames show.
#[test]
fn counters_of_devices_past_the_first_read_batch_are_read() {
    use aya::programs::TestRun as _;
    use filter_common::RuleHitKey;
    if !privileged() {
        return;
    }
    let mut filter = filter_user::Filter::load_with_capacity(filter_user::PROGRAM_OBJECT, 8192)
        .expect("load with counters for 8,192 devices");
    let policy = vlanguard_tests::scale::policy(5000);
    filter.apply(&filter_user::compile(&policy), &[]).expect("apply 5,000 devices");
    let sent = [0usize, 4095, 4096, 4999];
    let mut slots = Vec::new();
    for i in sent {
        let frame =
            Frame::ip(v4("10.30.1.1"), vlanguard_tests::scale::device_ip(i), L4::tcp(40000, 443))
                .padded();
        let out = filter
            .program()
            .test_run(aya::TestRunOptions { data_in: Some(&frame), ..Default::default() })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(out.return_value, XDP_PASS, "device {i}: allowed HTTPS from a nurse");
        slots.push(filter.device_slot(&format!("pump-{i}")).expect("slot"));
    }
    assert!(slots.iter().any(|s| *s >= 4096), "a slot in the second batch: {slots:?}");

    let stats = filter.device_stats().expect("device stats");
    let moved: BTreeMap<u32, u64> = stats.iter().map(|(k, c)| (k.slot, c.packets)).collect();
    let expected: BTreeMap<u32, u64> = slots.iter().map(|s| (*s, 1)).collect();
    assert_eq!(moved, expected, "one frame each, on the devices that saw one");
    for k in stats.keys() {
        assert_eq!((k.direction, k.verdict), (Direction::In, Verdict::Pass));
    }
    let hits = filter.rule_hits().expect("rule hits");
    let expected: BTreeMap<RuleHitKey, u64> = slots
        .iter()
        .map(|&slot| (RuleHitKey { slot, direction: Direction::In as u8, rule: 0, _pad: 0 }, 1))
        .collect();
    assert_eq!(hits, expected, "the first inbound rule of each, once");
}
