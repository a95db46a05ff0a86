//! End to end on veth: a bounded UDP flood from one namespace into another,
//! dropped at the receiver by vlanguard (native XDP, the real daemon with a
//! 10,000-device policy), xdp-filter (native XDP), an nftables rule at the
//! netdev ingress hook, an iptables rule in raw PREROUTING, or not filtered
//! at all; and the daemon's memory at 10,000 and 100,000 devices.
//!
//! The flood (`flood`, XDP live frames) runs on CPU 0 for a fixed time; the
//! receiver's NAPI runs threaded, pinned to CPU 1, so the receiver's work is
//! that thread's CPU time. Each method is measured by what the receiver
//! took off the veth ring per second and the receiver CPU time per packet.
//! veth numbers compare methods on one machine, not NICs.
//!
//! Run through `cargo xtask bench` (root needed). Writes e2e.{md,csv}
//! under target/bench/.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use vlanguard_tests::{
    lab::{Lab, sh},
    privileged, sample, scale,
};

const SECONDS: &str = "5";
const SENDER_CPU: &str = "0";
const RECEIVER_CPU: usize = 1;
/// A nurse station flooding a pump (scale::device_ip(6)) on a port the
/// policy does not allow.
const SOURCE: &str = "10.30.1.1";
const TARGET: &str = "10.110.0.7";
const PORT: &str = "7777";
/// The hospital-sized policy of the vlanguard run.
const DEVICES: usize = 10_000;

/// What the receiver had done at one moment.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// Frames taken off the veth ring by the receiver's NAPI.
    received: u64,
    /// Of those, dropped by an XDP program.
    xdp_drops: u64,
    /// CPU time of the receiver's NAPI thread.
    cpu_ns: u64,
}

struct Row {
    method: &'static str,
    sent: u64,
    received: u64,
    dropped: u64,
    cpu_ns: u64,
}

