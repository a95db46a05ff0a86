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
