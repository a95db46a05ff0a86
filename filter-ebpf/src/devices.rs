//! Which device an address belongs to, and whether it lies in a protected
//! VLAN (ARCHITECTURE §3 step 4).
//!
//! An IPv4 address is found without hashing: the configuration line lists
//! the VLANs' IPv4 subnets, and a device's address indexes its subnet's part
//! of `V4_INDEX` directly, which holds the device's line. That is two array
//! reads where a hash of the 20-byte key cost 8–10 ns hot and 33–254 ns
//! cold (ARCHITECTURE §3). IPv6 addresses are first placed in the VLANs'
//! IPv6 subnets (`V6_NETS`): one in none is no device and not protected,
//! one in a subnet is looked up in `DEVICES` and takes its protection from
//! the subnet. Addresses no table covers are looked up in `DEVICES` and
//! `PROTECTED` as before.

use aya_ebpf::maps::lpm_trie::Key;
use filter_common::{
    Addr, Config, DeviceInfo, DeviceKey, GENERATION_MASK, IfaceConf, MAX_DEVICE_LINES,
    MAX_UNTAGGED_IFACES, MAX_V4_NETS, MAX_V6_NETS, MacKey, PROTECTED_KEY_BITS, ProtectedKey,
    V4_INDEX_ENTRIES, config, v4net, v6table,
};

use crate::{
    frame::Frame,
    maps::{CONFIG, DEVICE_LINES, DEVICES, IFACES, MAC_DEVICES, PROTECTED, V4_INDEX, V6_NETS},
};

/// `find_v4`'s answer: the device's line + 1 (0: none) in the low
/// bits, and what else the caller must do or know.
const LINE_MASK: u32 = (1 << 24) - 1;
const IN_PROTECTED: u32 = 1 << 29;
/// Look the address up in `DEVICES`.
const ASK_HASH: u32 = 1 << 30;
/// Look the address up in `PROTECTED`.
const ASK_TRIE: u32 = 1 << 31;

/// The device with address `addr` (v4-mapped) in `generation`, and whether
/// an address that is no device lies in a protected VLAN.
#[inline(always)]
pub fn locate(generation: u32, addr: &Addr) -> (Option<&'static DeviceInfo>, bool) {
    let found = if addr.is_v4_mapped() {
        find_v4(generation, addr.v4())
    } else {
        let (hi, lo) = addr.halves();
        find_v6(generation, hi, lo)
    };
    let mut line = found & LINE_MASK;
    if found & ASK_HASH != 0 {
        let key = DeviceKey { generation, addr: addr.0 };
        // SAFETY: a plain u32 copied out at once.
        line = match unsafe { DEVICES.get(key) } {
            Some(l) => l.wrapping_add(1),
            None => 0,
        };
    }
    let dev = match line.checked_sub(1) {
        Some(l) => {
            let index = (generation & GENERATION_MASK) * MAX_DEVICE_LINES + (l & LINE_MASK);
            // User space writes a generation's lines before it is made
            // active and never while it is.
            DEVICE_LINES.get(index)
        }
        None => None,
    };
    let protected = dev.is_none()
        && if found & ASK_TRIE != 0 {
            let key = Key::new(PROTECTED_KEY_BITS, ProtectedKey { generation, addr: addr.0 });
            PROTECTED.get(&key).is_some()
        } else {
            found & IN_PROTECTED != 0
        };
    (dev, protected)
}

/// The device declared by `mac` in `vlan` whose addresses are learned, if
/// the generation has such devices.
#[inline(always)]
pub fn by_mac(generation: u32, vlan: u16, mac: &[u8; 6]) -> Option<&'static DeviceInfo> {
    let generation = generation & GENERATION_MASK;
    let cfg = CONFIG.get(generation)?;
    if cfg.flags & config::MAC_DEVICES == 0 {
        return None;
    }
    let key = MacKey { generation, vlan, mac: *mac };
    // SAFETY: a plain u32 copied out at once.
    let line = *unsafe { MAC_DEVICES.get(key) }?;
    DEVICE_LINES.get(generation * MAX_DEVICE_LINES + (line & LINE_MASK))
}