fn main() -> Result<()> {
    if !privileged() {
        bail!("the end-to-end benchmark needs root");
    }
    let flood = vlanguard_tests::lab::built_next_to_tests("flood");
    let lab = &mut Lab::pair();
    let (r, snd) = (lab.ns("r"), lab.ns("snd"));
    let in_r = |args: &[&str]| sh(Command::new("ip").args(["netns", "exec", &r]).args(args));
    in_r(&["ip", "addr", "add", &format!("{TARGET}/15"), "dev", "uplink"]);
    // GRO gives the veth a NAPI instance without XDP, so every method
    // receives through the same path; threaded, it runs in a kernel
    // thread we can pin and time.
    in_r(&["ethtool", "-K", "uplink", "gro", "on"]);
    in_r(&["sh", "-c", "echo 1 > /sys/class/net/uplink/threaded"]);
    let mac = |ns: &str, dev: &str| -> String {
        let out = sh(Command::new("ip")
            .args(["netns", "exec", ns, "cat"])
            .arg(format!("/sys/class/net/{dev}/address")));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (src_mac, dst_mac) = (mac(&snd, "eth0"), mac(&r, "uplink"));

    let run_flood = |lab: &Lab| -> Result<(u64, Sample)> {
        let napi = napi_thread()?;
        vlanguard_tests::pin_to_cpu(napi, RECEIVER_CPU)
            .with_context(|| format!("pinning thread {napi} to CPU {RECEIVER_CPU}"))?;
        let before = receiver(lab, napi)?;
        let out = sh(Command::new("ip")
            .args(["netns", "exec", &lab.ns("snd")])
            .arg(&flood)
            .args(["eth0", &src_mac, &dst_mac, SOURCE, TARGET, PORT, SECONDS, SENDER_CPU]));
        let after = receiver(lab, napi)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let sent = text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("flood said {text:?}"))?;
        Ok((
            sent,
            Sample {
                received: after.received - before.received,
                xdp_drops: after.xdp_drops - before.xdp_drops,
                cpu_ns: after.cpu_ns - before.cpu_ns,
            },
        ))
    };

    let mut rows = Vec::new();
    // No filter: the stack takes the datagrams (no socket on the port).
    let (sent, s) = run_flood(lab)?;
    rows.push(Row {
        method: "no filter (delivered to the stack)",
        sent,
        received: s.received,
        dropped: 0,
        cpu_ns: s.cpu_ns,
    });

    let rule = format!(
        "table netdev vlanguard_bench {{\n  chain ingress {{\n    \
         type filter hook ingress device \"uplink\" priority 0;\n    \
         ip daddr {TARGET} udp dport {PORT} counter drop\n  }}\n}}\n"
    );
    nft(&r, &rule)?;
    let (sent, s) = run_flood(lab)?;
    let listing = String::from_utf8_lossy(&in_r(&["nft", "list", "ruleset"]).stdout).to_string();
    let dropped = counter_after(&listing, "counter packets")?;
    rows.push(Row {
        method: "nftables, netdev ingress",
        sent,
        received: s.received,
        dropped,
        cpu_ns: s.cpu_ns,
    });
    in_r(&["nft", "delete", "table", "netdev", "vlanguard_bench"]);

    let ipt_rule = ["-i", "uplink", "-p", "udp", "-d", TARGET, "--dport", PORT, "-j", "DROP"];
    in_r(&[&["iptables", "-t", "raw", "-A", "PREROUTING"][..], &ipt_rule].concat());
    let (sent, s) = run_flood(lab)?;
    let listing = String::from_utf8_lossy(
        &in_r(&["iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"]).stdout,
    )
    .to_string();
    let dropped = listing
        .lines()
        .find(|l| l.contains("DROP"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("iptables counter")?;
    rows.push(Row {
        method: "iptables (nft backend), raw PREROUTING",
        sent,
        received: s.received,
        dropped,
        cpu_ns: s.cpu_ns,
    });
    in_r(&[&["iptables", "-t", "raw", "-D", "PREROUTING"][..], &ipt_rule].concat());

    // xdp-filter (Debian's xdp-tools), native XDP, deny policy: the
    // flood matches no entry and is dropped after its address and port
    // lookups. What any XDP filter costs on this path.
    in_r(&["sh", "-c", "mount -t bpf bpf /sys/fs/bpf && xdp-filter load -m native -p deny uplink"]);
    let (sent, s) = run_flood(lab)?;
    rows.push(Row {
        method: "xdp-filter, native XDP (deny policy)",
        sent,
        received: s.received,
        dropped: s.xdp_drops,
        cpu_ns: s.cpu_ns,
    });
    in_r(&["ip", "link", "set", "uplink", "xdp", "off"]);

    // The ceiling: an XDP program that drops every frame and does nothing
    // else, native, held attached by a thread in the router's namespace.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let holder = lab.in_ns("r", move || {
        let attached = (|| -> Result<aya::Ebpf> {
            let mut obj = aya::Ebpf::load(filter_user::test_objects::BENCH_OBJECT)?;
            let prog: &mut aya::programs::Xdp =
                obj.program_mut("drop_all").context("drop_all")?.try_into()?;
            prog.load()?;
            prog.attach("uplink", aya::programs::XdpMode::Driver)?;
            Ok(obj)
        })();
        match attached {
            Ok(obj) => {
                let _ = ready_tx.send(Ok(()));
                // Held until the flood is over; dropping it detaches.
                let _ = stop_rx.recv_timeout(std::time::Duration::from_secs(120));
                drop(obj);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
            }
        }
    });
    ready_rx.recv().context("drop_all holder")?.map_err(anyhow::Error::msg)?;
    let (sent, s) = run_flood(lab)?;
    let _ = stop_tx.send(());
    let _ = holder.join();
    rows.push(Row {
        method: "trivial XDP_DROP, native (the ceiling)",
        sent,
        received: s.received,
        dropped: s.xdp_drops,
        cpu_ns: s.cpu_ns,
    });

    // vlanguard: the real daemon, native XDP, hospital-sized policy. Its
    // memory is measured on the way.
    let mut memory = Vec::new();
    fs::write(&lab.policy_file, scale::policy_toml(DEVICES))?;
    memory.push(start_and_measure(lab, DEVICES)?);
    let (sent, s) = run_flood(lab)?;
    let text = lab.scrape();
    let counted =
        sample(&text, "vlanguard_frames_total", &["verdict=\"drop\"", "reason=\"not-allowed\""]);
    if (counted as u64) < s.xdp_drops {
        bail!("vlanguard counted {counted} not-allowed drops, the veth {} XDP drops", s.xdp_drops);
    }
    rows.push(Row {
        method: "vlanguard, native XDP (10,000 devices)",
        sent,
        received: s.received,
        dropped: s.xdp_drops,
        cpu_ns: s.cpu_ns,
    });
    let _ = lab.cli(&["detach"]);
    lab.stop_daemon(libc::SIGTERM);

    // The same daemon on a port whose NIC takes VLAN tags out of frames
    // (rx VLAN offload on): it enforces there at TC ingress
    // (`--vlan-offload=read`), after the kernel built a socket buffer.
    // What that path costs next to XDP.
    lab.ethtool("r", "uplink", "rxvlan", true);
    lab.start_daemon();
    let (sent, s) = run_flood(lab)?;
    let dropped = sample(
        &lab.scrape(),
        "vlanguard_frames_total",
        &["verdict=\"drop\"", "reason=\"not-allowed\""],
    );
    rows.push(Row {
        method: "vlanguard, TC ingress (port with VLAN offload, 10,000 devices)",
        sent,
        received: s.received,
        dropped: dropped as u64,
        cpu_ns: s.cpu_ns,
    });
    let _ = lab.cli(&["detach"]);
    lab.stop_daemon(libc::SIGTERM);
    lab.ethtool("r", "uplink", "rxvlan", false);

    fs::write(&lab.policy_file, scale::policy_toml(100_000))?;
    memory.push(start_and_measure(lab, 100_000)?);
    let _ = lab.cli(&["detach"]);
    lab.stop_daemon(libc::SIGTERM);

    let (md, csv) = report(&rows, &memory);
    println!("{md}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("e2e.md"), &md)?;
    fs::write(dir.join("e2e.csv"), &csv)?;
    eprintln!("bench: wrote {}", dir.join("e2e.{md,csv}").display());
    Ok(())
}

fn nft(ns: &str, rules: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("nft stdin")?.write_all(rules.as_bytes())?;
    if !child.wait()?.success() {
        bail!("nft refused {rules}");
    }
    Ok(())
}

/// The number after `label` in `text`.
fn counter_after(text: &str, label: &str) -> Result<u64> {
    let (_, rest) = text.split_once(label).with_context(|| format!("{label:?} in {text}"))?;
    rest.split_whitespace().next().and_then(|n| n.parse().ok()).context("a number")
}

/// Starts the daemon on the lab's policy file; its memory once applied.
fn start_and_measure(lab: &mut Lab, devices: usize) -> Result<(usize, f64, u64, u64)> {
    let t = Instant::now();
    // Counters for every device whatever the CPU count (the default is
    // smaller on machines with more than five).
    lab.start_daemon_with(&["--device-capacity", "131072"]);
    let ready = t.elapsed().as_secs_f64();
    let pid = lab.daemon_pid().context("daemon pid")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> Result<u64> {
        let line = status.lines().find(|l| l.starts_with(field)).context("status field")?;
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).context("kB")
    };
    Ok((devices, ready, kib("VmRSS:")?, kib("VmHWM:")?))
}

