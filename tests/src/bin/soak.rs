//! The soak (issue 18): the real daemon on the namespace lab for a while,
//! numbered UDP streams flowing through it, random operators' changes,
//! SIGHUPs, DNS refreshes, `kill -9`s with restarts and an upgrade to a
//! second build; it fails (exit 1) when an invariant breaks.
//!
//! `soak --seconds N | --minutes N [--seed S] [--variant PATH] [--logs DIR]`
//! as root (`cargo xtask soak` builds and runs it; `cargo xtask test` runs
//! 60 s). The daemon is `VLANGUARD_BIN`, the second build `--variant` or
//! `VLANGUARD_VARIANT_BIN`; `--logs` keeps the daemons' logs and the audit
//! log (those of an earlier run there are replaced).
//!
//! Streams (source ports fixed, one-byte flow id and a sequence number):
//! - `allowed`: nurse -> pump UDP 5005, 1,000/s, allowed by the policy;
//! - `denied`: pump -> nurse UDP 7000, 1,000/s, never allowed (the pump
//!   may send no UDP to nurses, and it answers no flow);
//! - `toggled`: nurse -> pump UDP 6000, 200/s, allowed while the rule the
//!   soak adds and revokes (`allow`/`revoke`, or `policy apply` of a file
//!   with or without it) is in force;
//! - `named`: nurse -> pump UDP 5020, 200/s, allowed by a rule naming
//!   `station.lab.test` while the lab's DNS server answers the nurse's
//!   address for it (the soak moves the name away and back);
//! - over IPv6, 200/s each: nurse -> pump UDP 5007 allowed, pump -> nurse
//!   UDP 7001 denied.
//!
//! A block of the nurse (its IPv4 address) denies the three IPv4 nurse ->
//! pump streams until lifted, a quarantine of the pump all four. The soak keeps the model of what
//! is in force and, for every datagram, judges it by the model at the time
//! it was sent: allowed ones must all arrive, denied ones none. A datagram
//! sent while a change that alters its stream's verdict is in progress
//! (from `PRE_GRACE` before the command's start to its end plus `GRACE`;
//! for a DNS move, from `PRE_GRACE` before the new answer to the daemon's
//! log line saying it applied it, plus `GRACE`) is counted apart and
//! judged by neither rule. Changes that
//! alter no verdict (device add/remove, invalid applies, SIGHUP, kills,
//! restarts, the upgrade) have no window: nothing may be lost across them.
//!
//! The first half of the run kills the daemon with SIGKILL every 8-15 s
//! and restarts it; at half time it is upgraded (SIGTERM, the second build
//! takes over the pins) and runs to the end, so its RSS and descriptors are
//! compared over half the run: each daemon's sample 3 s after its start
//! against its last, within `RSS_SLACK_KB` and `FD_SLACK`.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Seek as _, SeekFrom},
    net::UdpSocket,
    os::fd::AsRawFd as _,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use vlanguard_tests::{
    dns::Dns,
    lab::{self, Lab, NURSE, NURSE6, PUMP, PUMP6, socket_addr},
};

/// Slack after a change's command returns (or the DNS move is logged):
/// datagrams sent before its end may still be decided by the old policy.
const GRACE: Duration = Duration::from_millis(100);
/// Slack before a change's command starts: a datagram sent just before may
/// still be queued on its way to the filter when the change lands.
const PRE_GRACE: Duration = Duration::from_millis(50);
/// The DNS name of the `named` stream's rule, and where it moves to.
const STATION: &str = "station.lab.test";
const ELSEWHERE: &str = "10.30.9.9";
/// The spare device `device add` / `device remove` toggle.
const SPARE: &str = "spare";
const SPARE_IP: &str = "10.120.0.50";
/// A daemon's memory and descriptors may grow this much over its life.
const RSS_SLACK_KB: u64 = 16 * 1024;
const FD_SLACK: u64 = 8;
/// A daemon's first sample is taken this long after it started.
const WARMUP: Duration = Duration::from_secs(3);
/// How long a SIGHUP or a DNS move may take to show in the daemon's log.
const LOG_WAIT: Duration = Duration::from_secs(15);
/// Per sender tick (1 ms): one datagram of each stream due at it.
const TICK: Duration = Duration::from_millis(1);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Allowed,
    Toggled,
    Named,
    Denied,
    Allowed6,
    Denied6,
}

impl Flow {
    const ALL: [Flow; 6] =
        [Flow::Allowed, Flow::Toggled, Flow::Named, Flow::Denied, Flow::Allowed6, Flow::Denied6];

    fn id(self) -> u8 {
        self as u8 + 1
    }

