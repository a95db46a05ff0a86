//! The program's identity reports (header + DHCP payload), as the daemon
//! reads them from the ring buffer. Invariant: no panic.
#![no_main]

use filter_policy::identity::report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = report::decode(data);
});
