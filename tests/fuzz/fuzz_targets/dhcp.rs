//! DHCP client messages as they come off the wire (the program copies
//! them unchanged). Invariants: no panic; what is accepted has no control
//! characters in its names and only an https MUD URL.
#![no_main]

use filter_policy::identity::dhcp::{self, DhcpClient};
use libfuzzer_sys::fuzz_target;

fn check(c: &DhcpClient) {
    for text in [&c.hostname, &c.vendor_class, &c.mud_url].into_iter().flatten() {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    if let Some(url) = &c.mud_url {
        assert!(url.starts_with("https://"), "{url}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = dhcp::parse_v4(data) {
        check(&c);
    }
    if let Ok(c) = dhcp::parse_v6(data) {
        check(&c);
    }
});