    fn name(self) -> &'static str {
        match self {
            Flow::Allowed => "allowed nurse->pump udp/5005",
            Flow::Toggled => "toggled nurse->pump udp/6000",
            Flow::Named => "named   nurse->pump udp/5020",
            Flow::Denied => "denied  pump->nurse udp/7000",
            Flow::Allowed6 => "allowed nurse->pump udp6/5007",
            Flow::Denied6 => "denied  pump->nurse udp6/7001",
        }
    }

    fn port(self) -> u16 {
        match self {
            Flow::Allowed => 5005,
            Flow::Toggled => 6000,
            Flow::Named => 5020,
            Flow::Denied => 7000,
            Flow::Allowed6 => 5007,
            Flow::Denied6 => 7001,
        }
    }

    fn source_port(self) -> u16 {
        40_000 + u16::from(self.id())
    }

    /// One datagram every `every` ticks.
    fn every(self) -> u64 {
        match self {
            Flow::Allowed | Flow::Denied => 1,
            Flow::Toggled | Flow::Named | Flow::Allowed6 | Flow::Denied6 => 5,
        }
    }

    fn sender(self) -> &'static str {
        if self.denied() { "pump" } else { "nurse" }
    }

    fn receiver(self) -> &'static str {
        if self.denied() { "nurse" } else { "pump" }
    }

    fn dst(self) -> &'static str {
        match self {
            Flow::Denied => NURSE,
            Flow::Denied6 => NURSE6,
            Flow::Allowed6 => PUMP6,
            _ => PUMP,
        }
    }

    fn denied(self) -> bool {
        matches!(self, Flow::Denied | Flow::Denied6)
    }

    fn v6(self) -> bool {
        matches!(self, Flow::Allowed6 | Flow::Denied6)
    }
}

/// What the soak has put in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Model {
    blocked: bool,
    quarantined: bool,
    /// The `toggled` stream's rule.
    rule: bool,
    /// `station.lab.test` answers the nurse's address.
    named_nurse: bool,
    spare: bool,
}

impl Model {
    fn allows(&self, flow: Flow) -> bool {
        let open = !self.blocked && !self.quarantined;
        match flow {
            Flow::Allowed => open,
            Flow::Toggled => open && self.rule,
            Flow::Named => open && self.named_nurse,
            // The block is the nurse's IPv4 address only.
            Flow::Allowed6 => !self.quarantined,
            Flow::Denied | Flow::Denied6 => false,
        }
    }

    /// The policy file for this model (blocks, quarantines and DNS
    /// answers are not in it).
    fn policy(&self) -> String {
        let mut extra = format!("\n  {{ from = \"{STATION}\", proto = \"udp\", port = 5020 }},");
        if self.rule {
            extra.push_str("\n  { from = \"nurses\", proto = \"udp\", port = 6000 },");
        }
        let mut text = lab::policy(&extra).replacen(
            "[settings]\n",
            "[settings]\nmanagement = [\"servers\"]\ndns_refresh = \"1s\"\n",
            1,
        );
        if self.spare {
            text.push_str(&format!(
                "\n[[device]]\nname = \"{SPARE}\"\nvlan = 120\nip = [\"{SPARE_IP}\"]\n"
            ));
        }
        text
    }
}

/// Policy files the daemon must refuse, each built from a valid one.
fn invalid_policies(valid: &str) -> Vec<(&'static str, String)> {
    let udp = "from = \"nurses\", proto = \"udp\", port = \"5000-5010\"";
    vec![
        ("TOML syntax", format!("{valid}\n[[device]\nname = \"broken\n")),
        ("unknown peer set", valid.replacen(udp, &udp.replace("\"nurses\"", "\"wards\""), 1)),
        ("port out of range", valid.replacen(udp, &udp.replace("5010", "70000"), 1)),
        (
            "duplicate device",
            format!("{valid}\n[[device]]\nname = \"pump\"\nvlan = 110\nip = [\"10.110.0.8\"]\n"),
        ),
        (
            "address outside the VLAN",
            format!("{valid}\n[[device]]\nname = \"stray\"\nvlan = 120\nip = [\"10.99.0.1\"]\n"),
        ),
        ("a name that never resolves", valid.replacen(STATION, "nowhere.lab.test", 1)),
    ]
}

/// A change of the model: datagrams of a stream whose verdict it changes,
/// sent from `start` to `end` (since the soak's start), are not judged.
struct Change {
    start: Duration,
    end: Duration,
    before: Model,
    after: Model,
}

struct Timeline {
    initial: Model,
    changes: Vec<Change>,
    /// The longest window.
    longest: Duration,
}

impl Timeline {
    fn push(&mut self, c: Change) {
        self.longest = self.longest.max(c.end.saturating_sub(c.start));
        self.changes.push(c);
    }

    /// Whether `flow`'s datagram sent at `t` must arrive; `None`: sent in
    /// the window of a change of its verdict.
    fn expected(&self, flow: Flow, t: Duration) -> Option<bool> {
        let i = self.changes.partition_point(|c| c.start <= t);
        // Changes are made one after another: only the last few can hold t.
        let open = self.changes[..i]
            .iter()
            .rev()
            .take_while(|c| t.saturating_sub(c.start) <= self.longest)
            .any(|c| t <= c.end && c.before.allows(flow) != c.after.allows(flow));
        if open {
            return None;
        }
        let model = if i == 0 { self.initial } else { self.changes[i - 1].after };
        Some(model.allows(flow))
    }
}

