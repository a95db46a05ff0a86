//! Per-packet cost of the XDP program, measured by the kernel itself
//! (BPF_PROG_TEST_RUN with `repeat`), next to an XDP_PASS floor and
//! xdp-filter (Debian's xdp-tools, its address allowlist holding the same
//! devices) in the same run, alternating the programs so drift hits all of
//! them alike.
//!
//! Run through `cargo xtask bench` (root needed). Writes a markdown table
//! and a CSV under target/bench/.

use std::{fmt::Write as _, net::IpAddr};

use aya::{
    Ebpf, TestRunOptions,
    programs::{TestRun as _, Xdp},
};
use filter_common::Reason;
use filter_user::test_objects::BENCH_OBJECT;
use vlanguard_tests::reference;
use vlanguard_tests::{
    frame::{Body, Frame, L4, v4, v6},
    harness::Harness,
    harness::{XDP_DROP, XDP_PASS},
    privileged, scale,
    xdp_filter::{self, XdpFilter},
};

const ROUNDS: usize = 7;
/// Distinct frames of the mixed run.
const MIXED: usize = 4096;
/// The bench object's floor programs of the new-connection and mixed rows.
const SYN_FLOOR: &str = "insert_split";
const DEVICE_FLOOR: &str = "device_touch_flat";