/// The receiver's NAPI thread: the newest `napi/uplink-*` kernel thread
/// (the lab's veth is the only `uplink` while the benchmark runs).
fn napi_thread() -> Result<u32> {
    let mut found = None;
    for entry in fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("napi/uplink-") && found.is_none_or(|f| pid > f) {
            found = Some(pid);
        }
    }
    found.context("no NAPI thread for uplink: threaded NAPI did not start")
}

fn receiver(lab: &Lab, napi: u32) -> Result<Sample> {
    let out =
        sh(Command::new("ip").args(["netns", "exec", &lab.ns("r"), "ethtool", "-S", "uplink"]));
    let stats = String::from_utf8_lossy(&out.stdout).to_string();
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    };
    // schedstat: time on CPU in nanoseconds, first field.
    let schedstat = fs::read_to_string(format!("/proc/{napi}/schedstat"))?;
    let cpu_ns =
        schedstat.split_whitespace().next().and_then(|n| n.parse().ok()).context("schedstat")?;
    Ok(Sample {
        received: stat("rx_queue_0_xdp_packets"),
        xdp_drops: stat("rx_queue_0_xdp_drops"),
        cpu_ns,
    })
}

fn report(rows: &[Row], memory: &[(usize, f64, u64, u64)]) -> (String, String) {
    let secs: f64 = SECONDS.parse().expect("seconds");
    let capacity = |r: &Row| r.received as f64 / (r.cpu_ns.max(1) as f64 / 1e9);
    let nft_capacity = rows.iter().find(|r| r.method.starts_with("nftables")).map_or(1.0, capacity);
    let mut md = format!(
        "End to end on veth ({SECONDS} s UDP flood, XDP live frames on CPU 0; receiver NAPI threaded on CPU 1). \
         veth numbers compare methods on this machine, not NICs: the receiver's fixed cost per frame \
         (veth ring, returning the sender's pages) is large here and the same for every method.\n\n\
         | method | sent (Mpps) | received (Mpps) | dropped (Mpps) | receiver CPU busy | receiver CPU ns/packet | packets per receiver CPU-second (M) | vs nftables |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut csv = String::from(
        "method,sent,received,dropped,seconds,receiver_cpu_ns,ns_per_packet,packets_per_cpu_second,ratio_to_nftables\n",
    );
    for r in rows {
        let per = r.cpu_ns as f64 / r.received.max(1) as f64;
        let cap = capacity(r);
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} % | {per:.0} | {:.2} | {:.2} |",
            r.method,
            r.sent as f64 / secs / 1e6,
            r.received as f64 / secs / 1e6,
            r.dropped as f64 / secs / 1e6,
            r.cpu_ns as f64 / (secs * 1e9) * 100.0,
            cap / 1e6,
            cap / nft_capacity
        );
        let _ = writeln!(
            csv,
            "\"{}\",{},{},{},{secs},{},{per:.1},{cap:.0},{:.3}",
            r.method,
            r.sent,
            r.received,
            r.dropped,
            r.cpu_ns,
            cap / nft_capacity
        );
    }
    let _ = writeln!(
        md,
        "\n| daemon, devices | start to policy applied (s) | RSS (KiB) | peak RSS (KiB) |\n|---:|---:|---:|---:|"
    );
    let _ = writeln!(csv, "\ndevices,ready_seconds,rss_kib,peak_rss_kib");
    for (n, ready, rss, hwm) in memory {
        let _ = writeln!(md, "| {n} | {ready:.1} | {rss} | {hwm} |");
        let _ = writeln!(csv, "{n},{ready:.2},{rss},{hwm}");
    }
    (md, csv)
}