/// Resident memory (kB) and open descriptors of `pid`.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// One daemon process: which build, when it started, its usage samples.
struct Incarnation {
    build: &'static str,
    started: Instant,
    /// Right after it applied the policy.
    at_start: Option<(u64, u64)>,
    /// `WARMUP` after that: the reference of the bound.
    warm: Option<(u64, u64)>,
    /// Last, before it was stopped.
    last: Option<(u64, u64)>,
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Soak<'a> {
    lab: &'a mut Lab,
    dns: &'a Dns,
    t0: Instant,
    model: Model,
    timeline: Timeline,
    rng: StdRng,
    counts: BTreeMap<&'static str, u32>,
    /// Every apply through the CLI (allow, revoke, device, policy apply).
    applies: Vec<Duration>,
    /// Every refused (invalid) policy apply.
    refusals: Vec<Duration>,
    /// Changes made through the CLI (each must be in the audit log).
    cli_changes: u64,
    /// Every SIGHUP reload, as the daemon logs its time.
    reloads: Vec<Duration>,
    bin: PathBuf,
    /// Each daemon's start, to its first apply.
    starts: Vec<Duration>,
    incarnations: Vec<Incarnation>,
    revision: u64,
    failures: Vec<String>,
}

impl Soak<'_> {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn count(&mut self, op: &'static str) {
        *self.counts.entry(op).or_default() += 1;
    }

    fn fail(&mut self, what: String) {
        eprintln!("soak: FAILED at {:.1} s: {what}", self.now().as_secs_f64());
        self.failures.push(what);
    }

    fn cli(&self, args: &[&str]) -> (Output, Duration) {
        let t = Instant::now();
        let out = self.lab.cli(args);
        (out, t.elapsed())
    }

    fn revision(&self) -> Option<u64> {
        let out = self.lab.cli(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        json["revision"].as_u64()
    }

    /// Runs a command that moves the model to `after`; `apply`: it applies
    /// a policy (its time is an apply latency).
    fn change(&mut self, op: &'static str, after: Model, args: &[&str], apply: bool) {
        let start = self.now().saturating_sub(PRE_GRACE);
        let (out, took) = self.cli(args);
        let end = self.now() + GRACE;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            self.fail(format!("`{}` failed ({}): {err}", args.join(" "), out.status));
            return;
        }
        self.count(op);
        self.cli_changes += 1;
        if apply {
            self.applies.push(took);
        }
        self.timeline.push(Change { start, end, before: self.model, after });
        self.model = after;
    }

    /// The log of the daemon started last.
    fn log_path(&self) -> PathBuf {
        let n = fs::read_dir(&self.lab.dir).map_or(0, |d| {
            d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("daemon-")).count()
        });
        self.lab.dir.join(format!("daemon-{}.log", n.saturating_sub(1)))
    }

    /// Waits (bounded) for a line starting with `prefix` in the daemon's
    /// log after byte `from`; returns it.
    fn wait_for_log(&self, from: u64, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + LOG_WAIT;
        while Instant::now() < deadline {
            let mut text = String::new();
            if let Ok(mut f) = fs::File::open(self.log_path()) {
                let _ = f.seek(SeekFrom::Start(from));
                let _ = f.read_to_string(&mut text);
            }
            if let Some(line) = text.lines().find(|l| l.contains(prefix)) {
                return Some(line.to_string());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log_len(&self) -> u64 {
        fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    fn sample(&mut self) {
        let Some(pid) = self.lab.daemon_pid() else { return };
        let Some(u) = usage(pid) else { return };
        if let Some(inc) = self.incarnations.last_mut() {
            if inc.warm.is_none() && inc.started.elapsed() >= WARMUP {
                inc.warm = Some(u);
            }
            inc.last = Some(u);
        }
    }

    /// Starts `bin` (the lab waits for its first apply); false on failure.
    fn start_daemon(&mut self, build: &'static str) -> bool {
        let bin = self.bin.clone();
        let t = Instant::now();
        let lab = &mut *self.lab;
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| lab.start_daemon_as(&bin)));
        let log = match started {
            Ok(log) => log,
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.fail(format!("the daemon ({build}) did not start: {why}"));
                return false;
            }
        };
        self.starts.push(t.elapsed());
        let at_start = self.lab.daemon_pid().and_then(usage);
        self.incarnations.push(Incarnation {
            build,
            started: Instant::now(),
            at_start,
            warm: None,
            last: at_start,
        });
        if build == "second" && !log.contains("replaced the pinned program") {
            self.fail(format!("the second build did not replace the pinned program:\n{log}"));
        }
        match self.revision() {
            Some(r) if r > self.revision => self.revision = r,
            r => self.fail(format!("revision after a start: {r:?}, before {}", self.revision)),
        }
        true
    }

    fn kill9(&mut self) -> bool {
        self.sample();
        self.count("kill -9 + restart");
        self.lab.stop_daemon(libc::SIGKILL);
        let down = Duration::from_millis(self.rng.random_range(0..500));
        thread::sleep(down);
        self.start_daemon("first")
    }

    fn upgrade(&mut self, variant: &Path) -> bool {
        self.sample();
        self.count("upgrade");
        self.lab.stop_daemon(libc::SIGTERM);
        self.bin = variant.to_path_buf();
        self.start_daemon("second")
    }

    /// One random operation.
    fn random_op(&mut self) {
        let m = self.model;
        // Blocks and quarantines are lifted soon (half the time, the next
        // operation), so the streams they cut flow most of the run.
        let roll = if m.blocked && self.rng.random_bool(0.5) {
            32
        } else if m.quarantined && self.rng.random_bool(0.5) {
            42
        } else {
            self.rng.random_range(0..100)
        };
        match roll {
            0..20 => {
                let rule = ["pump", "in", "nurses", "--proto", "udp", "--port", "6000"];
                let (op, verb) = if m.rule { ("revoke", "revoke") } else { ("allow", "allow") };
                let args: Vec<&str> = std::iter::once(verb).chain(rule).collect();
                self.change(op, Model { rule: !m.rule, ..m }, &args, true);
            }
            20..32 => {
                let after = Model { spare: !m.spare, ..m };
                if m.spare {
                    self.change("device remove", after, &["device", "remove", SPARE], true);
                } else {
                    let args = ["device", "add", SPARE, "--vlan", "120", "--ip", SPARE_IP];
                    self.change("device add", after, &args, true);
                }
            }
            32..42 => {
                let after = Model { blocked: !m.blocked, ..m };
                if m.blocked {
                    self.change("unblock", after, &["unblock", NURSE], false);
                } else {
                    let args = ["block", NURSE, "--for", "1h", "--reason", "soak"];
                    self.change("block", after, &args, false);
                }
            }
            42..52 => {
                let after = Model { quarantined: !m.quarantined, ..m };
                if m.quarantined {
                    self.change("release", after, &["release", "pump"], false);
                } else {
                    let args = ["quarantine", "pump", "--for", "1h", "--reason", "soak"];
                    self.change("quarantine", after, &args, false);
                }
            }
            52..67 => {
                // A valid file: the toggled rule flipped, the spare device
                // sometimes too.
                let spare = if self.rng.random_bool(0.3) { !m.spare } else { m.spare };
                let after = Model { rule: !m.rule, spare, ..m };
                let file = self.lab.dir.join("apply.toml");
                fs::write(&file, after.policy()).expect("write the policy to apply");
                let file = file.to_string_lossy().into_owned();
                self.change("policy apply (valid)", after, &["policy", "apply", &file], true);
            }
            67..79 => self.invalid_apply(),
            79..89 => self.sighup(),
            _ => self.dns_move(),
        }
    }

    fn invalid_apply(&mut self) {
        let cases = invalid_policies(&self.model.policy());
        let (what, text) = &cases[self.rng.random_range(0..cases.len())];
        let file = self.lab.dir.join("invalid.toml");
        fs::write(&file, text).expect("write the invalid policy");
        let before = fs::read(&self.lab.policy_file).unwrap_or_default();
        let (out, took) = self.cli(&["policy", "apply", &file.to_string_lossy()]);
        if out.status.code() != Some(1) {
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            self.fail(format!("an invalid policy ({what}) was not refused: {}: {err}", out.status));
            return;
        }
        self.count("policy apply (invalid)");
        self.refusals.push(took);
        if fs::read(&self.lab.policy_file).unwrap_or_default() != before {
            self.fail(format!("a refused policy ({what}) changed the policy file"));
        }
        match self.revision() {
            Some(r) if r >= self.revision => self.revision = r,
            r => self.fail(format!("revision went back: {r:?} after {}", self.revision)),
        }
    }

    fn sighup(&mut self) {
        let Some(pid) = self.lab.daemon_pid() else { return };
        let from = self.log_len();
        // SAFETY: kill(2) on the daemon we spawned and have not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        match self.wait_for_log(from, "SIGHUP: ") {
            Some(line) if line.contains("applied as revision") => {
                self.count("SIGHUP");
                // "SIGHUP: FILE applied as revision N in M ms"
                let took = line.rsplit_once(" in ").and_then(|(_, t)| t.strip_suffix(" ms"));
                if let Some(took) = took.and_then(|t| t.trim().parse().ok()) {
                    self.reloads.push(Duration::from_millis(took));
                }
            }
            Some(line) => self.fail(format!("SIGHUP: {line}")),
            None => self.fail(format!("SIGHUP: nothing logged within {LOG_WAIT:?}")),
        }
    }

    /// Moves `station.lab.test` (to the nurse or away); the change lasts
    /// until the daemon logs that its DNS refresh applied it.
    fn dns_move(&mut self) {
        let after = Model { named_nurse: !self.model.named_nurse, ..self.model };
        let from = self.log_len();
        let start = self.now().saturating_sub(PRE_GRACE);
        self.dns.set(STATION, if after.named_nurse { NURSE } else { ELSEWHERE });
        let Some(line) = self.wait_for_log(from, "DNS refresh: ") else {
            self.fail(format!("DNS refresh: no change logged within {LOG_WAIT:?}"));
            return;
        };
        let end = self.now() + GRACE;
        if !line.contains("applied as revision") {
            self.fail(format!("DNS refresh: {line}"));
            return;
        }
        self.count(if after.named_nurse { "DNS move (back)" } else { "DNS move (away)" });
        self.timeline.push(Change { start, end, before: self.model, after });
        self.model = after;
    }
}