struct Case {
    name: &'static str,
    /// Sent once before: the frame that opens the flow `frame` belongs to.
    opener: Option<Vec<u8>>,
    frame: Vec<u8>,
    expect: Reason,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut repeat: u32 = 1_000_000;
    let mut name = String::from("datapath");
    // For profiling one case: only the cases whose name holds this, at
    // only this policy size.
    let mut only: Option<String> = None;
    let mut sizes: Option<usize> = None;
    // Another build of the program (an object file), timed in the same
    // rounds: the per-round ratio says what a change bought on this noisy
    // machine better than two runs can (an A/A run still varies by up to
    // ±10 %: each build has its own maps, placed differently in memory).
    // This version's loader loads it, so it must have this version's maps.
    let mut against: Option<Vec<u8>> = None;
    // A program of the bench object (a floor such as `insert_split`) timed
    // against vlanguard on the rows of distinct frames, as `--against`.
    let mut probe: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => repeat = args.next().and_then(|v| v.parse().ok()).expect("--repeat N"),
            // Output file stem under target/bench (one per process run).
            "--name" => name = args.next().expect("--name STEM"),
            "--only" => only = Some(args.next().expect("--only SUBSTRING")),
            "--against" => {
                let path = args.next().expect("--against OBJECT");
                against = Some(std::fs::read(&path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?);
            }
            "--probe" => probe = Some(args.next().expect("--probe PROGRAM")),
            "--devices" => {
                sizes = Some(args.next().and_then(|v| v.parse().ok()).expect("--devices N"))
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if !privileged() {
        anyhow::bail!("the benchmark needs root");
    }

    let mut floor_obj = Ebpf::load(BENCH_OBJECT)?;
    let floor: &mut Xdp = floor_obj.program_mut("pass_floor").expect("pass_floor").try_into()?;
    floor.load()?;
    let mut probe_obj = Ebpf::load(BENCH_OBJECT)?;
    let mut probe_prog = match &probe {
        Some(name) => Some(bench_program(&mut probe_obj, name)?),
        None => None,
    };
    // The floors of the rows of distinct frames (what any design must do
    // for them, alone), timed in the same rounds unless --against or
    // --probe asks for another program there.
    let (mut syn_obj, mut device_obj) = (Ebpf::load(BENCH_OBJECT)?, Ebpf::load(BENCH_OBJECT)?);
    let syn_floor = bench_program(&mut syn_obj, SYN_FLOOR)?;
    let device_floor = bench_program(&mut device_obj, DEVICE_FLOOR)?;

    let mut md = String::new();
    let mut csv = String::from(
        "devices,rules_per_device,frame,bytes,ns_median,ns_min,ns_max,floor_ns_median,ratio_to_floor,xdp_filter_ns_median,xdp_filter_verdict\n",
    );
    writeln!(
        md,
        "| devices | frame | bytes | verdict | ns/packet (median of {ROUNDS}) | min | max | XDP_PASS floor | minus floor | xdp-filter | its verdict | vlanguard / xdp-filter |"
    )?;
    writeln!(md, "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")?;

    // Map memory per policy size, for the per-device figure.
    let mut memory: Vec<(usize, u64)> = Vec::new();
    // The sizes, then the hospital-shaped policy (its rows' labels start
    // with "hospital").
    let runs =
        [(1usize, ""), (100, ""), (10_000, ""), (100_000, ""), (10_000, "hospital, 20 profiles: ")];
    for (n, shape) in runs {
        if sizes.is_some_and(|s| s != n) || (sizes.is_some() && !shape.is_empty()) {
            continue;
        }
        let policy = if shape.is_empty() { scale::policy(n) } else { scale::hospital(n) };
        let mut h = Harness::full_size();
        let t = std::time::Instant::now();
        h.apply(&policy, 0);
        let mut other = against.as_deref().map(Harness::with_object);
        if let Some(o) = &mut other {
            o.apply(&policy, 0);
        }
        eprintln!("bench: {n} devices applied in {:?}", t.elapsed());
        // xdp-filter with the same devices' addresses allowed, the target's
        // first (its maps hold 10,000 addresses per family).
        let mut xdpf = XdpFilter::load()?;
        let listed = xdpf.allow(
            [scale::device_ip(n / 2), scale::device_ip6(n / 2)].into_iter().chain(
                (0..n)
                    .filter(|i| *i != n / 2)
                    .flat_map(|i| [scale::device_ip(i), scale::device_ip6(i)]),
            ),
        )?;
        if n > xdp_filter::CAPACITY {
            eprintln!("bench: xdp-filter holds {listed} of the {} device addresses", 2 * n);
        }
        if shape.is_empty() {
            memory.push((n, h.filter.map_memory()?.iter().map(|m| m.memlock).sum()));
        }
        let target: IpAddr = scale::device_ip(n / 2);
        let target6: IpAddr = scale::device_ip6(n / 2);
        let nurse = v4("10.30.1.1");
        let nurse6 = v6("2001:db8:30::1");
        let cases = [
            Case {
                name: "allowed TCP v4, by the rules (ACK, no flow)",
                opener: None,
                frame: Frame::ip(nurse, target, L4::tcp(40000, 443)).padded(),
                expect: Reason::Allowed,
            },
            Case {
                name: "dropped TCP v4",
                opener: None,
                frame: Frame::ip(nurse, target, L4::tcp(40000, 80)).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "dropped TCP SYN v4 (a port scan: no flow lookup)",
                opener: None,
                frame: Frame::ip(nurse, target, L4::syn(40000, 80)).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "allowed UDP v4 non-first fragment, rules only (no flow lookup)",
                opener: None,
                frame: Frame::ip(target, v4("10.50.0.9"), L4::udp(5000, 9))
                    .vlan(110)
                    .with_ip(|b| {
                        if let Body::Ip { frag_offset8, .. } = b {
                            *frag_offset8 = 8;
                        }
                    })
                    .padded(),
                expect: Reason::Allowed,
            },
            // The same drop with and without the flow lookup: a datagram
            // is looked up in the flow table first, a non-first fragment
            // has no ports and is not.
            Case {
                name: "dropped UDP v4 datagram (flow lookup, then rules)",
                opener: None,
                frame: Frame::ip(nurse, target, L4::udp(40000, 6000)).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "dropped UDP v4 non-first fragment (rules only)",
                opener: None,
                frame: Frame::ip(nurse, target, L4::udp(40000, 6000))
                    .with_ip(|b| {
                        if let Body::Ip { frag_offset8, .. } = b {
                            *frag_offset8 = 8;
                        }
                    })
                    .padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "dropped UDP v4, 802.1Q-tagged",
                opener: None,
                frame: Frame::ip(nurse, target, L4::udp(40000, 6000)).vlan(30).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "dropped UDP v4, QinQ (802.1ad + 802.1Q)",
                opener: None,
                frame: Frame::ip(nurse, target, L4::udp(40000, 6000)).qinq(300, 30).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "allowed TCP v6, by the rules (ACK)",
                opener: None,
                frame: Frame::ip(nurse6, target6, L4::tcp(40000, 443)).padded(),
                expect: Reason::Allowed,
            },
            Case {
                name: "dropped UDP v6",
                opener: None,
                frame: Frame::ip(nurse6, target6, L4::udp(40000, 6000)).padded(),
                expect: Reason::NotAllowed,
            },
            Case {
                name: "no device involved (passes as unmatched)",
                opener: None,
                frame: Frame::ip(nurse, v4("10.20.5.10"), L4::tcp(40000, 443)).padded(),
                expect: Reason::Unmatched,
            },
            // Dropped by both: xdp-filter looks up both addresses and both
            // ports before its default drop.
            Case {
                name: "unknown host on a device VLAN (802.1Q 110)",
                opener: None,
                frame: Frame::ip(v4("10.110.0.251"), nurse, L4::tcp(40000, 443)).vlan(110).padded(),
                expect: Reason::UnknownDevice,
            },
            Case {
                name: "TCP v4 reply of an established flow",
                opener: Some(Frame::ip(nurse, target, L4::syn(40001, 443)).padded()),
                frame: Frame::ip(target, nurse, L4::tcp(443, 40001)).vlan(110).padded(),
                expect: Reason::Established,
            },
        ];
        // Check every verdict before timing: timed runs move the counters.
        for case in &cases {
            if let Some(opener) = &case.opener {
                reference::evaluate_with_flows(&policy, opener, 0, &mut h.flows);
                h.run(opener);
            }
            let expected =
                reference::evaluate_with_flows(&policy, &case.frame, 0, &mut h.flows).reason;
            assert_eq!(expected, case.expect, "{}: reference verdict", case.name);
            assert_eq!(
                h.run(&case.frame).reason(),
                Some(case.expect),
                "{}: kernel verdict",
                case.name
            );
            if let Some(o) = &mut other {
                if let Some(opener) = &case.opener {
                    o.run(opener);
                }
                assert_eq!(o.run(&case.frame).reason(), Some(case.expect), "{}: other", case.name);
            }
        }
        for case in &cases {
            if only.as_ref().is_some_and(|o| !case.name.contains(o.as_str())) {
                continue;
            }
            let (mut ours, mut floors, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
            let mut against_ratios = Vec::new();
            // Comparing builds: many short rounds, so that the machine's
            // slow spells hit both alike.
            let (rounds, repeat) =
                if other.is_some() { (ROUNDS * 9, (repeat / 5).max(1)) } else { (ROUNDS, repeat) };
            for round in 0..rounds {
                floors.push(run(floor, &case.frame, repeat)?.1);
                if let Some(a) = &mut other {
                    // Ratios in thousandths, for the median of integers;
                    // the order alternates by round, so neither build
                    // always runs after the other.
                    let (o, t) = if round % 2 == 0 {
                        let o = h.run_raw(&case.frame, repeat).1;
                        (o, a.run_raw(&case.frame, repeat).1)
                    } else {
                        let t = a.run_raw(&case.frame, repeat).1;
                        (h.run_raw(&case.frame, repeat).1, t)
                    };
                    ours.push(o);
                    against_ratios.push(o * 1000 / t.max(1));
                } else {
                    ours.push(h.run_raw(&case.frame, repeat).1);
                }
                theirs.push(run(xdpf.program(), &case.frame, repeat)?.1);
            }
            if !against_ratios.is_empty() {
                say_against(n, case.name, median(against_ratios) as f64 / 1000.0, rounds);
            }
            let their_verdict = match run(xdpf.program(), &case.frame, 1)?.0 {
                XDP_PASS => "pass",
                XDP_DROP => "drop",
                _ => "other",
            };
            let (m, f, x) = (median(ours.clone()), median(floors), median(theirs));
            let (lo, hi) =
                (*ours.iter().min().expect("rounds"), *ours.iter().max().expect("rounds"));
            let frame = format!("{shape}{}", case.name);
            Row {
                devices: n,
                frame: &frame,
                csv_frame: &frame,
                bytes: case.frame.len(),
                verdict: case.expect.name(),
                median: m,
                range: Some((lo, hi)),
                floor: f,
                xdp_filter: x,
                their_verdict,
            }
            .write(&mut md, &mut csv)?;
        }

        let wanted = |label: &str| only.as_ref().is_none_or(|o| label.contains(o.as_str()));
        // New connections: a SYN repeated would find its flow open and
        // leave it be, so each timed SYN is a frame of its own (another
        // source port), run once, and opens a flow; each round uses new
        // ports.
        // Compare with the floor and xdp-filter measured the same way.
        let syn = |round: usize, i: usize| {
            let port = 10_000 + (round * MIXED + i) as u16;
            Frame::ip(nurse, target, L4::syn(port, 443)).padded()
        };
        let label = format!(
            "{shape}allowed TCP SYN v4, a new connection each ({MIXED} distinct, each run once)"
        );
        let probe = Frame::ip(nurse, target, L4::syn(9_999, 443)).padded();
        assert_eq!(
            reference::evaluate_with_flows(&policy, &probe, 0, &mut h.flows).reason,
            Reason::Allowed
        );
        h.snapshot();
        assert_eq!(h.run(&probe).reason(), Some(Reason::Allowed), "SYN: kernel verdict");
        if wanted(&label) {
            let (beside, is_floor) = second(&mut other, &mut probe_prog, syn_floor);
            let d = time_distinct(&mut h, beside, floor, &mut xdpf, |round| {
                (0..MIXED).map(|i| syn(round, i)).collect()
            })?;
            if is_floor {
                let what = format!(
                    "floor of a new connection: {SYN_FLOOR}, recording a flow in a table of the flow cache's size, alone ({MIXED} distinct, each run once)"
                );
                Row::floor(n, &what, d.a, d.f, d.x).write(&mut md, &mut csv)?;
            } else {
                say_against(n, &label, d.against, ROUNDS);
            }
            Row::distinct(n, &label, &label, &d, "pass").write(&mut md, &mut csv)?;
        }
        if !wanted("mixed") {
            continue;
        }

        // The mixed run: thousands of distinct frames to different devices
        // from different hosts, each run once, so lookups are not always
        // cache-hot. Per-run timing includes the kernel's per-run setup, so
        // compare with the floor measured the same way.
        let mixed: Vec<Vec<u8>> = (0..MIXED)
            .map(|i| {
                let dev = (i * 7919) % n;
                let src = v4(&format!("10.30.{}.{}", (i / 250) % 250, i % 250 + 1));
                Frame::ip(src, scale::device_ip(dev), L4::tcp(40000 + (i % 1000) as u16, 443))
                    .padded()
            })
            .collect();
        let (beside, is_floor) = second(&mut other, &mut probe_prog, device_floor);
        let d = time_distinct(&mut h, beside, floor, &mut xdpf, |_| mixed.clone())?;
        if is_floor {
            let what = format!(
                "floor of a mixed frame: {DEVICE_FLOOR}, the device's line and its counter line, alone ({MIXED} distinct, each run once)"
            );
            Row::floor(n, &what, d.a, d.f, d.x).write(&mut md, &mut csv)?;
        } else {
            say_against(n, "mixed", d.against, ROUNDS);
        }
        let frame = format!("{shape}mixed: {MIXED} distinct allowed TCP v4 frames, each run once");
        let csv_frame = format!("{shape}mixed: {MIXED} distinct frames");
        // xdp-filter passes the frames to the devices it holds.
        let theirs = if n > xdp_filter::CAPACITY { "pass/drop" } else { "pass" };
        Row::distinct(n, &frame, &csv_frame, &d, theirs).write(&mut md, &mut csv)?;
    }
    if only.is_some() || sizes.is_some() {
        // A profiling run: the table only, no files.
        println!("{md}");
        return Ok(());
    }
    // Map memory: all maps (the fixed, preallocated ones included) and what
    // each device adds beyond the one-device policy.
    // Per rule: the same devices with ten more rules each (their own), at
    // 10,000 devices (at 100,000, 1.1 million distinct rules exceed the
    // 1,048,576 entries a generation holds).
    let mut memory_csv =
        String::from("devices,memlock_bytes,per_device,memlock_bytes_20_rules,per_rule\n");
    writeln!(
        md,
        "\n| devices | map memory (memlock, all maps) | per device beyond 1 device | with 20 rules per device | per rule |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|")?;
    let base = memory.first().map_or(0, |(_, b)| *b);
    for (n, bytes) in &memory {
        let per = if *n > 1 { (bytes.saturating_sub(base)) / (*n as u64 - 1) } else { 0 };
        let (with20, per_rule) = if *n == 10_000 {
            let mut h = Harness::full_size();
            h.apply(&scale::policy_with_rules(*n, 20), 0);
            let m: u64 = h.filter.map_memory()?.iter().map(|m| m.memlock).sum();
            (m.to_string(), (m.saturating_sub(*bytes) / (*n as u64 * 10)).to_string())
        } else {
            Default::default()
        };
        writeln!(md, "| {n} | {bytes} | {per} | {with20} | {per_rule} |")?;
        writeln!(memory_csv, "{n},{bytes},{per},{with20},{per_rule}")?;
    }
    // Kernel memory of the flow cache (its entries and its buckets' tags),
    // per flow.
    let h = Harness::full_size();
    writeln!(
        md,
        "\n| map | entries | kernel memory (memlock) | per entry |\n|---|---:|---:|---:|"
    )?;
    let memory = h.filter.map_memory()?;
    let flows: Vec<_> =
        memory.iter().filter(|m| m.name == "FLOW_CACHE" || m.name == "FLOW_TAGS").collect();
    let bytes: u64 = flows.iter().map(|m| m.memlock).sum();
    let entries = u64::from(filter_common::MAX_FLOWS);
    writeln!(md, "| FLOW_CACHE + FLOW_TAGS | {entries} | {bytes} | {} |", bytes / entries)?;
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    std::fs::write(dir.join(format!("{name}.csv")), &csv)?;
    std::fs::write(dir.join("memory.csv"), &memory_csv)?;
    eprintln!("bench: wrote {}", dir.join(format!("{name}.{{md,csv}}")).display());
    Ok(())
}

/// A run of distinct frames, each run once: vlanguard's median, min and max
/// over the rounds, the floor's and xdp-filter's medians (ns per frame).
struct Distinct {
    m: u64,
    lo: u64,
    hi: u64,
    f: u64,
    x: u64,
    /// The program timed beside it (`second`): its median.
    a: u64,
    /// The median over the rounds of vlanguard's time over that program's.
    against: f64,
}

/// Times `frames(round)` (distinct frames, each run once per round) through
/// the floor, vlanguard and xdp-filter, one frame after the other. Per-run
/// timing includes the kernel's per-run setup, which the floor measured
/// the same way shows.
fn time_distinct(
    h: &mut Harness,
    mut other: Second<'_>,
    floor: &mut Xdp,
    xdpf: &mut XdpFilter,
    frames: impl Fn(usize) -> Vec<Vec<u8>>,
) -> anyhow::Result<Distinct> {
    let (mut ours, mut floors, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut seconds, mut against) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let frames = frames(round);
        let (mut o, mut f, mut x, mut a) = (0u64, 0u64, 0u64, 0u64);
        for (i, frame) in frames.iter().enumerate() {
            f += run(floor, frame, 1)?.1;
            // Alternating which program runs first, as in the repeated
            // cases.
            if i % 2 == 0 {
                o += h.run_raw(frame, 1).1;
                a += other(frame);
            } else {
                a += other(frame);
                o += h.run_raw(frame, 1).1;
            }
            x += run(xdpf.program(), frame, 1)?.1;
        }
        let count = frames.len().max(1) as u64;
        ours.push(o / count);
        floors.push(f / count);
        theirs.push(x / count);
        seconds.push(a / count);
        against.push(o * 1000 / a.max(1));
    }
    let (lo, hi) = (*ours.iter().min().expect("rounds"), *ours.iter().max().expect("rounds"));
    Ok(Distinct {
        m: median(ours),
        lo,
        hi,
        f: median(floors),
        x: median(theirs),
        a: median(seconds),
        against: median(against) as f64 / 1000.0,
    })
}

/// A second program timed beside vlanguard: runs it once on a frame, says
/// how long it took (ns).
type Second<'a> = Box<dyn FnMut(&[u8]) -> u64 + 'a>;

/// The program timed beside vlanguard on a row of distinct frames: the
/// build `--against` names, else the program `--probe` names, else the
/// row's floor (then `true`).
fn second<'a>(
    other: &'a mut Option<Harness>,
    probe: &'a mut Option<&mut Xdp>,
    row_floor: &'a mut Xdp,
) -> (Second<'a>, bool) {
    if let Some(h) = other.as_mut() {
        return (Box::new(move |f| h.run_raw(f, 1).1), false);
    }
    let (p, is_floor) = match probe.as_mut() {
        Some(p) => (&mut **p, false),
        None => (row_floor, true),
    };
    (Box::new(move |f| run(p, f, 1).expect("BPF_PROG_TEST_RUN").1), is_floor)
}

/// Loads program `name` of the bench object `obj`.
fn bench_program<'a>(obj: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let p: &mut Xdp = obj
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("no program {name} in the bench object"))?
        .try_into()?;
    p.load()?;
    Ok(p)
}

