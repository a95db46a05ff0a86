//! Builds the XDP program (filter-ebpf) for the BPF target with the nightly
//! toolchain and bpf-linker, so `vlanguard` can embed it.

use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=VLANGUARD_TOOLS");
    // The upgrade test's second build of the program (see filter-ebpf's
    // events.rs).
    println!("cargo:rerun-if-env-changed=VLANGUARD_EBPF_VARIANT");
    // `cargo xtask setup` caches bpf-linker in the tools directory; find it
    // there when it is not on PATH, so a plain `cargo build` works too.
    let tools = env::var_os("VLANGUARD_TOOLS")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vlanguard/tools")));
    if let Some(bin) = tools.map(|t| t.join("bin"))
        && bin.join("bpf-linker").exists()
    {
        let mut dirs = vec![bin];
        dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
        // SAFETY: build scripts are single-threaded at this point; the
        // variable is read by the cargo child aya-build spawns below.
        unsafe { env::set_var("PATH", env::join_paths(dirs)?) };
    }

    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../filter-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "filter-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
