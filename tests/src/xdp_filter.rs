//! xdp-filter, from Debian's xdp-tools, as the baseline the benchmark
//! measures vlanguard against: its own compiled program
//! (`xdpfilt_dny_all.o`: unmatched frames are dropped, listed addresses and
//! ports pass), loaded from the package's object file and run with
//! BPF_PROG_TEST_RUN next to vlanguard.
//!
//! Its maps are pinned by name (libxdp's convention); they go to a BPF
//! filesystem mounted for this purpose only and unmounted on drop, so
//! nothing is left in /sys/fs/bpf.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{PerCpuHashMap, PerCpuValues},
    programs::Xdp,
    util::nr_cpus,
};

/// The deny-policy program with every feature (Ethernet, IPv4, IPv6, TCP,
/// UDP), as `xdp-filter load --policy deny` picks when all are in use.
const OBJECT: &str = "xdpfilt_dny_all.o";
const PROGRAM: &str = "xdpfilt_dny_all";
/// xdp-filter's `MAP_FLAG_SRC | MAP_FLAG_DST`: the address passes as
/// either end.
const SRC_OR_DST: u64 = 0b11;
/// The size of xdp-filter's address maps (`max_entries` in xdpfilt_prog.h).
pub const CAPACITY: usize = 10_000;

pub struct XdpFilter {
    ebpf: Ebpf,
    bpffs: PathBuf,
}

/// Where Debian installs xdp-tools' BPF objects (multiarch or not).
fn object_path() -> Result<PathBuf> {
    let candidates = std::fs::read_dir("/usr/lib")?
        .flatten()
        .map(|e| e.path().join("bpf").join(OBJECT))
        .chain([Path::new("/usr/lib/bpf").join(OBJECT)]);
    for p in candidates {
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{OBJECT} not found under /usr/lib/*/bpf: install Debian's xdp-tools")
}

impl XdpFilter {
    pub fn load() -> Result<XdpFilter> {
        let object = object_path()?;
        let data = std::fs::read(&object).with_context(|| format!("{}", object.display()))?;
        let bpffs =
            PathBuf::from(format!("/run/vlanguard-bench/xdp-filter-{}", std::process::id()));
        std::fs::create_dir_all(&bpffs)?;
        let mounted = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs).status()?;
        if !mounted.success() {
            bail!("mounting a BPF filesystem on {}", bpffs.display());
        }
        // Own the mount before anything else can fail, so drop unmounts it.
        let ebpf = EbpfLoader::new().default_map_pin_directory(&bpffs).load(&data);
        let mut filter = XdpFilter {
            ebpf: match ebpf {
                Ok(e) => e,
                Err(e) => {
                    unmount(&bpffs);
                    return Err(e).context(format!("loading {}", object.display()));
                }
            },
            bpffs,
        };
        filter.program().load().context("loading xdp-filter's program")?;
        Ok(filter)
    }

    pub fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM)
            .expect("xdp-filter's program")
            .try_into()
            .expect("an XDP program")
    }

    /// Lists `addrs` in xdp-filter's address allowlist (as source or
    /// destination), at most CAPACITY per family; returns how many it took.
    pub fn allow(&mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Result<usize> {
        let cpus = nr_cpus().map_err(|(_, e)| e)?;
        let flags = || PerCpuValues::try_from(vec![SRC_OR_DST; cpus]);
        let mut v4: PerCpuHashMap<_, u32, u64> =
            PerCpuHashMap::try_from(self.ebpf.map_mut("filter_ipv4").context("filter_ipv4")?)?;
        let (mut n4, mut v6_addrs) = (0, Vec::new());
        for addr in addrs {
            match addr {
                // Keys are the header's bytes as the program reads them.
                IpAddr::V4(a) if n4 < CAPACITY => {
                    v4.insert(u32::from_ne_bytes(a.octets()), flags()?, 0)?;
                    n4 += 1;
                }
                IpAddr::V6(a) if v6_addrs.len() < CAPACITY => v6_addrs.push(a.octets()),
                _ => {}
            }
        }
        let mut v6: PerCpuHashMap<_, [u8; 16], u64> =
            PerCpuHashMap::try_from(self.ebpf.map_mut("filter_ipv6").context("filter_ipv6")?)?;
        for key in &v6_addrs {
            v6.insert(key, flags()?, 0)?;
        }
        Ok(n4 + v6_addrs.len())
    }
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
    let _ = std::fs::remove_dir(dir);
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        unmount(&self.bpffs);
    }
}
