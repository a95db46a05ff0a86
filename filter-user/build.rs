//! Builds the XDP program (filter-ebpf) for the BPF target with the nightly
//! toolchain and bpf-linker, so `vlanguard` can embed it.
//!
//! `VLANGUARD_EBPF_DIR`, when set, names a directory holding the objects
//! already built (`vlanguard-xdp`, `bench-programs`, `lab-vlan`: what
//! `cargo xtask build-ebpf` writes to target/ebpf/bpfel-unknown-none/release);
//! they are embedded as they are and nothing is built here (nor is
//! `VLANGUARD_EBPF_VARIANT` read). For builds that should embed the objects
//! `cargo xtask build-ebpf` made rather than build their own: the fuzz
//! targets (`cargo xtask fuzz` sets it). Without it their instrumented build
//! works too (aya-build gives its cargo its own CARGO_ENCODED_RUSTFLAGS, so
//! cargo-fuzz's sanitizer flags do not reach the BPF build), but builds the
//! program a second time, with build-std, in the fuzz target directory.

use std::{env, path::PathBuf};

/// The BPF binaries of filter-ebpf that the crate embeds.
const OBJECTS: [&str; 3] = ["vlanguard-xdp", "bench-programs", "lab-vlan"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=VLANGUARD_EBPF_DIR");
    if let Some(dir) = env::var_os("VLANGUARD_EBPF_DIR") {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        for name in OBJECTS {
            let from = PathBuf::from(&dir).join(name);
            println!("cargo:rerun-if-changed={}", from.display());
            std::fs::copy(&from, out.join(name)).map_err(|e| {
                anyhow::anyhow!(
                    "VLANGUARD_EBPF_DIR: {}: {e} (run `cargo xtask build-ebpf`)",
                    from.display()
                )
            })?;
        }
        return Ok(());
    }
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
