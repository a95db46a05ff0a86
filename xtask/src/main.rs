//! `cargo xtask <task>`: the one entry point for setting up a machine,
//! building, testing, linting and benchmarking vlanguard.

mod bench_summary;
mod fuzz;
mod setup;
mod soak;

use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "vlanguard's build, test and bench tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks to build the eBPF program: the
    /// nightly toolchain's rust-src and bpf-linker (built against a static
    /// LLVM from PyPI, cached under $VLANGUARD_TOOLS or
    /// ~/.cache/vlanguard/tools). Idempotent.
    Setup,
    /// Build the eBPF program on its own. `--debug` builds the bpf-debug
    /// profile (debug assertions and overflow checks on).
    BuildEbpf {
        #[arg(long)]
        debug: bool,
    },
    /// Run every test layer: unit tests, then the kernel tests (root needed)
    /// on the release and debug builds of the program, then a 60-second
    /// soak.
    Test {
        /// Extra arguments for the kernel test run (e.g. a test name); with
        /// any, the soak is skipped.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The demo lab: a router in network namespaces enforcing
    /// examples/hospital.toml on real traffic (root needed).
    Demo,
    /// cargo fmt --check and clippy with warnings denied.
    Lint,
    /// Fuzz the parsers of untrusted input (tests/fuzz: the policy file,
    /// MUD files, drop-event records, DHCP messages, identity reports) and
    /// the XDP program against the reference evaluator (`kernel`, root
    /// needed) with libFuzzer, each for `--time` seconds from its seeds; a
    /// crash fails and leaves its input in target/fuzz/artifacts. Installs
    /// cargo-fuzz.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        time: u64,
        /// Stop a target after this many executions, if that comes before
        /// `--time` (a campaign: `--time 1800 --runs 10000000`).
        #[arg(long)]
        runs: Option<u64>,
        /// One target (default: all).
        target: Option<String>,
    },
    /// Soak the real daemon on the namespace lab (root): ~1,000 allowed
    /// and ~1,000 denied UDP datagrams a second, random allow/revoke,
    /// device add/remove, block/unblock, quarantine/release, valid and
    /// invalid policy applies, SIGHUPs, DNS refreshes, kill -9 and restarts,
    /// an upgrade to a second build. Fails if an allowed datagram is lost or
    /// a denied one delivered (outside the windows of the changes that
    /// alter them), or the daemon's memory or descriptors grow beyond a
    /// bound; reports every apply's latency. Not in CI (`test` runs 60 s).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// The random operations' seed (default: random, printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Build the Debian package (target/debian/vlanguard_*.deb, with
    /// cargo-deb): the release binary, the example policy as
    /// /etc/vlanguard/policy.toml, the systemd unit, man pages and shell
    /// completions generated from the CLI definitions.
    Package,
    /// Print a policy with N devices (ten rules each, one of them per
    /// device; IPv4 and IPv6 addresses in 10.110.0.0/15 and
    /// 2001:db8:110::/48), the one the benchmarks use, for measurements.
    GenPolicy {
        #[arg(long, default_value_t = 10_000)]
        devices: u32,
    },
    /// Per-packet cost of the program with BPF_PROG_TEST_RUN next to an
    /// XDP_PASS floor and xdp-filter, in several processes (this machine's
    /// speed varies by process; the summary gives the median, the fast
    /// cluster's median, min and max); then a 5-second veth flood dropped
    /// by vlanguard, nftables, iptables or nothing, and the daemon's
    /// memory. Root needed; installs xdp-tools, nftables and iptables.
    Bench {
        /// Runs of the program per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Separate processes the whole benchmark runs in.
        #[arg(long, default_value_t = 3)]
        processes: u32,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup => {
            let tools = setup::run()?;
            println!("bpf-linker ready in {}", tools.display());
        }
        Task::BuildEbpf { debug } => {
            setup::run()?;
            let path = build_ebpf(&root, debug)?;
            println!("{}", path.display());
        }
        Task::Test { args } => test(&root, &args)?,
        Task::Fuzz { time, runs, target } => {
            setup::run()?;
            fuzz::run(&root, time, runs, target.as_deref())?;
        }
        Task::Soak { minutes, seed } => soak::build_and_run(&root, minutes * 60, seed)?,
        Task::Demo => {
            setup::run()?;
            require_root("the lab creates network namespaces and attaches XDP")?;
            setup::ensure_commands(LAB_COMMANDS)?;
            build_lab_binaries()?;
            let mut cmd = Command::new(root.join("target/debug/demo"));
            cmd.arg(root.join("examples/hospital.toml"));
            lab_env(&root, &mut cmd);
            run(cmd)?;
        }
        Task::Package => {
            let deb = package(&root)?;
            println!("{}", deb.display());
        }
        Task::GenPolicy { devices } => {
            let n = devices.to_string();
            let mut cmd =
                cargo_cmd(["run", "--quiet", "--release", "--package", "vlanguard-tests"]);
            cmd.args(["--bin", "gen_policy", "--", &n]);
            run(cmd)?;
        }
        Task::Lint => {
            let root = root.clone();
            setup::run()?;
            cargo(["fmt", "--all", "--check"])?;
            // The fuzz targets are a workspace of their own.
            cargo(["fmt", "--manifest-path", "tests/fuzz/Cargo.toml", "--check"])?;
            cargo(["clippy", "--all-targets", "--", "-D", "warnings"])?;
            // The eBPF crate only builds for the BPF target, with nightly.
            let mut cmd = ebpf_cargo(&root, "clippy", "release");
            cmd.args(["--", "-D", "warnings"]);
            run(cmd)?;
        }
        Task::Bench { repeat, processes } => {
            setup::run()?;
            require_root("the benchmarks load XDP programs")?;
            setup::ensure_commands(BENCH_COMMANDS)?;
            let repeat = repeat.to_string();
            cargo(["build", "--release", "--package", "filter-user", "--bin", "vlanguard"])?;
            cargo([
                "build",
                "--release",
                "--package",
                "vlanguard-tests",
                "--bin",
                "bench",
                "--bin",
                "bench_e2e",
                "--bin",
                "flood",
            ])?;
            let dir = root.join("target/bench");
            let mut runs = Vec::new();
            for k in 1..=processes.max(1) {
                let name = format!("run-{k}");
                let mut cmd = Command::new(root.join("target/release/bench"));
                cmd.args(["--repeat", &repeat, "--name", &name]);
                run(cmd)?;
                runs.push(dir.join(format!("{name}.csv")));
            }
            let (md, csv) = bench_summary::summarise(&runs)?;
            std::fs::write(dir.join("summary.md"), &md)?;
            std::fs::write(dir.join("summary.csv"), &csv)?;
            // End to end: one run (it takes the machine's both CPUs).
            run(Command::new(root.join("target/release/bench_e2e")))?;
            println!("{md}");
            println!("{}", std::fs::read_to_string(dir.join("e2e.md"))?);
            eprintln!("bench: wrote {}", dir.join("{summary,e2e}.{md,csv}").display());
        }
    }
    Ok(())
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS_IN_TEST: u64 = 30;

