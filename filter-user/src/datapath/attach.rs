//! Attaching the loaded program to interfaces, with errors an operator can
//! act on.

use aya::programs::{ProgramError, XdpMode, xdp::XdpLinkId};

use crate::{Filter, error::LoadError};

/// How the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// In the driver, before the kernel allocates anything: line rate.
    Native,
    /// In the kernel's generic path: works on every interface, slower.
    Generic,
}

/// The ifindex of `name`, or an error naming it.
pub fn ifindex(name: &str) -> Result<u32, LoadError> {
    crate::sys::net::if_index(name).ok_or_else(|| LoadError::NoSuchInterface(name.to_string()))
}

impl Filter {
    /// Attaches the program to `iface`.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<XdpLinkId, LoadError> {
        let index = ifindex(iface)?;
        let flags = match mode {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        self.program().attach_to_if_index(index, flags).map_err(|e| match (mode, e) {
            // The kernel's answer when the interface already runs an XDP
            // program that is not ours (xdp-filter, a driver tool, ...).
            (_, ProgramError::SyscallError(aya::sys::SyscallError { io_error, .. }))
                if matches!(io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) =>
            {
                LoadError::Attach {
                    iface: iface.to_string(),
                    reason: format!(
                        "another XDP program is attached to it ({io_error}; `ip link show {iface}` \
                         shows it): remove it (`ip link set dev {iface} xdp off`, or the tool that \
                         attached it) and start again"
                    ),
                }
            }
            (AttachMode::Native, e) => LoadError::Attach {
                iface: iface.to_string(),
                reason: format!(
                    "{e}{}; the driver may not support native XDP: \
                     retry with --xdp-mode generic (slower, works everywhere)",
                    std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default()
                ),
            },
            (AttachMode::Generic, ProgramError::UnknownInterface { .. }) => {
                LoadError::NoSuchInterface(iface.to_string())
            }
            (AttachMode::Generic, e) => {
                LoadError::Attach { iface: iface.to_string(), reason: e.to_string() }
            }
        })
    }
}
