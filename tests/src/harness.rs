//! Runs the real XDP program (or its TC variant) on frames through
//! BPF_PROG_TEST_RUN and reads back the verdict and exactly which counters
//! moved.

use std::collections::BTreeMap;

use aya::programs::TestRun as _;
use filter_common::{Counter, Direction, Reason, RuleHitKey, Verdict};
use filter_user::{Filter, PROGRAM_OBJECT, Resolved, compile, datapath::DeviceStat};
use ipnet::IpNet;

/// XDP return codes.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// TC return codes (the TC variant's runs report the XDP code of the same
/// verdict, so one expectation serves both).
const TC_ACT_UNSPEC: u32 = -1i32 as u32;
const TC_ACT_SHOT: u32 = 2;

/// Which of the filter's two programs a harness runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    /// `vlanguard_tc`, as at TC ingress. Its test runs build a socket
    /// buffer from the frame: the kernel refuses frames shorter than an
    /// Ethernet header (which never reach TC) and untagged IPv4 and IPv6
    /// frames shorter than their IP header (`takes`), and a tag can only be
    /// in the frame (the kernel lets a test set no VLAN metadata).
    Tc,
}

/// `struct __sk_buff` as a test run's context: 192 bytes, all zero but
/// `ingress_ifindex` (offset 36), loopback as for XDP test runs.
fn skb_context() -> [u8; 192] {
    let mut ctx = [0u8; 192];
    ctx[36..40].copy_from_slice(&LOOPBACK_IFINDEX.to_ne_bytes());
    ctx
}

/// The counters one frame moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: u32,
    /// Global counters that moved: (verdict, reason) -> (packets, bytes).
    pub global: BTreeMap<(Verdict, Reason), (u64, u64)>,
    /// Device counters that moved: (slot, direction, verdict).
    pub devices: BTreeMap<(u32, Direction, Verdict), (u64, u64)>,
    /// Rule hits that moved: (slot, direction, rule index) -> frames.
    pub rules: BTreeMap<(u32, Direction, u8), u64>,
}

impl Outcome {
    /// The single reason the frame was counted under globally.
    pub fn reason(&self) -> Option<Reason> {
        match self.global.keys().collect::<Vec<_>>().as_slice() {
            [(_, r)] => Some(*r),
            _ => None,
        }
    }
}

pub struct Harness {
    pub filter: Filter,
    pub hook: Hook,
    global: BTreeMap<(Verdict, Reason), Counter>,
    devices: BTreeMap<DeviceStat, Counter>,
    rules: BTreeMap<RuleHitKey, u64>,
    /// The reference's flow table, kept in step with the program's: every
    /// `apply` starts a new epoch in both.
    pub flows: crate::reference::Flows,
}

impl Harness {
    /// Loads the embedded (release) program.
    pub fn new() -> Harness {
        Harness::with_object(PROGRAM_OBJECT)
    }

    pub fn with_object(object: &[u8]) -> Harness {
        Harness::with_filter(Filter::load(object).expect("load the XDP program (verifier)"))
    }

    /// The embedded program with counters for every device a policy can
    /// hold (the benchmarks' 100,000; the default depends on the CPUs).
    pub fn full_size() -> Harness {
        let filter = Filter::load_with_capacity(PROGRAM_OBJECT, filter_common::COUNTER_SLOTS)
            .expect("load the XDP program (verifier)");
        Harness::with_filter(filter)
    }

    /// The embedded program with a rule-hit table of `entries` (see
    /// `Filter::load_with_rule_hits`): `run` reads it after every frame,
    /// which at full size costs more than the frame. Enough when the
    /// policies' devices and rules cannot make more keys (random policies:
    /// at most 8 device names, 2 directions, 64 rules: 1,024).
    pub fn with_rule_hits(entries: u32) -> Harness {
        let filter = Filter::load_with_rule_hits(PROGRAM_OBJECT, entries)
            .expect("load the XDP program (verifier)");
        Harness::with_filter(filter)
    }

    fn with_filter(filter: Filter) -> Harness {
        let mut h = Harness {
            filter,
            hook: Hook::Xdp,
            global: BTreeMap::new(),
            devices: BTreeMap::new(),
            rules: BTreeMap::new(),
            flows: crate::reference::Flows::default(),
        };
        h.snapshot();
        h
    }

    /// Compiles and installs `policy`. `iface_vlan` is the untagged VLAN of
    /// the interface test frames arrive on (loopback, ifindex 1); 0 = none.
    pub fn apply(&mut self, policy: &Resolved, iface_vlan: u16) {
        let ifaces: &[(u32, u16)] =
            if iface_vlan == 0 { &[] } else { &[(LOOPBACK_IFINDEX, iface_vlan)] };
        self.filter.apply(&compile(policy), ifaces).expect("apply policy");
        self.flows.epoch += 1;
        self.snapshot();
    }