/// Sends each of `flows` (from one namespace) paced by `TICK` until
/// `stop` or `limit`; per flow, each datagram's send time (µs since `t0`;
/// `u64::MAX`: the send failed).
fn send(flows: Vec<Flow>, t0: Instant, stop: Arc<AtomicBool>, limit: Duration) -> SendTimes {
    let socks: Vec<UdpSocket> = flows
        .iter()
        .map(|f| {
            let any = if f.v6() { "::" } else { "0.0.0.0" };
            UdpSocket::bind((any, f.source_port())).expect("bind sender")
        })
        .collect();
    let dsts: Vec<_> = flows.iter().map(|f| socket_addr(f.dst(), f.port())).collect();
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); flows.len()];
    let start = Instant::now();
    let mut next = start;
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else if now - next > Duration::from_millis(50) {
            // Descheduled: no burst beyond 50 ms of catching up.
            next = now;
        }
        for (i, f) in flows.iter().enumerate() {
            if tick.is_multiple_of(f.every()) {
                let seq = times[i].len() as u32;
                let mut payload = [0u8; 16];
                payload[0] = f.id();
                payload[1..5].copy_from_slice(&seq.to_be_bytes());
                let sent = socks[i].send_to(&payload, dsts[i]).is_ok();
                times[i].push(if sent { t0.elapsed().as_micros() as u64 } else { u64::MAX });
            }
        }
        tick += 1;
        next += TICK;
    }
    times
}

