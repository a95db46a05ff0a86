//! Differential test: for random policies and random (also malformed)
//! frames, the kernel program's verdict, reason and counters equal the
//! reference evaluator's. Seeded: the seed is printed on failure and
//! `VLANGUARD_SEED` replays it; `VLANGUARD_CASES` sets the number of cases.

use filter_common::Direction;
use rand::{SeedableRng as _, rngs::StdRng};
use vlanguard_tests::{
    harness::{Harness, XDP_DROP, XDP_PASS},
    privileged, random,
};

const DEFAULT_CASES: usize = 12_000;
const FRAMES_PER_POLICY: usize = 120;

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
fn kernel_agrees_with_reference_evaluator() {
    if !privileged() {
        return;
    }
    let seed = env_number("VLANGUARD_SEED").unwrap_or_else(rand::random);
    let cases = env_number("VLANGUARD_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    eprintln!("differential: seed {seed} (replay with VLANGUARD_SEED={seed}), {cases} cases");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = Harness::new();

    let mut done = 0;
    let mut by_reason = std::collections::BTreeMap::new();
    while done < cases {
        let (policy, iface_vlan) = random::policy(&mut rng);
        h.apply(&policy, iface_vlan);
        for _ in 0..FRAMES_PER_POLICY.min(cases - done) {
            let frame = random::frame(&mut rng, &policy);
            let expected = filter_user::reference::evaluate(&policy, &frame, iface_vlan);
            let got = h.run(&frame);
            let context = || {
                format!(
                    "seed {seed} (VLANGUARD_SEED={seed}), case {done}\nframe ({} bytes) {:02x?}\n\
                     iface_vlan {iface_vlan}\npolicy {policy:#?}\nexpected {expected:?}\ngot {got:?}",
                    frame.len(),
                    &frame[..frame.len().min(256)],
                )
            };
            let verdict = expected.reason.verdict();
            let action = if verdict == filter_common::Verdict::Pass { XDP_PASS } else { XDP_DROP };
            assert_eq!(got.action, action, "action differs\n{}", context());
            assert_eq!(got.reason(), Some(expected.reason), "reason differs\n{}", context());
            let len = frame.len() as u64;
            let mut devices = std::collections::BTreeMap::new();
            if let Some(s) = expected.src_device {
                devices.insert((s as u32, Direction::Out, verdict, expected.reason), (1, len));
            }
            if let Some(d) = expected.dst_device {
                *devices.entry((d as u32, Direction::In, verdict, expected.reason)).or_insert((0, 0)) = (1, len);
            }
            assert_eq!(got.devices, devices, "device counters differ\n{}", context());
            *by_reason.entry(expected.reason).or_insert(0usize) += 1;
            done += 1;
        }
    }
    eprintln!("differential: {done} cases agree; by reason: {by_reason:?}");
    // A generator that stopped producing some outcome would make this test
    // weaker without failing it.
    for reason in filter_common::Reason::ALL {
        if cases >= DEFAULT_CASES {
            assert!(by_reason.get(&reason).copied().unwrap_or(0) > 0, "no case produced {reason:?}; seed {seed}");
        }
    }
}
