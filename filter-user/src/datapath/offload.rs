//! VLAN offload: many NICs take the 802.1Q tag out of a received frame and
//! hand it over beside it (`rx-vlan-hw-parse`, "rxvlan", on by default on
//! most drivers and on veth). The XDP program sees the frame as the driver
//! received it, without the tag, so on such a port every device VLAN frame
//! would look untagged and be dropped as `wrong-vlan`. What vlanguard does
//! about it, per interface, is `--vlan-offload` (README "VLAN offload").

use std::io;

use crate::sys;

/// What to do on an interface whose NIC takes VLAN tags out of frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VlanOffload {
    /// Enforce there at TC ingress, where the kernel keeps the tag with
    /// the packet (same decisions and counters; per packet it costs more
    /// than XDP, which runs before the kernel builds a socket buffer).
    #[default]
    Read,
    /// Turn the NIC's rx VLAN offload off (and log it), then enforce with
    /// XDP. On veth the sending side decides instead (its `txvlan`).
    Disable,
    /// Refuse such interfaces, naming what to do; nothing is attached.
    Refuse,
}

/// How the filter on an interface sees VLAN tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagPath {
    /// XDP; the NIC leaves tags in the frame.
    InFrame,
    /// TC ingress; a tag the NIC took is read from the packet's metadata.
    Metadata,
    /// XDP; vlanguard turned the NIC's rx VLAN offload off.
    OffloadDisabled,
}

impl TagPath {
    /// As `status` and the `tags` label of `vlanguard_interface_attached` say it.
    pub fn name(self) -> &'static str {
        match self {
            TagPath::InFrame => "in-frame",
            TagPath::Metadata => "metadata",
            TagPath::OffloadDisabled => "offload-disabled",
        }
    }

    /// The hook the filter runs at.
    pub fn hook(self) -> &'static str {
        match self {
            TagPath::Metadata => "tc",
            TagPath::InFrame | TagPath::OffloadDisabled => "xdp",
        }
    }
}

// <linux/ethtool.h>: the legacy flags commands, which every kernel still
// answers from the device's features (ETH_FLAG_RXVLAN is
// NETIF_F_HW_VLAN_CTAG_RX, what ethtool calls rx-vlan-offload).
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// Whether `iface`'s NIC takes VLAN tags out of received frames. An
/// interface without ethtool flags (loopback, some virtual ones) does not.
pub fn rx_vlan_offload(iface: &str) -> io::Result<bool> {
    match sys::net::ethtool(iface, ETHTOOL_GFLAGS, 0) {
        Ok(flags) => Ok(flags & ETH_FLAG_RXVLAN != 0),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Turns `iface`'s rx VLAN offload off (`ethtool -K IFACE rxvlan off`),
/// leaving its other flags as they are; checks that it took.
pub fn disable_rx_vlan_offload(iface: &str) -> io::Result<()> {
    let flags = sys::net::ethtool(iface, ETHTOOL_GFLAGS, 0)?;
    sys::net::ethtool(iface, ETHTOOL_SFLAGS, flags & !ETH_FLAG_RXVLAN)?;
    if rx_vlan_offload(iface)? {
        return Err(io::Error::other("the driver kept rx VLAN offload on"));
    }
    Ok(())
}