/// Per stream of a sender, each datagram's send time (see `send`).
type SendTimes = Vec<Vec<u64>>;
/// A receiver's sequence numbers and its namespace's overflows.
type Received = (Vec<u32>, u64);

/// The namespace's UDP receive-buffer overflows, IPv4 and IPv6
/// (/proc/net/snmp, /proc/net/snmp6).
fn rcvbuf_errors() -> u64 {
    let text = fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let v4 = match (udp.next(), udp.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "RcvbufErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let text = fs::read_to_string("/proc/thread-self/net/snmp6").unwrap_or_default();
    let v6 = text
        .lines()
        .find_map(|l| l.strip_prefix("Udp6RcvbufErrors"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    v4 + v6
}

/// Receives `flow`'s datagrams until `stop` (and 200 ms without one) or
/// `limit`; the sequence numbers seen, and the namespace's receive-buffer
/// overflows.
fn receive(flow: Flow, stop: Arc<AtomicBool>, limit: Duration) -> Received {
    let any = if flow.v6() { "::" } else { "0.0.0.0" };
    let sock = UdpSocket::bind((any, flow.port())).expect("bind receiver");
    // 8 MiB: seconds of the stream, whatever the scheduler does to us.
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket we own with a pointer to an int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while start.elapsed() < limit {
        match sock.recv(&mut buf) {
            Ok(5..) if buf[0] == flow.id() => {
                seen.push(u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]));
            }
            Ok(_) => {}
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    (seen, rcvbuf_errors())
}

#[derive(Default)]
struct FlowReport {
    sent: u64,
    must_arrive: u64,
    lost: u64,
    must_not: u64,
    delivered: u64,
    in_windows: u64,
    in_windows_arrived: u64,
    /// The first few offenders: (sequence, send time in s).
    examples: Vec<(u32, f64)>,
}

fn judge(flow: Flow, times: &[u64], seen: &[u32], timeline: &Timeline) -> FlowReport {
    let mut got = vec![false; times.len()];
    for &s in seen {
        if let Some(g) = got.get_mut(s as usize) {
            *g = true;
        }
    }
    let mut r = FlowReport::default();
    for (seq, (&t, &arrived)) in times.iter().zip(&got).enumerate() {
        if t == u64::MAX {
            continue;
        }
        r.sent += 1;
        let t = Duration::from_micros(t);
        let bad = match timeline.expected(flow, t) {
            None => {
                r.in_windows += 1;
                r.in_windows_arrived += u64::from(arrived);
                false
            }
            Some(true) => {
                r.must_arrive += 1;
                r.lost += u64::from(!arrived);
                !arrived
            }
            Some(false) => {
                r.must_not += 1;
                r.delivered += u64::from(arrived);
                arrived
            }
        };
        if bad && r.examples.len() < 5 {
            r.examples.push((seq as u32, t.as_secs_f64()));
        }
    }
    r
}

struct Args {
    seconds: u64,
    seed: u64,
    variant: PathBuf,
    /// Where to keep the daemons' logs and the audit log.
    logs: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut seconds = 60;
    let mut seed = None;
    let mut variant = std::env::var_os("VLANGUARD_VARIANT_BIN").map(PathBuf::from);
    let mut logs = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = value()?.parse()?,
            "--minutes" => seconds = value()?.parse::<u64>()? * 60,
            "--seed" => seed = Some(value()?.parse()?),
            "--variant" => variant = Some(value()?.into()),
            "--logs" => logs = Some(PathBuf::from(value()?)),
            _ => bail!(
                "usage: soak [--seconds N | --minutes N] [--seed S] [--variant PATH] [--logs DIR]"
            ),
        }
    }
    if seconds < 20 {
        bail!("a soak runs at least 20 s");
    }
    let variant = variant.context("the second build: --variant PATH or VLANGUARD_VARIANT_BIN")?;
    if !variant.exists() {
        bail!("{} is missing (cargo xtask soak builds it)", variant.display());
    }
    let seed = seed.unwrap_or_else(|| rand::rng().random());
    Ok(Args { seconds, seed, variant, logs })
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("soak: run as root (the lab creates namespaces and attaches XDP)");
        return ExitCode::from(2);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, interrupted as *const () as libc::sighandler_t) };
    }
    let failures = soak(&args);
    if failures.is_empty() {
        println!("soak: PASSED");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAILED ({} invariant(s) broken):", failures.len());
        for f in &failures {
            println!("  - {f}");
        }
        ExitCode::FAILURE
    }
}