fn test(root: &Path, args: &[String]) -> Result<()> {
    setup::run()?;
    // Layer 1: pure Rust (policy, compiler, reference evaluator, layouts).
    cargo([
        "test",
        "--package",
        "filter-common",
        "--package",
        "filter-policy",
        "--package",
        "filter-user",
        "--package",
        "xtask",
    ])?;
    // Layer 1b: the parsers of untrusted input fuzzed briefly (their
    // regressions replayed); campaigns are `cargo xtask fuzz --time N`.
    fuzz::run(root, FUZZ_SECONDS_IN_TEST, None, None)?;
    // Layer 2: the real program in the real kernel, release build embedded
    // in the binary and the debug build loaded from its file.
    let debug_object = build_ebpf(root, true)?;
    require_root("the kernel tests load XDP programs")?;
    // Layer 3: the daemon binary in namespace labs with real traffic.
    setup::ensure_commands(LAB_COMMANDS)?;
    // MAC vendors for the inventory (what the package depends on).
    setup::ensure_packages(&["ieee-data"])?;
    build_lab_binaries()?;
    // The Debian package, for the test that installs it.
    let deb = package(root)?;
    // A second build whose eBPF program differs, for the upgrade test.
    let variant = build_variant(root)?;
    let mut cmd = cargo_cmd(["test", "--package", "vlanguard-tests", "--"]);
    cmd.args(args);
    cmd.env("VLANGUARD_DEBUG_OBJECT", &debug_object);
    cmd.env("VLANGUARD_DEB", &deb);
    cmd.env("VLANGUARD_VARIANT_BIN", &variant);
    lab_env(root, &mut cmd);
    run(cmd)?;
    // Last (the README's layer 7): the soak, short (`cargo xtask soak`);
    // skipped when only some kernel tests were asked for.
    if args.is_empty() {
        soak::run_built(root, soak::SECONDS_IN_TEST, None, &variant)?;
    } else {
        eprintln!("test: the soak is skipped (kernel tests were selected)");
    }
    Ok(())
}

/// Builds the daemon again with `VLANGUARD_EBPF_VARIANT=1` (a program that
/// differs) into target/variant, the upgrade test's and the soak's second
/// build; its path.
fn build_variant(root: &Path) -> Result<PathBuf> {
    let variant_dir = root.join("target/variant");
    let mut variant = cargo_cmd(["build", "--package", "filter-user", "--bin", "vlanguard"]);
    variant.arg("--target-dir").arg(&variant_dir).env("VLANGUARD_EBPF_VARIANT", "1");
    run(variant)?;
    Ok(variant_dir.join("debug/vlanguard"))
}

