//! Drop-event records from the ring buffer, of this layout and the
//! earlier one. Invariant: no panic, whatever the bytes.
#![no_main]

use std::time::SystemTime;

use filter_policy::events;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ =
        events::decode(data, SystemTime::UNIX_EPOCH, |s| Some(s.to_string()), |i| i.to_string());
});