/// The soak; the invariants it saw broken. Everything it made (lab,
/// daemon, pins, DNS server, threads) is gone when it returns.
fn soak(args: &Args) -> Vec<String> {
    let duration = Duration::from_secs(args.seconds);
    // Every thread stops by itself within this, whatever happens.
    let limit = duration + Duration::from_secs(120);
    println!(
        "soak: {} s, seed {}, daemon {} then {}",
        args.seconds,
        args.seed,
        lab::vlanguard_bin().display(),
        args.variant.display()
    );
    let mut lab = Lab::new();
    let prefix = lab.prefix.clone();
    let initial = Model { rule: true, named_nurse: true, ..Model::default() };
    fs::write(&lab.policy_file, initial.policy()).expect("write the policy");
    let dns = Dns::start_for(&lab, "r", &[(STATION, NURSE)], limit);
    lab.resolv_conf("r", "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n");

    let mut s = Soak {
        lab: &mut lab,
        dns: &dns,
        t0: Instant::now(),
        model: initial,
        timeline: Timeline { initial, changes: Vec::new(), longest: Duration::ZERO },
        rng: StdRng::seed_from_u64(args.seed),
        counts: BTreeMap::new(),
        applies: Vec::new(),
        refusals: Vec::new(),
        reloads: Vec::new(),
        cli_changes: 0,
        bin: lab::vlanguard_bin(),
        starts: Vec::new(),
        incarnations: Vec::new(),
        revision: 0,
        failures: Vec::new(),
    };
    let mut report = String::new();
    if s.start_daemon("first") {
        report = run(&mut s, args, duration, limit);
    }
    let mut failures = std::mem::take(&mut s.failures);
    drop(s);
    println!("{report}");
    lab.stop_daemon(libc::SIGTERM);
    // The daemons' logs: no panic; kept in --logs if asked.
    let mut logs: Vec<PathBuf> =
        fs::read_dir(&lab.dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    logs.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("daemon-")));
    logs.sort();
    for log in &logs {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
            failures.push(format!("{}: {line}", log.display()));
        }
    }
    if let Some(keep) = &args.logs {
        // Only what an earlier soak left there.
        for old in fs::read_dir(keep).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if name == "audit.log" || (name.starts_with("daemon-") && name.ends_with(".log")) {
                let _ = fs::remove_file(old.path());
            }
        }
        let kept = fs::create_dir_all(keep).is_ok()
            && logs.iter().chain([&lab.audit_log]).all(|p| {
                p.file_name().is_none_or(|n| !p.exists() || fs::copy(p, keep.join(n)).is_ok())
            });
        if kept {
            println!("soak: the daemons' logs and the audit log are in {}", keep.display());
        } else {
            eprintln!("soak: could not keep the logs in {}", keep.display());
        }
    }
    drop(dns);
    drop(lab);
    // The lab's Drop removed its namespaces, pins and directory.
    let left = Command::new("ip").args(["netns", "list"]).output().map_or_else(
        |_| String::new(),
        |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{prefix}-")))
                .map(str::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    if !left.is_empty() {
        failures.push(format!("namespaces left behind: {left}"));
    }
    if Path::new(&format!("/run/vlanguard-test/{prefix}")).exists() {
        failures.push(format!("/run/vlanguard-test/{prefix} left behind"));
    }
    failures
}

/// Traffic and operations for `duration`; the report.
fn run(s: &mut Soak<'_>, args: &Args, duration: Duration, limit: Duration) -> String {
    let stop_rx = Arc::new(AtomicBool::new(false));
    let stop_tx = Arc::new(AtomicBool::new(false));
    let receivers: Vec<(Flow, JoinHandle<Received>)> = Flow::ALL
        .iter()
        .map(|&f| {
            let stop = stop_rx.clone();
            (f, s.lab.in_ns(f.receiver(), move || receive(f, stop, limit)))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    s.t0 = Instant::now();
    let senders: Vec<(Vec<Flow>, JoinHandle<SendTimes>)> = ["nurse", "pump"]
        .iter()
        .map(|&role| {
            let flows: Vec<Flow> = Flow::ALL.into_iter().filter(|f| f.sender() == role).collect();
            let (stop, t0, fl) = (stop_tx.clone(), s.t0, flows.clone());
            (flows, s.lab.in_ns(role, move || send(fl, t0, stop, limit)))
        })
        .collect();

    // Operations: kills in the first half, the upgrade at half time.
    let half = duration / 2;
    let mut next_kill = Duration::from_secs(s.rng.random_range(8..15));
    let mut upgraded = false;
    let max_ops = args.seconds * 20;
    let mut ops = 0;
    let mut progress = Duration::from_secs(60);
    while s.now() < duration && ops < max_ops && s.failures.is_empty() {
        if s.now() >= progress {
            eprintln!("soak: {} s, {ops} operations", progress.as_secs());
            progress += Duration::from_secs(60);
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            s.fail("interrupted".into());
            break;
        }
        ops += 1;
        let now = s.now();
        if !upgraded && now >= half {
            upgraded = true;
            if !s.upgrade(&args.variant) {
                break;
            }
        } else if !upgraded && now >= next_kill {
            next_kill = now + Duration::from_secs(s.rng.random_range(8..15));
            if !s.kill9() {
                break;
            }
        } else {
            s.random_op();
        }
        if !s.lab.daemon_running() {
            s.fail(format!("the daemon exited:\n{}", s.lab.daemon_log()));
            break;
        }
        s.sample();
        thread::sleep(Duration::from_millis(s.rng.random_range(100..400)));
    }
    if !upgraded && s.failures.is_empty() {
        s.fail("the run ended before the upgrade".into());
    }
    s.sample();

    // Drain: the senders stop, what is in flight arrives.
    thread::sleep(Duration::from_millis(300));
    stop_tx.store(true, Ordering::Relaxed);
    let mut times = BTreeMap::new();
    for (flows, h) in senders {
        match h.join() {
            Ok(t) => {
                for (f, t) in flows.into_iter().zip(t) {
                    times.insert(f as u8, t);
                }
            }
            Err(_) => s.fail("a sender panicked".into()),
        }
    }
    thread::sleep(Duration::from_secs(1));
    stop_rx.store(true, Ordering::Relaxed);
    let mut overflows = BTreeMap::new();
    let mut out = String::new();
    let mut lost = 0;
    let mut delivered = 0;
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str, g: &str| {
        format!("  {a:<30} {b:>9} {c:>12} {d:>6} {e:>12} {f:>9} {g:>16}\n")
    };
    out.push_str(&row(
        "stream",
        "sent",
        "must arrive",
        "lost",
        "must not",
        "arrived",
        "windows (arrived)",
    ));
    for (f, h) in receivers {
        let Ok((seen, overflow)) = h.join() else {
            s.fail("a receiver panicked".into());
            continue;
        };
        overflows.insert(f.receiver(), overflow);
        let Some(t) = times.get(&(f as u8)) else { continue };
        let r = judge(f, t, &seen, &s.timeline);
        lost += r.lost;
        delivered += r.delivered;
        out.push_str(&row(
            f.name(),
            &r.sent.to_string(),
            &r.must_arrive.to_string(),
            &r.lost.to_string(),
            &r.must_not.to_string(),
            &r.delivered.to_string(),
            &format!("{} ({})", r.in_windows, r.in_windows_arrived),
        ));
        if !r.examples.is_empty() {
            s.fail(format!(
                "{}: {} lost, {} delivered against the policy; first (seq, sent at s): {:?}",
                f.name(),
                r.lost,
                r.delivered,
                r.examples
            ));
        }
    }
    let mut head = format!(
        "soak report ({:.0} s of traffic, seed {}):\n  allowed datagrams lost: {lost} \
         (must be 0); denied datagrams delivered: {delivered} (must be 0)\n",
        s.now().as_secs_f64(),
        args.seed
    );
    head.push_str(&out);
    head.push_str(&format!(
        "  windows: {} ms before a change's command (or DNS move) to {} ms after; {} changes\n",
        PRE_GRACE.as_millis(),
        GRACE.as_millis(),
        s.timeline.changes.len()
    ));
    for (ns, n) in &overflows {
        if *n > 0 {
            s.fail(format!("{n} datagrams overflowed receive buffers in {ns}: losses unexplained"));
        }
    }
    head.push_str(&format!("  receive-buffer overflows: {overflows:?}\n"));

    let mut applies = s.applies.clone();
    applies.sort();
    let mut refusals = s.refusals.clone();
    refusals.sort();
    head.push_str(&format!(
        "  applies through the CLI: {}, latency median {}, p90 {}, max {}\n",
        applies.len(),
        ms(percentile(&applies, 50)),
        ms(percentile(&applies, 90)),
        ms(percentile(&applies, 100))
    ));
    head.push_str(&format!(
        "  invalid applies refused: {}, latency median {}, max {}\n",
        refusals.len(),
        ms(percentile(&refusals, 50)),
        ms(percentile(&refusals, 100))
    ));
    let mut reloads = s.reloads.clone();
    reloads.sort();
    head.push_str(&format!(
        "  SIGHUP reloads (the daemon's own time): {}, median {}, max {}\n",
        reloads.len(),
        ms(percentile(&reloads, 50)),
        ms(percentile(&reloads, 100))
    ));
    let mut starts = s.starts.clone();
    starts.sort();
    head.push_str(&format!(
        "  daemon starts (to the first apply): {}, median {}, max {}\n",
        starts.len(),
        ms(percentile(&starts, 50)),
        ms(percentile(&starts, 100))
    ));
    let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    head.push_str(&format!("  operations: {}\n", counts.join(", ")));

    // The audit log: every change and every refusal, the applies timed.
    let audit = fs::read_to_string(&s.lab.audit_log).unwrap_or_default();
    let (mut ok, mut refused) = (0, 0);
    let mut timed = Vec::new();
    for line in audit.lines() {
        let Ok(rec) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if rec["ok"] == true {
            ok += 1;
            let applied = rec["result"].as_str().is_some_and(|r| r.contains("applied as revision"));
            if let (true, Some(took)) = (applied, rec["took_ms"].as_u64()) {
                timed.push(Duration::from_millis(took));
            }
        } else {
            refused += 1;
        }
    }
    timed.sort();
    head.push_str(&format!(
        "  audit log: {ok} changes, {refused} refusals; applies as it times them: {}, \
         median {}, max {}\n",
        timed.len(),
        ms(percentile(&timed, 50)),
        ms(percentile(&timed, 100))
    ));
    if ok != s.cli_changes || refused != s.refusals.len() as u64 {
        s.fail(format!(
            "the audit log holds {ok} changes and {refused} refusals; the soak made {} and {}",
            s.cli_changes,
            s.refusals.len()
        ));
    }

    // Final state: the blocklist as the model says.
    let blocks = String::from_utf8_lossy(&s.lab.cli(&["blocks"]).stdout).into_owned();
    if blocks.contains("10.30.1.1/32") != s.model.blocked
        || blocks.contains("pump") != s.model.quarantined
    {
        s.fail(format!("blocks disagree with the soak's model {:?}:\n{blocks}", s.model));
    }

    // Memory and descriptors.
    let fmt = |u: Option<(u64, u64)>| {
        u.map_or("-".into(), |(rss, fds)| format!("{:.1} MiB / {fds} fds", rss as f64 / 1024.0))
    };
    let first = s.incarnations.first().map(|i| i.at_start).unwrap_or_default();
    let last = s.incarnations.last().and_then(|i| i.last);
    head.push_str(&format!(
        "  daemon RSS / descriptors: first daemon at start {}, last daemon at end {} \
         ({} daemons; bound per daemon: {} MiB and {FD_SLACK} fds over its sample {} s in)\n",
        fmt(first),
        fmt(last),
        s.incarnations.len(),
        RSS_SLACK_KB / 1024,
        WARMUP.as_secs()
    ));
    let mut broken = Vec::new();
    for (k, inc) in s.incarnations.iter().enumerate() {
        if let (Some((r0, f0)), Some((r1, f1))) = (inc.warm, inc.last)
            && (r1 > r0 + RSS_SLACK_KB || f1 > f0 + FD_SLACK)
        {
            broken
                .push(format!("daemon {k} ({}): RSS {r0} -> {r1} kB, fds {f0} -> {f1}", inc.build));
        }
        if k == s.incarnations.len() - 1 || k == 0 {
            head.push_str(&format!(
                "    daemon {k} ({} build): start {}, warm {}, last {}\n",
                inc.build,
                fmt(inc.at_start),
                fmt(inc.warm),
                fmt(inc.last)
            ));
        }
    }
    for b in broken {
        s.fail(format!("memory or descriptors beyond the bound: {b}"));
    }
    head
}