/// Builds filter-ebpf for the BPF target the way aya-build does, in the
/// `bpf-debug` profile (or release), and returns the object's path.
fn build_ebpf(root: &Path, debug: bool) -> Result<PathBuf> {
    let profile = if debug { "bpf-debug" } else { "release" };
    run(ebpf_cargo(root, "build", profile))?;
    Ok(root.join("target/ebpf/bpfel-unknown-none").join(profile).join("vlanguard-xdp"))
}

/// `cargo <verb>` for filter-ebpf on the BPF target, as aya-build runs it.
fn ebpf_cargo(root: &Path, verb: &str, profile: &str) -> Command {
    // core's debug-mode UB checks compare packet and stack pointers, which
    // the verifier refuses; they check Rust's rules, not the program's.
    let rustflags =
        ["--cfg=bpf_target_arch=\"x86_64\"", "-Cdebuginfo=2", "-Clink-arg=--btf", "-Zub-checks=no"]
            .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", verb, "--package", "filter-ebpf", "--bins"]);
    cmd.args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--profile", profile]);
    cmd.arg("--target-dir").arg(root.join("target/ebpf"));
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    cmd.env_remove("RUSTC").env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

/// Builds the Debian package; returns its path.
fn package(root: &Path) -> Result<PathBuf> {
    setup::run()?;
    setup::ensure_cargo_deb()?;
    cargo(["build", "--release", "--package", "filter-user", "--bin", "vlanguard"])?;
    let out = root.join("target/package");
    let _ = std::fs::remove_dir_all(&out);
    let mut generate = Command::new(root.join("target/release/vlanguard"));
    generate.arg("generate").arg("--man").arg(out.join("man1"));
    generate.arg("--completions").arg(out.join("completions"));
    run(generate)?;
    // Man pages ship compressed (Debian policy 12.1).
    for page in std::fs::read_dir(out.join("man1"))? {
        let mut gzip = Command::new("gzip");
        gzip.arg("-9n").arg(page?.path());
        run(gzip)?;
    }
    let debian = root.join("target/debian");
    let _ = std::fs::remove_dir_all(&debian);
    std::fs::create_dir_all(&debian)?;
    let mut deb = cargo_cmd(["deb", "--package", "filter-user", "--no-build", "--output"]);
    deb.arg(&debian);
    run(deb)?;
    std::fs::read_dir(&debian)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("cargo deb made no .deb")
}

/// Commands the namespace labs use, and the Debian packages with them.
const LAB_COMMANDS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("ethtool", "ethtool"),
    ("setpriv", "util-linux"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("tmux", "tmux"),
    ("openssl", "openssl"),
    ("man", "man-db"),
    ("systemd-analyze", "systemd"),
    ("lintian", "lintian"),
    // The package test: cargo-deb's tools, and what the package depends on.
    ("dpkg-shlibdeps", "dpkg-dev"),
    ("strip", "binutils"),
    ("adduser", "adduser"),
    // The fleet tests' etcd cluster, and etcdctl to play the attacker.
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    // The fleet tests cut routers off from etcd with bridge filtering.
    ("nft", "nftables"),
];

/// What the benchmark compares vlanguard with, and the Debian packages.
const BENCH_COMMANDS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("xdp-filter", "xdp-tools"),
    ("nft", "nftables"),
    ("iptables", "iptables"),
];

/// The daemon (with the crash points of the fault-injection tests, inert
/// unless a test arms one), the lab's VLAN switch helper and the demo.
fn build_lab_binaries() -> Result<()> {
    cargo(["build", "--package", "filter-user", "--bin", "vlanguard", "--features", "failpoints"])?;
    cargo(["build", "--package", "vlanguard-tests", "--bins"])
}

fn lab_env(root: &Path, cmd: &mut Command) {
    cmd.env("VLANGUARD_BIN", root.join("target/debug/vlanguard"));
    cmd.env("VLANGUARD_LAB_VLAN_BIN", root.join("target/debug/lab_vlan"));
}

fn require_root(why: &str) -> Result<()> {
    let out = Command::new("id").arg("-u").output().context("running id -u")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("run as root: {why} (CAP_BPF, CAP_NET_ADMIN)");
    }
    Ok(())
}

fn cargo_cmd<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args);
    cmd
}

fn cargo<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Result<()> {
    run(cargo_cmd(args))
}

fn run(mut cmd: Command) -> Result<()> {
    // Every child finds the cached bpf-linker.
    cmd.env("PATH", setup::path_with_tools()?);
    let shown: Vec<_> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect();
    eprintln!("+ {}", shown.join(" "));
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
