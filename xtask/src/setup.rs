//! Toolchain bootstrap (ARCHITECTURE §7): nightly rust-src and a bpf-linker built
//! against a static LLVM 23 from PyPI. The linker is cached in the tools
//! directory and reused whenever a working one is found.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_WHEEL: &str = "mlc-llvm-static[all]==23.1.1.post0";

/// Where bootstrap tools live: `$VLANGUARD_TOOLS`, else
/// `~/.cache/vlanguard/tools` (kept between CI runs when the cache is).
pub fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("VLANGUARD_TOOLS") {
        return Ok(PathBuf::from(dir));
    }
    let home = env::var_os("HOME").context("HOME is not set; set VLANGUARD_TOOLS")?;
    Ok(Path::new(&home).join(".cache/vlanguard/tools"))
}

/// `PATH` with the tools' bin directory first.
pub fn path_with_tools() -> Result<std::ffi::OsString> {
    let mut dirs = vec![tools_dir()?.join("bin")];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    Ok(env::join_paths(dirs)?)
}

/// Makes sure everything is installed; returns the tools directory.
pub fn run() -> Result<PathBuf> {
    let tools = tools_dir()?;
    ensure_rust_src()?;
    ensure_packages(BUILD_PACKAGES)?;
    if working_linker(&tools).is_none() {
        build_linker(&tools)?;
        if working_linker(&tools).is_none() {
            bail!("bpf-linker was built but does not run; see the output above");
        }
    }
    Ok(tools)
}

fn ensure_rust_src() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    let list = String::from_utf8_lossy(&installed.stdout);
    if installed.status.success() && list.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    if !installed.status.success() {
        eprintln!("setup: installing the nightly toolchain");
        check(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    eprintln!("setup: adding rust-src to nightly (eBPF builds core from source)");
    check(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// A bpf-linker that runs, from the tools directory or PATH.
fn working_linker(tools: &Path) -> Option<PathBuf> {
    let cached = tools.join("bin/bpf-linker");
    [cached, PathBuf::from("bpf-linker")].into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn build_linker(tools: &Path) -> Result<()> {
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} into {} (a few minutes, once)",
        tools.display()
    );
    std::fs::create_dir_all(tools)?;
    let venv = tools.join("llvm");
    let python = venv.join("bin/python");
    if !python.exists() {
        check(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    check(Command::new(venv.join("bin/pip")).args(["install", "--quiet", LLVM_WHEEL]))?;
    let out = Command::new(&python)
        .args(["-c", "import mlc_llvm_static,os;print(os.path.dirname(mlc_llvm_static.__file__))"])
        .output()?;
    if !out.status.success() {
        bail!("cannot locate the LLVM wheel: {}", String::from_utf8_lossy(&out.stderr));
    }
    let prefix = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("static");
    let mut path = vec![prefix.join("bin")];
    if let Some(p) = env::var_os("PATH") {
        path.extend(env::split_paths(&p));
    }
    check(
        Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "bpf-linker", "--locked", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-23,llvm-link-static"])
            .arg("--root")
            .arg(tools)
            .env("LLVM_PREFIX", &prefix)
            .env("LIBZSTD_PATH", prefix.join("lib"))
            .env("PATH", env::join_paths(path)?),
    )
}

const CARGO_DEB_VERSION: &str = "3.8.0";

/// cargo-deb (for `cargo xtask package`), built once into the tools
/// directory like bpf-linker; returns that directory's bin.
pub fn ensure_cargo_deb() -> Result<PathBuf> {
    let tools = tools_dir()?;
    let bin = tools.join("bin");
    let works = Command::new(bin.join("cargo-deb"))
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("setup: building cargo-deb {CARGO_DEB_VERSION} into {} (once)", tools.display());
        check(
            Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB_VERSION])
                .arg("--root")
                .arg(&tools),
        )?;
    }
    Ok(bin)
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Installs the Debian packages providing `commands` that are missing.
pub fn ensure_commands(commands: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = commands
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    apt_install(&missing)
}

/// Debian packages the build needs: OpenSSL's headers for the MUD
/// signature check (openssl-sys), found through pkg-config, and the C
/// compiler both it and the inventory's bundled SQLite (rusqlite) build with;
/// protoc, which etcd-client's build generates its gRPC code with.
const BUILD_PACKAGES: &[&str] = &["libssl-dev", "pkg-config", "gcc", "protobuf-compiler"];

/// Installs those of `packages` dpkg does not list as installed.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f", "${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    apt_install(&missing)
}

fn apt_install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    check(Command::new("apt-get").arg("update").arg("-q"))?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
