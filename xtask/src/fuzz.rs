//! `cargo xtask fuzz [--time SECONDS] [TARGET]`: the fuzz targets of
//! `tests/fuzz` (cargo-fuzz: libFuzzer with the nightly toolchain's
//! sanitizer coverage), each run for a time from its seeds.
//!
//! Seeds and the inputs of crashes once found (minimised, kept as
//! regressions) are `tests/fuzz/seeds/TARGET/`; every run executes all of
//! them first, so `cargo xtask test`'s short runs replay each regression.
//! What a run discovers goes to `target/fuzz/corpus/TARGET/` (not
//! committed); a crash's input to `target/fuzz/artifacts/TARGET/`; the
//! instrumented builds to `target/fuzz/build`.
//!
//! The `kernel` target runs the real XDP program (BPF_PROG_TEST_RUN)
//! against the reference evaluator, so it needs root: without it, naming
//! the target or `CI=true` fails; a run of every target skips it with a
//! message. Its program is the release object `cargo xtask build-ebpf`
//! builds, embedded through `VLANGUARD_EBPF_DIR` (filter-user's build.rs)
//! rather than built again under cargo-fuzz's instrumentation flags.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::setup;

/// Every target, as `tests/fuzz/Cargo.toml` names its binaries.
pub const TARGETS: [&str; 7] =
    ["policy", "mud", "drop_event", "dhcp", "identity_report", "control_request", "kernel"];
/// The targets that load the program into the kernel.
const NEED_ROOT: [&str; 1] = ["kernel"];
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// What one run did, from libFuzzer's final lines.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub execs: u64,
    pub seconds: u64,
    pub coverage: u64,
    pub features: u64,
    pub corpus: u64,
}