    /// Replaces the blocklist and the quarantines with `blocks` and
    /// `quarantined` (device names), each in force or already expired, in
    /// the program and in the reference's view.
    pub fn set_actions(&mut self, blocks: &[(IpNet, bool)], quarantined: &[(String, bool)]) {
        let entry = |on: bool| {
            let mut e = filter_user::datapath::actions::entry(None, "test").expect("entry");
            // Boot time 1 ns: long past.
            if !on {
                e.expires_ns = 1;
            }
            e
        };
        for (net, _) in self.filter.blocks().expect("blocks") {
            self.filter.unblock(net).expect("unblock");
        }
        for (slot, _) in self.filter.quarantined().expect("quarantined") {
            self.filter.release(slot).expect("release");
        }
        for (net, on) in blocks {
            self.filter.block(*net, entry(*on)).expect("block");
        }
        for (name, on) in quarantined {
            let slot = self.filter.device_slot(name).expect("a device of the policy");
            self.filter.quarantine(slot, entry(*on)).expect("quarantine");
        }
        // What the program holds (block() may lengthen nested entries).
        let now = filter_user::sys::clock::boot_ns();
        self.flows.blocks = self
            .filter
            .blocks()
            .expect("blocks")
            .into_iter()
            .map(|(n, e)| (n, e.active(now)))
            .collect();
        self.flows.quarantined = quarantined.to_vec();
    }

    /// Forgets every flow and first fragment, in the program and in the
    /// reference's view alike: what follows meets both as after `apply`
    /// on a fresh load (the kernel fuzz target, one input at a time).
    pub fn forget_flows(&mut self) {
        let keys = self.flows.forget();
        self.filter.forget_flows(&keys).expect("forget flows");
    }

    /// Takes the counters as they are now: what `run` compares with (after
    /// timed runs through `run_raw`, which move them).
    pub fn snapshot(&mut self) {
        self.global = self.filter.global_stats().expect("read global stats");
        self.devices = self.filter.device_stats().expect("read device stats");
        self.rules = self.filter.rule_hits().expect("read rule hits");
    }

    /// Runs the program once on `frame`; returns its action and the counter
    /// changes it caused.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        let action = self.run_raw(frame, 1).0;
        let global_before = std::mem::take(&mut self.global);
        let devices_before = std::mem::take(&mut self.devices);
        let rules_before = std::mem::take(&mut self.rules);
        self.snapshot();
        let mut rules = BTreeMap::new();
        for (k, n) in &self.rules {
            let before = rules_before.get(k).copied().unwrap_or(0);
            if *n != before {
                let dir = Direction::from_u8(k.direction).expect("a direction");
                rules.insert((k.slot, dir, k.rule), n - before);
            }
        }
        let global = diff(&global_before, &self.global, |k| *k);
        let devices = diff(&devices_before, &self.devices, |k| (k.slot, k.direction, k.verdict));
        Outcome { action, global, devices, rules }
    }

    /// Runs the program `repeat` times on `frame`; returns the action and the
    /// kernel's mean time per run in nanoseconds.
    pub fn run_raw(&mut self, frame: &[u8], repeat: u32) -> (u32, u64) {
        let mut opts = aya::TestRunOptions { data_in: Some(frame), repeat, ..Default::default() };
        let result = match self.hook {
            Hook::Xdp => self.filter.program().test_run(opts).expect("BPF_PROG_TEST_RUN"),
            Hook::Tc => {
                let ctx = skb_context();
                opts.ctx_in = Some(&ctx);
                let tc = self.filter.tc_program().expect("load the TC program (verifier)");
                let len = frame.len();
                let mut r = tc
                    .test_run(opts)
                    .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (TC), {len}-byte frame: {e}"));
                r.return_value = match r.return_value {
                    TC_ACT_UNSPEC => XDP_PASS,
                    TC_ACT_SHOT => XDP_DROP,
                    other => panic!("the TC program returned {other}"),
                };
                r
            }
        };
        (result.return_value, result.duration.as_nanos() as u64)
    }

    /// The TC variant on a harness of its own (`Hook::Tc`).
    pub fn tc() -> Harness {
        let mut h = Harness::new();
        h.filter.tc_program().expect("load the TC program (verifier)");
        h.hook = Hook::Tc;
        h
    }

    /// Whether this harness's program can be run on `frame` (see `Hook`).
    pub fn takes(&self, frame: &[u8]) -> bool {
        if self.hook == Hook::Xdp {
            return true;
        }
        let ip_header = match frame.get(12..14) {
            None => return false,
            Some([0x08, 0x00]) => 20,
            Some([0x86, 0xdd]) => 40,
            Some(_) => 0,
        };
        frame.len() >= 14 + ip_header
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// BPF_PROG_TEST_RUN delivers XDP frames as if received on loopback.
pub const LOOPBACK_IFINDEX: u32 = 1;

fn diff<K: Ord + Clone, K2: Ord>(
    before: &BTreeMap<K, Counter>,
    after: &BTreeMap<K, Counter>,
    key: impl Fn(&K) -> K2,
) -> BTreeMap<K2, (u64, u64)> {
    let mut out = BTreeMap::new();
    for (k, a) in after {
        let b = before.get(k).copied().unwrap_or_default();
        if a.packets != b.packets || a.bytes != b.bytes {
            out.insert(key(k), (a.packets - b.packets, a.bytes - b.bytes));
        }
    }
    out
}
