//! `cargo xtask soak [--minutes N]`: the soak of `tests/src/bin/soak.rs`
//! (the real daemon on the namespace lab under traffic, random operators'
//! changes, kills, restarts and an upgrade to a second build), 30 minutes
//! by default; `cargo xtask test` runs it for `SECONDS_IN_TEST`. The
//! daemons' logs and the audit log are kept in target/soak.

use std::{path::Path, process::Command};

use anyhow::Result;

use crate::{build_lab_binaries, build_variant, lab_env, require_root, run, setup};

/// The soak's length in `cargo xtask test`.
pub const SECONDS_IN_TEST: u64 = 60;

/// What the soak's lab runs, and the Debian packages with it.
const COMMANDS: &[(&str, &str)] = &[("ip", "iproute2"), ("ethtool", "ethtool")];

/// Builds the daemon, the lab's binaries (the soak among them) and the
/// second build, then soaks for `seconds`.
pub fn build_and_run(root: &Path, seconds: u64, seed: Option<u64>) -> Result<()> {
    setup::run()?;
    require_root("the soak creates network namespaces and attaches XDP")?;
    setup::ensure_commands(COMMANDS)?;
    build_lab_binaries()?;
    let variant = build_variant(root)?;
    run_built(root, seconds, seed, &variant)
}

/// Runs the soak already built, upgrading to `variant`.
pub fn run_built(root: &Path, seconds: u64, seed: Option<u64>, variant: &Path) -> Result<()> {
    let mut cmd = Command::new(root.join("target/debug/soak"));
    cmd.args(["--seconds", &seconds.to_string()]).arg("--variant").arg(variant);
    cmd.arg("--logs").arg(root.join("target/soak"));
    if let Some(seed) = seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    lab_env(root, &mut cmd);
    run(cmd)
}
