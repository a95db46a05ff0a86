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
    // The rule scan and the flow cache's bucket searches stay global
    // functions, which the verifier checks once rather than at every call
    // (rules.rs, flow.rs). The device searches are inlined: a call to a BPF
    // function costs about 8 % of a dropped frame each where returns go
    // through the kernel's return thunk (devices.rs).
    // VLANGUARD_CPUS is a global the loader sets (maps.rs).
    println!(
        "cargo:rustc-link-arg-bins=--export=vlanguard_scan,vlanguard_flow_find,vlanguard_flow_place,\
         VLANGUARD_CPUS"
    );
}
