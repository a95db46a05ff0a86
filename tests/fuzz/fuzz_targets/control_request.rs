//! The control socket's request line as the daemon decodes it
//! (`serde_json::from_str::<Request>`, daemon/server.rs). Invariants: no
//! panic; a request that decodes encodes (as the CLI sends it), and that
//! encoding decodes to the same request (encoded alike again).
#![no_main]

use filter_user::control::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon refuses a line that is not UTF-8 before decoding it.
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(request) = serde_json::from_str::<Request>(line) else { return };
    let _ = request.changes();
    let sent = serde_json::to_string(&request).expect("a decoded request encodes");
    let again: Request = serde_json::from_str(&sent)
        .unwrap_or_else(|e| panic!("{sent} (from {line:?}) does not decode: {e}"));
    let resent = serde_json::to_string(&again).expect("encodes");
    assert_eq!(sent, resent, "decoding {sent} gives another request (from {line:?})");
    assert_eq!(request.changes(), again.changes());
});
