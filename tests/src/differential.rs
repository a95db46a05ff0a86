//! The differential check: random policies and frames, kernel against the
//! reference evaluator. Used on the release build (many cases) and on the
//! debug build of the program.

use std::collections::BTreeMap;

use filter_common::{Direction, Reason};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::IndexedRandom as _};

use crate::{
    harness::{Harness, Outcome, XDP_DROP, XDP_PASS},
    random,
};

const FRAMES_PER_POLICY: usize = 120;

/// Runs `cases` (policy, frame) cases from `seed`; panics with the seed and
/// the case on the first disagreement. Returns the count per reason.
pub fn run(h: &mut Harness, seed: u64, cases: usize) -> BTreeMap<Reason, usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = 0;
    let mut by_reason = BTreeMap::new();
    // The flow table (`h.flows` for the reference) lives across policies,
    // in the kernel as here: flows of an earlier policy are checked against
    // the new one.
    // Tuples of frames that passed: some frames answer one of them.
    let mut passed: Vec<random::Tuple> = Vec::new();
    // Datagrams whose first fragment was sent (or not yet): later
    // fragments follow them, in order, out of order, or without a first.
    let mut datagrams: Vec<random::Tuple> = Vec::new();
    // Datagrams a later fragment was sent for before any first fragment.
    let mut early: Vec<random::Tuple> = Vec::new();
    while done < cases {
        let (policy, iface_vlan) = random::policy(&mut rng);
        h.apply(&policy, iface_vlan);
        // Mostly answer this policy's frames; some answers to the previous
        // one's check flows carried across a policy change.
        if rng.random_bool(0.7) {
            passed.clear();
        }
        let (blocks, quarantined) = random::actions(&mut rng, &policy);
        h.set_actions(&blocks, &quarantined);
        for _ in 0..FRAMES_PER_POLICY.min(cases - done) {
            let answer = match passed.choose(&mut rng) {
                Some(t) if rng.random_bool(0.5) => Some(random::reply(&mut rng, t)),
                _ => None,
            };
            let (mut frame, tuple) = random::frame(&mut rng, &policy, answer);
            match (rng.random_range(0..10), &tuple) {
                // A first fragment: of this frame's datagram, or of one whose
                // later fragment came first (reordered).
                (0, Some(t)) => {
                    let t = match early.pop() {
                        Some(e) if rng.random_bool(0.5) => e,
                        _ => t.clone(),
                    };
                    frame = random::fragment(&mut rng, &policy, &t, true);
                    datagrams.push(t);
                }
                // A later fragment: of a datagram whose first was sent, or
                // of this frame's (its first missing, or to come).
                (1, Some(t)) => {
                    let t = match datagrams.choose(&mut rng) {
                        Some(d) if rng.random_bool(0.7) => d.clone(),
                        _ => {
                            early.push(t.clone());
                            t.clone()
                        }
                    };
                    frame = random::fragment(&mut rng, &policy, &t, false);
                }
                _ => {}
            }
            for list in [&mut datagrams, &mut early] {
                if list.len() > 64 {
                    list.swap_remove(rng.random_range(0..list.len()));
                }
            }
            if !h.takes(&frame) {
                continue;
            }
            let expected =
                crate::reference::evaluate_with_flows(&policy, &frame, iface_vlan, &mut h.flows);
            // Replies to frames that involved a device and passed.
            if let Some(t) = tuple
                && matches!(expected.reason, Reason::Allowed | Reason::Established)
            {
                if passed.len() == 64 {
                    passed.swap_remove(rng.random_range(0..64));
                }
                passed.push(t);
            }
            let got = h.run(&frame);
            let actions =
                format!("blocks {:?}\nquarantined {:?}", h.flows.blocks, h.flows.quarantined);
            let context = || {
                format!(
                    "seed {seed} (VLANGUARD_SEED={seed}), case {done}\nframe ({} bytes) {:02x?}\n\
                     iface_vlan {iface_vlan}\npolicy {policy:#?}\n{actions}\nexpected {expected:?}\n\
                     got {got:?}",
                    frame.len(),
                    &frame[..frame.len().min(256)],
                )
            };
            assert_agrees(h, &policy, frame.len(), &expected, &got, context);
            *by_reason.entry(expected.reason).or_insert(0usize) += 1;
            done += 1;
        }
    }
    by_reason
}

/// Panics, saying `context`, unless the program's outcome `got` for a
/// frame of `len` bytes is the reference's `expected`: the action, the
/// reason, exactly the device counters and rule hits that moved.
pub fn assert_agrees(
    h: &Harness,
    policy: &filter_user::Resolved,
    len: usize,
    expected: &crate::reference::Decision,
    got: &Outcome,
    context: impl Fn() -> String,
) {
    let verdict = expected.verdict;
    let action = if verdict.passes() { XDP_PASS } else { XDP_DROP };
    assert_eq!(got.action, action, "action differs\n{}", context());
    assert_eq!(got.reason(), Some(expected.reason), "reason differs\n{}", context());
    let len = len as u64;
    // Devices keep stable counter slots across policies by name.
    let slot =
        |i: usize| h.filter.device_slot(&policy.devices[i].name).expect("every device has a slot");
    let mut devices = BTreeMap::new();
    if let Some(s) = expected.src_device {
        devices.insert((slot(s), Direction::Out, verdict), (1, len));
    }
    if let Some(d) = expected.dst_device {
        devices.insert((slot(d), Direction::In, verdict), (1, len));
    }
    assert_eq!(got.devices, devices, "device counters differ\n{}", context());
    let mut rules = BTreeMap::new();
    if let (Some(s), Some(r)) = (expected.src_device, expected.src_rule) {
        rules.insert((slot(s), Direction::Out, r as u8), 1);
    }
    if let (Some(d), Some(r)) = (expected.dst_device, expected.dst_rule) {
        rules.insert((slot(d), Direction::In, r as u8), 1);
    }
    assert_eq!(got.rules, rules, "rule hits differ\n{}", context());
}

/// `VLANGUARD_SEED`, or a fresh random seed.
pub fn seed() -> u64 {
    env_number("VLANGUARD_SEED").unwrap_or_else(rand::random)
}

pub fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}
