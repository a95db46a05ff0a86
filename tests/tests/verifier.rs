//! Both builds of the program pass this kernel's verifier: the release build
//! embedded in `vlanguard`, and the debug build (debug assertions and
//! overflow checks on) that `cargo xtask test` makes and names in
//! `VLANGUARD_DEBUG_OBJECT`. The debug build also runs the differential
//! check, so it decides like the release build.

use filter_user::{Filter, PROGRAM_OBJECT};
use vlanguard_tests::{differential, harness::Harness, privileged};

/// Instructions the verifier processed for the XDP program and for its TC
/// variant (for ports whose NIC takes VLAN tags, `offload`).
fn verified_instructions(object: &[u8]) -> (u32, u32) {
    let mut filter = Filter::load(object).expect("the verifier accepts the program");
    let count = |info: aya::programs::ProgramInfo| {
        info.verified_instruction_count().expect("kernel reports the verified instruction count")
    };
    let xdp = count(filter.program().info().expect("program info"));
    let tc = filter.tc_program().expect("the verifier accepts the TC variant");
    (xdp, count(tc.info().expect("program info")))
}

#[test]
fn release_build_passes_the_verifier() {
    if !privileged() {
        return;
    }
    let (n, tc) = verified_instructions(PROGRAM_OBJECT);
    eprintln!("release build: {n} instructions verified (TC variant: {tc})");
    assert!(n > 100 && tc > 100, "suspiciously small program: {n} / {tc} instructions");
}

#[test]
fn debug_build_passes_the_verifier_and_agrees() {
    if !privileged() {
        return;
    }
    let Some(path) = std::env::var_os("VLANGUARD_DEBUG_OBJECT") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "VLANGUARD_DEBUG_OBJECT is unset: run the tests through `cargo xtask test`"
        );
        eprintln!("skipped: VLANGUARD_DEBUG_OBJECT is unset (cargo xtask test sets it)");
        return;
    };
    let object = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (n, tc) = verified_instructions(&object);
    eprintln!("debug build: {n} instructions verified (TC variant: {tc})");
    let seed = differential::seed();
    eprintln!("debug build differential: seed {seed}");
    differential::run(&mut Harness::with_object(&object), seed, 2_000);
}