/// Finds IPv4 address `addr` in the configuration line's subnet table.
///
/// Inlined, as the other searches here: they were global BPF functions,
/// verified once for any arguments, but a BPF function call and its return
/// cost about 8 % of a dropped frame each on a kernel whose returns go
/// through a return thunk (AMD's "Safe RET"); inlined, the program takes
/// ~55,000 more instructions to verify (177,000 of the 1,000,000 allowed).
#[inline(always)]
fn find_v4(generation: u32, addr: u32) -> u32 {
    let generation = generation & GENERATION_MASK;
    let Some(cfg) = CONFIG.get(generation) else { return ASK_HASH | ASK_TRIE };
    if cfg.flags & config::V4_TABLE == 0 {
        return ASK_HASH | ASK_TRIE;
    }
    let count = cfg.v4_count as usize;
    let mut i = 0;
    while i < MAX_V4_NETS && i < count {
        let n = &cfg.v4_nets[i];
        if addr & n.mask == n.net {
            return in_subnet(generation, cfg, i, addr);
        }
        i += 1;
    }
    // In no VLAN's subnet: no device (they lie in their VLAN's subnets) and
    // not protected.
    0
}

/// Finds IPv6 address `hi:lo` (`Addr::halves`) in the generation's IPv6
/// subnet table: `ASK_HASH` (and `IN_PROTECTED`) for an address in a
/// subnet, 0 for one in none, both asks without a complete table.
#[inline(always)]
fn find_v6(generation: u32, hi: u64, lo: u64) -> u32 {
    let Some(table) = V6_NETS.get(generation & GENERATION_MASK) else {
        return ASK_HASH | ASK_TRIE;
    };
    if table.flags & v6table::COMPLETE == 0 {
        return ASK_HASH | ASK_TRIE;
    }
    let count = table.count as usize;
    let mut i = 0;
    while i < MAX_V6_NETS && i < count {
        let n = &table.nets[i];
        if hi & n.mask_hi == n.net_hi && lo & n.mask_lo == n.net_lo {
            let protected = if n.flags & v4net::PROTECTED != 0 { IN_PROTECTED } else { 0 };
            return ASK_HASH | protected;
        }
        i += 1;
    }
    0
}

#[inline(always)]
fn in_subnet(generation: u32, cfg: &Config, i: usize, addr: u32) -> u32 {
    let Some(n) = cfg.v4_nets.get(i) else { return ASK_HASH | ASK_TRIE };
    let protected = if n.flags & v4net::PROTECTED != 0 { IN_PROTECTED } else { 0 };
    if n.flags & v4net::INDEXED == 0 {
        return ASK_HASH | protected;
    }
    let offset = n.base.wrapping_add(addr & !n.mask);
    let index = generation * V4_INDEX_ENTRIES + (offset & (V4_INDEX_ENTRIES - 1));
    match V4_INDEX.get(index) {
        Some(line) => (*line & LINE_MASK) | protected,
        None => protected,
    }
}

/// The VLAN untagged frames on the frame's interface belong to (0: none,
/// an uplink).
#[inline(always)]
pub fn untagged_vlan(ctx: &impl Frame, generation: u32) -> u16 {
    let ifindex = ctx.arrived_on();
    let found = iface_vlan(generation, ifindex);
    if found & ASK_HASH == 0 {
        return found as u16;
    }
    // SAFETY: IfaceConf is plain data copied out at once; a concurrent
    // update can at worst give the old or new value of the entry.
    match unsafe { IFACES.get(ifindex) } {
        Some(IfaceConf { untagged_vlan, .. }) => *untagged_vlan,
        None => 0,
    }
}

/// Looks `ifindex` up in the configuration line's interfaces: its untagged
/// VLAN, 0, or `ASK_HASH`.
#[inline(always)]
fn iface_vlan(generation: u32, ifindex: u32) -> u32 {
    let Some(cfg) = CONFIG.get(generation & GENERATION_MASK) else { return 0 };
    if cfg.flags & config::IFACES_HASH != 0 {
        return ASK_HASH;
    }
    let count = cfg.iface_count as usize;
    let mut i = 0;
    while i < MAX_UNTAGGED_IFACES && i < count {
        if cfg.ifaces[i].ifindex == ifindex {
            return u32::from(cfg.ifaces[i].vlan);
        }
        i += 1;
    }
    0
}
