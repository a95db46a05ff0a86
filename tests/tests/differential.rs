//! Differential test: for random policies and random (also malformed)
//! frames, the kernel program's verdict, reason and counters equal the
//! reference evaluator's. Seeded: the seed is printed (and in every failure
//! message); `VLANGUARD_SEED` replays it, `VLANGUARD_CASES` sets the count.

use filter_common::Reason;
use vlanguard_tests::{differential, harness::Harness, privileged};

const DEFAULT_CASES: usize = 12_000;

#[test]
fn kernel_agrees_with_reference_evaluator() {
    if !privileged() {
        return;
    }
    let seed = differential::seed();
    let cases = differential::env_number("VLANGUARD_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    eprintln!("differential: seed {seed} (replay with VLANGUARD_SEED={seed}), {cases} cases");
    let by_reason = differential::run(&mut Harness::new(), seed, cases);
    eprintln!("differential: {cases} cases agree; by reason: {by_reason:?}");
    // A generator that stopped producing some outcome would weaken this
    // test without failing it.
    if cases >= DEFAULT_CASES {
        // Rate limits depend on the clock, which the reference has not:
        // `datapath.rs` tests them.
        for reason in Reason::ALL.into_iter().filter(|r| *r != Reason::RateLimited) {
            assert!(
                by_reason.get(&reason).copied().unwrap_or(0) > 50,
                "only {by_reason:?}; seed {seed}"
            );
        }
    }
}

/// The TC variant (`vlanguard_tc`, for ports whose NIC takes VLAN tags out
/// of frames) is the same decision code behind another entry point: it
/// agrees with the reference on the same random cases (frames shorter than
/// an Ethernet header left out: they never reach TC). Tags beside the frame
/// are tested in the lab (`offload.rs`): a test run cannot set them.
#[test]
fn tc_variant_agrees_with_reference_evaluator() {
    if !privileged() {
        return;
    }
    let seed = differential::seed();
    let cases =
        differential::env_number("VLANGUARD_CASES").map_or(DEFAULT_CASES / 3, |n| n as usize);
    eprintln!("differential (TC): seed {seed} (replay with VLANGUARD_SEED={seed}), {cases} cases");
    let by_reason = differential::run(&mut Harness::tc(), seed, cases);
    eprintln!("differential (TC): {cases} cases agree; by reason: {by_reason:?}");
    assert!(by_reason.len() >= 8, "only {by_reason:?}; seed {seed}");
}
