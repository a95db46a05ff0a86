//! Builds the XDP program (filter-ebpf) for the BPF target with the nightly
//! toolchain and bpf-linker, so `vlanguard` can embed it.

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../filter-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "filter-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
