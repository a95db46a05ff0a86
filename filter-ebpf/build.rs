//! Linker settings for the BPF objects, and a rebuild when bpf-linker
//! changes (a new linker can change the object).
use which::which;

fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // bpf-linker passes LLVM --bpf-expand-memcpy-in-order by default, which
    // turns off LLVM's inline expansion of memset and memmove: every struct
    // zeroing or address copy then became a call to a byte-at-a-time loop
    // (about 30 % of the program's time on a dropped frame). Without it,
    // LLVM expands them into word loads and stores.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
    // The rule scan, the configuration line's searches (IPv4 subnets,
    // interfaces), the IPv6 subnet search and the flow cache's bucket searches stay global
    // functions, which the verifier checks once rather than at every call
    // (rules.rs, devices.rs, flow.rs).
    println!(
        "cargo:rustc-link-arg-bins=--export=vlanguard_scan,vlanguard_find_v4,vlanguard_find_v6,\
         vlanguard_iface_vlan,vlanguard_flow_find,vlanguard_flow_place"
    );
}
