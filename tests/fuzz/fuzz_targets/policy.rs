//! The policy file: parse → validate → resolve → compile. Invariants: no
//! panic; a policy that resolves compiles, and compiling it again gives the
//! same result (the loader's diff and the upgrade path rely on that).
#![no_main]

use filter_policy::{Policy, compile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = Policy::from_toml(text) else { return };
    // No DNS: names the rules use stay unresolved, which `resolve` refuses.
    let Ok(resolved) = policy.resolve() else { return };
    let first = compile(&resolved);
    assert_eq!(first, compile(&resolved), "compile is deterministic");
    assert_eq!(first.devices.len(), resolved.devices.len());
});