/// One row of the per-process table and CSV (ns per frame).
struct Row<'a> {
    devices: usize,
    frame: &'a str,
    /// The CSV's label, shorter for the mixed row.
    csv_frame: &'a str,
    bytes: usize,
    verdict: &'a str,
    median: u64,
    /// Min and max over the rounds; none for a floor program's row.
    range: Option<(u64, u64)>,
    /// The XDP_PASS program's median.
    floor: u64,
    xdp_filter: u64,
    their_verdict: &'a str,
}

impl Row<'_> {
    /// The row of a floor program timed beside vlanguard (`a` ns per frame).
    fn floor<'a>(devices: usize, what: &'a str, a: u64, floor: u64, x: u64) -> Row<'a> {
        Row {
            devices,
            frame: what,
            csv_frame: what,
            bytes: 60,
            verdict: "pass",
            median: a,
            range: None,
            floor,
            xdp_filter: x,
            their_verdict: "pass",
        }
    }

    /// vlanguard's row of a case of distinct frames, each allowed.
    fn distinct<'a>(
        devices: usize,
        frame: &'a str,
        csv_frame: &'a str,
        d: &Distinct,
        their_verdict: &'a str,
    ) -> Row<'a> {
        Row {
            devices,
            frame,
            csv_frame,
            bytes: 60,
            verdict: "allowed",
            median: d.m,
            range: Some((d.lo, d.hi)),
            floor: d.f,
            xdp_filter: d.x,
            their_verdict,
        }
    }

    fn write(&self, md: &mut String, csv: &mut String) -> std::fmt::Result {
        let Row { devices: n, frame, csv_frame, bytes, verdict, median: m, floor: f, .. } = *self;
        let (x, theirs) = (self.xdp_filter, self.their_verdict);
        let (lo, hi) = match self.range {
            Some((lo, hi)) => (lo.to_string(), hi.to_string()),
            None => Default::default(),
        };
        writeln!(
            md,
            "| {n} | {frame} | {bytes} | {verdict} | {m} | {lo} | {hi} | {f} | {} | {x} | {theirs} | {:.2} |",
            m.saturating_sub(f),
            m as f64 / x.max(1) as f64
        )?;
        let (lo, hi) = self.range.unwrap_or((m, m));
        writeln!(
            csv,
            "{n},10,\"{csv_frame}\",{bytes},{m},{lo},{hi},{f},{:.2},{x},{theirs}",
            m as f64 / f.max(1) as f64
        )
    }
}

/// What `--against` or `--probe` found for a case.
fn say_against(devices: usize, case: &str, ratio: f64, rounds: usize) {
    eprintln!(
        "bench: {devices} devices, {case}: this build / --against {ratio:.3} (median of {rounds} rounds)"
    );
}

/// The program's action and its mean time per run in nanoseconds.
fn run(prog: &mut Xdp, frame: &[u8], repeat: u32) -> anyhow::Result<(u32, u64)> {
    let r = prog.test_run(TestRunOptions { data_in: Some(frame), repeat, ..Default::default() })?;
    Ok((r.return_value, r.duration.as_nanos() as u64))
}