/// Runs `target` (all when `None`) for `seconds` each, or `runs`
/// executions if that comes first; fails if any crashed.
pub fn run(root: &Path, seconds: u64, runs: Option<u64>, target: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t:?}; the targets: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let targets = runnable(targets, target.is_some(), is_root(), ci)?;
    ensure_cargo_fuzz()?;
    // The program the kernel target embeds (see the module's doc).
    let object = crate::build_ebpf(root, false)?;
    let ebpf_dir = object.parent().context("the object's directory")?.to_path_buf();
    let mut build = fuzz_cmd(root, &["build", "-O", "--target-dir", "target/fuzz/build"]);
    build.env("VLANGUARD_EBPF_DIR", &ebpf_dir);
    check(build)?;
    let mut crashed = Vec::new();
    for t in targets {
        let corpus = root.join("target/fuzz/corpus").join(t);
        let artifacts = root.join("target/fuzz/artifacts").join(t);
        fs::create_dir_all(&corpus)?;
        fs::create_dir_all(&artifacts)?;
        let seeds = root.join("tests/fuzz/seeds").join(t);
        let mut cmd = fuzz_cmd(root, &["run", "-O", "--target-dir", "target/fuzz/build", t]);
        // `cargo fuzz run` builds again first: the same build.
        cmd.env("VLANGUARD_EBPF_DIR", &ebpf_dir);
        cmd.arg(&corpus).arg(&seeds).arg("--");
        cmd.arg(format!("-max_total_time={seconds}"));
        if let Some(n) = runs {
            cmd.arg(format!("-runs={n}"));
        }
        cmd.arg(format!("-artifact_prefix={}/", artifacts.display()));
        cmd.arg("-print_final_stats=1");
        if NEED_ROOT.contains(&t) {
            // Its harness (the loaded program, the reference's state) lives
            // across inputs by design: no leak checks, which rerun inputs.
            cmd.arg("-detect_leaks=0");
        }
        let out = cmd.output().with_context(|| format!("running fuzz target {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let o = outcome(&log);
        println!(
            "fuzz {t}: {} execs in {} s ({} execs/s), coverage {} edges, {} features, corpus {}",
            o.execs,
            o.seconds,
            o.execs / o.seconds.max(1),
            o.coverage,
            o.features,
            o.corpus
        );
        if !out.status.success() {
            eprintln!("{log}");
            crashed.push(format!("{t} (input in {})", artifacts.display()));
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {}; minimise with `cargo +nightly fuzz tmin --fuzz-dir \
             tests/fuzz TARGET INPUT` and keep the input in tests/fuzz/seeds/TARGET once fixed",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn fuzz_cmd(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").arg("fuzz").args(&args[..1]).arg("--fuzz-dir").arg("tests/fuzz");
    cmd.args(&args[1..]);
    cmd.current_dir(root);
    if let Ok(path) = setup::path_with_tools() {
        cmd.env("PATH", path);
    }
    cmd
}

/// `targets` less those that need root when it is missing: a skip with a
/// message when every target runs, a failure when one was named or under
/// `CI=true`.
fn runnable(mut targets: Vec<&str>, named: bool, root: bool, ci: bool) -> Result<Vec<&str>> {
    if root {
        return Ok(targets);
    }
    for t in NEED_ROOT {
        if !targets.contains(&t) {
            continue;
        }
        if ci || named {
            bail!(
                "fuzz target {t} loads the XDP program: run as root (CAP_BPF, CAP_NET_ADMIN){}",
                if ci { "; CI=true makes that a failure" } else { "" }
            );
        }
        eprintln!("fuzz {t}: skipped: it loads the XDP program and needs root");
        targets.retain(|x| x != &t);
    }
    Ok(targets)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn check(mut cmd: Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// cargo-fuzz, built once into the tools directory (cached like
/// bpf-linker) unless a working one is on the PATH.
fn ensure_cargo_fuzz() -> Result<()> {
    let path = setup::path_with_tools()?;
    let works = Command::new("cargo")
        .args(["fuzz", "--version"])
        .env("PATH", &path)
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    let tools: PathBuf = setup::tools_dir()?;
    eprintln!("fuzz: building cargo-fuzz {CARGO_FUZZ_VERSION} into {}", tools.display());
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "--locked", "--version", CARGO_FUZZ_VERSION, "cargo-fuzz", "--root"]);
    cmd.arg(&tools);
    check(cmd)
}

/// The numbers of libFuzzer's last status line (`#N DONE cov: C ft: F
/// corp: K/...`) and its `Done N runs in S second(s)`.
pub fn outcome(log: &str) -> Outcome {
    let mut o = Outcome::default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?.trim_start();
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    for line in log.lines() {
        if line.starts_with('#') && line.contains("cov: ") {
            o.coverage = field(line, "cov:").unwrap_or(o.coverage);
            o.features = field(line, "ft:").unwrap_or(o.features);
            o.corpus = field(line, "corp:").unwrap_or(o.corpus);
        }
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut words = rest.split_whitespace();
            o.execs = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            o.seconds = words.nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_target_needs_root() {
        let all = TARGETS.to_vec();
        assert_eq!(runnable(all.clone(), false, true, true).expect("root"), all);
        let others = runnable(all.clone(), false, false, false).expect("skipped");
        assert!(!others.contains(&"kernel") && others.len() == all.len() - 1);
        let err = runnable(all, false, false, true).expect_err("CI=true");
        assert!(err.to_string().contains("CI=true makes that a failure"), "{err}");
        assert!(runnable(vec!["kernel"], true, false, false).is_err());
        assert_eq!(runnable(vec!["mud"], true, false, true).expect("no root needed"), ["mud"]);
    }

    #[test]
    fn libfuzzer_statistics_are_read() {
        let log = "INFO: seed\n#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0\n\
                   #431231\tDONE   cov: 1234 ft: 5678 corp: 90/2048b lim: 4096 exec/s: 39202\n\
                   Done 431231 runs in 11 second(s)\n";
        assert_eq!(
            outcome(log),
            Outcome { execs: 431_231, seconds: 11, coverage: 1234, features: 5678, corpus: 90 }
        );
    }
}
