//! Datagrams larger than the links' MTU, fragmented by the sender's
//! kernel, through the real daemon in the namespace lab: to a port the
//! policy allows they arrive whole (the later fragments, which carry no
//! ports, are decided with the first fragment's), to another port nothing
//! arrives. IPv4 and IPv6 (whose fragments carry an extension header).

use vlanguard_tests::{
    lab::{Lab, PUMP, PUMP6},
    privileged,
};

#[test]
fn large_datagrams_arrive_whole_to_allowed_ports_only() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_daemon();
    // nurse -> pump: udp 5000-5100 allowed, 6000 not (the lab's policy).
    for (pump, family) in [(PUMP, "IPv4"), (PUMP6, "IPv6")] {
        let allowed = lab.udp_datagrams("nurse", "pump", pump, 5005, 3000, 5);
        assert_eq!(allowed, vec![3000; 5], "{family}: 3,000-byte datagrams to udp/5005");
        let denied = lab.udp_datagrams("nurse", "pump", pump, 6000, 3000, 3);
        assert!(denied.is_empty(), "{family}: udp/6000 is not allowed: {denied:?}");
    }
}

/// Jumbo frames (MTU 9000 on every link): the XDP program takes multi-
/// buffer frames (it would not even attach to a veth this large without),
/// decides them from the headers in the first buffer and counts their
/// whole length. An 8,000-byte datagram in one frame to an allowed port
/// arrives, to another port it does not.
#[test]
fn jumbo_frames_are_decided_whole() {
    if !privileged() {
        return;
    }
    let mut lab = Lab::new();
    lab.mtu(9000);
    lab.start_daemon();
    let before = lab.scrape();
    for (pump, family) in [(PUMP, "IPv4"), (PUMP6, "IPv6")] {
        let allowed = lab.udp_datagrams("nurse", "pump", pump, 5005, 8000, 5);
        assert_eq!(allowed, vec![8000; 5], "{family}: 8,000-byte datagrams to udp/5005");
        let denied = lab.udp_datagrams("nurse", "pump", pump, 6000, 8000, 3);
        assert!(denied.is_empty(), "{family}: udp/6000 is not allowed: {denied:?}");
    }
    // Not fragmented: each went as one frame, counted at its whole length
    // (8,052 bytes with headers, v4), passed or dropped.
    let after = lab.scrape();
    let bytes = |text: &str, verdict: &str| {
        let labels = ["device=\"pump\"", "direction=\"in\"", verdict];
        vlanguard_tests::sample(text, "vlanguard_device_bytes_total", &labels)
    };
    let passed = bytes(&after, "verdict=\"pass\"") - bytes(&before, "verdict=\"pass\"");
    let dropped = bytes(&after, "verdict=\"drop\"") - bytes(&before, "verdict=\"drop\"");
    assert!(passed >= 10.0 * 8000.0, "passed {passed} bytes\n{after}");
    assert!(dropped >= 6.0 * 8000.0, "dropped {dropped} bytes\n{after}");
}
