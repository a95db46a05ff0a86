//! The pin directory: what keeps the filter enforcing when no daemon runs.
//!
//! ```text
//! DIR/prog            the XDP program
//! DIR/prog_tc         the TC variant, once an interface needs it
//! DIR/maps/NAME       every map (filter_common::maps::ALL)
//! DIR/links/IFACE     one link per interface: XDP, or TCX where the NIC
//!                     takes VLAN tags out of frames (`offload`)
//! ```
//!
//! A daemon holds an exclusive `flock` on `DIR` for as long as it runs, so a
//! second one on the same directory refuses to start. `detach` removes all
//! of it, which detaches the program and frees the maps.

use std::{
    fs::{self, File},
    io,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLinkId,
};

use crate::{
    Filter, LoadError, PROGRAM_OBJECT,
    datapath::{
        attach::AttachMode,
        link_type,
        offload::{self, TagPath, VlanOffload},
        tc_pin,
    },
    sys,
};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vlanguard";

/// How `open_filter` came by the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Nothing was pinned: loaded from this binary and pinned.
    Loaded,
    /// The pinned program is this binary's: adopted as it runs.
    Adopted,
    /// The pinned program was another version's (tags): this binary's was
    /// swapped into its links and pins.
    /// `carried_flows`: open flows moved from an earlier version's flow
    /// table into the flow cache (`flows::carry_over`).
    Upgraded { old: u64, new: u64, carried_flows: u64 },
}

pub struct PinDir {
    root: PathBuf,
}

/// Proof that this process owns the pin directory; released on drop.
pub struct Lock {
    _dir: File,
    /// Directories `lock` created, outermost first (`abandon`).
    created: Vec<PathBuf>,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> PinDir {
        PinDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn prog(&self) -> PathBuf {
        self.root.join("prog")
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.links().join(pin_name(iface))
    }

    /// Whether an earlier daemon left a program here.
    pub fn has_program(&self) -> bool {
        self.prog().exists()
    }

    /// Creates the directory (on a BPF filesystem) and takes the lock.
    pub fn lock(&self) -> Result<Lock, LoadError> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        if !self.root.exists() && !sys::fs::is_bpffs(parent) {
            return Err(LoadError::NotBpffs { dir: self.root.clone(), parent: parent.to_owned() });
        }
        let mut created = Vec::new();
        for dir in [self.root.clone(), self.maps(), self.links()] {
            if !dir.exists() {
                created.push(dir.clone());
            }
            fs::create_dir_all(&dir).map_err(|e| LoadError::pin("creating", &dir, e))?;
        }
        let dir = File::open(&self.root).map_err(|e| LoadError::pin("opening", &self.root, e))?;
        if sys::fs::lock_exclusive(dir.as_fd()).is_err() {
            return Err(LoadError::Locked(self.root.display().to_string()));
        }
        Ok(Lock { _dir: dir, created })
    }

    /// A start that failed before anything was pinned: removes the
    /// directories `lock` created (those still empty) and releases it.
    pub fn abandon(&self, lock: Lock) {
        for dir in lock.created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }

    /// The filter from the pins if an earlier daemon left them, else a fresh
    /// load that pins itself here, with counters for `capacity` devices.
    /// Needs the lock.
    pub fn open_filter(&self, _lock: &Lock, capacity: u32) -> Result<(Filter, Opened), LoadError> {
        if !self.has_program() {
            let filter = Filter::load_pinned(PROGRAM_OBJECT, &self.prog(), &self.maps(), capacity)?;
            return Ok((filter, Opened::Loaded));
        }
        let links: Vec<PathBuf> = self.linked_ifaces().iter().map(|i| self.link(i)).collect();
        match Filter::upgrade_pinned(PROGRAM_OBJECT, &self.prog(), &self.maps(), &links, capacity)?
        {
            Some((filter, old, new, carried_flows)) => {
                Ok((filter, Opened::Upgraded { old, new, carried_flows }))
            }
            None => Ok((Filter::from_pins(&self.prog(), &self.maps())?, Opened::Adopted)),
        }
    }

    /// Interfaces with a pinned link.
    pub fn linked_ifaces(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.links())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| iface_name(&e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    }

    /// Attaches `filter` to `iface` unless a pinned link already does it
    /// right, and pins the new link: XDP, or TC ingress where the NIC takes
    /// VLAN tags out of frames (as `offload` says). An XDP link left on an
    /// interface whose offload is on now is replaced by a TC one (attached
    /// first, so the interface is never unfiltered). Returns whether a
    /// link was attached now, and how the filter there sees tags.
    pub fn ensure_link(
        &self,
        filter: &mut Filter,
        iface: &str,
        mode: AttachMode,
        offload: VlanOffload,
    ) -> Result<(bool, TagPath), LoadError> {
        let path = self.link(iface);
        // A link on no interface (the kernel detached it when the interface
        // was deleted) or on another one (renamed, and a new `iface` came):
        // the interface of that name is not filtered, so it goes.
        if path.exists() && self.link_ifindex(iface) != sys::net::if_index(iface) {
            self.remove_link(iface)?;
        }
        let existing = if path.exists() { Some(link_type(&path)?) } else { None };
        if existing == Some(aya::programs::links::LinkType::Tcx) {
            // TC reads tags in the frame and beside it alike.
            return Ok((false, TagPath::Metadata));
        }
        let offloaded = offload::rx_vlan_offload(iface).map_err(|e| LoadError::Attach {
            iface: iface.to_string(),
            reason: format!("reading its VLAN offload setting (ethtool flags): {e}"),
        })?;
        let tags = match (offloaded, offload) {
            (false, _) => TagPath::InFrame,
            (true, VlanOffload::Read) => TagPath::Metadata,
            (true, VlanOffload::Disable) => {
                offload::disable_rx_vlan_offload(iface).map_err(|e| LoadError::Attach {
                    iface: iface.to_string(),
                    reason: format!(
                        "turning its rx VLAN offload off failed ({e}); run with \
                         --vlan-offload=read to enforce at TC ingress instead"
                    ),
                })?;
                TagPath::OffloadDisabled
            }
            (true, VlanOffload::Refuse) => {
                let state = if existing.is_some() {
                    "An XDP link attached earlier is still there, and it cannot see the \
                     tags: `vlanguard detach` removes it."
                } else {
                    "Nothing was attached to it."
                };
                return Err(LoadError::Attach {
                    iface: iface.to_string(),
                    reason: format!(
                        "its NIC takes 802.1Q tags out of received frames (rx VLAN offload \
                         on): the XDP filter would see every device VLAN frame untagged and \
                         drop it. {state} Turn the offload off (`ethtool -K {iface} rxvlan \
                         off`, or --vlan-offload=disable to let vlanguard do it), or run with \
                         --vlan-offload=read to enforce at TC ingress, where the tag stays \
                         with the packet"
                    ),
                });
            }
        };
        if existing.is_some() && tags != TagPath::Metadata {
            return Ok((false, tags));
        }
        let fd_link = if tags == TagPath::Metadata {
            filter.attach_tc(iface)?
        } else {
            let id: XdpLinkId = filter.attach(iface, mode)?;
            let link = filter.program().take_link(id)?;
            FdLink::try_from(link).map_err(|e| {
                LoadError::system(format!("{iface}: the kernel attached without a BPF link"), e)
            })?
        };
        if existing.is_some() {
            // The XDP link that could not see the tags goes once TC runs:
            // the TC link is pinned first (a dropped handle would detach
            // it), under another name, then moved into the XDP link's place.
            let staged = self.root.join(format!("switching_{}", pin_name(iface)));
            let _ = fs::remove_file(&staged);
            fd_link.pin(&staged).map_err(|e| LoadError::pin("", &staged, e))?;
            self.remove_link(iface)?;
            fs::rename(&staged, &path).map_err(|e| {
                LoadError::pin("moving", &staged, format!("to {}: {e}", path.display()))
            })?;
            return Ok((true, tags));
        }
        fd_link.pin(&path).map_err(|e| LoadError::pin("", &path, e))?;
        Ok((true, tags))
    }

    /// The interface `iface`'s pinned link is on: `None` when no link is
    /// pinned (or it cannot be read), `Some(0)` when the kernel detached it
    /// (the interface was deleted). A renamed interface keeps its link, so
    /// this may differ from `iface`'s ifindex now.
    pub fn link_ifindex(&self, iface: &str) -> Option<u32> {
        sys::bpf::pinned_link_ifindex(&self.link(iface)).ok()
    }

    /// How the filter pinned on `iface` sees VLAN tags, from its link.
    pub fn tag_path(&self, iface: &str) -> Option<TagPath> {
        let path = self.link(iface);
        match link_type(&path).ok()? {
            aya::programs::links::LinkType::Tcx => Some(TagPath::Metadata),
            _ => Some(TagPath::InFrame),
        }
    }

    /// Detaches from `iface` by removing its link pin.
    pub fn remove_link(&self, iface: &str) -> Result<(), LoadError> {
        let path = self.link(iface);
        let link = PinnedLink::from_pin(&path).map_err(|e| LoadError::pin("", &path, e))?;
        // Unpinning hands back the last reference; dropping it detaches.
        drop(link.unpin().map_err(|e| LoadError::pin("", &path, e))?);
        Ok(())
    }

    /// Everything: links (detaching the program), program, maps, the
    /// directory. Needs the lock, so never under a running daemon.
    pub fn detach_all(&self, _lock: &Lock) -> Result<Vec<String>, LoadError> {
        let ifaces = self.linked_ifaces();
        for iface in &ifaces {
            self.remove_link(iface)?;
        }
        let remove = |p: PathBuf| match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LoadError::pin("removing", &p, e)),
            _ => Ok(()),
        };
        remove(self.prog())?;
        remove(tc_pin(&self.prog()))?;
        for name in filter_common::maps::ALL.iter().chain(&filter_common::maps::LEGACY) {
            remove(self.maps().join(name))?;
        }
        for dir in [self.links(), self.maps()] {
            match fs::remove_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(LoadError::pin("removing", &dir, e));
                }
                _ => {}
            }
        }
        // The directory itself goes unless it is a mount point (a BPF
        // filesystem's root, which may also hold the kernel's own
        // `maps.debug`) or holds what others put there: what vlanguard
        // pinned is gone either way.
        if !is_mount_point(&self.root) {
            match fs::remove_dir(&self.root) {
                Err(e)
                    if e.kind() != io::ErrorKind::NotFound
                        && e.kind() != io::ErrorKind::DirectoryNotEmpty =>
                {
                    return Err(LoadError::pin("removing", &self.root, e));
                }
                _ => {}
            }
        }
        Ok(ifaces)
    }
}

/// An interface's link pin name. A BPF filesystem refuses names with a dot,
/// which VLAN subinterfaces have (`eth0.110`): `.` is written `%2E` (and
/// `%` itself `%25`).
fn pin_name(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2E")
}

/// The interface a link pin name stands for.
fn iface_name(pin: &str) -> String {
    pin.replace("%2E", ".").replace("%25", "%")
}

/// Whether `path` is where a filesystem is mounted (its device differs
/// from its parent's).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_with_dots_get_pin_names_without() {
        for iface in ["eth0", "eth0.110", "bond0.20.30", "odd%name", "br-lan"] {
            let pin = pin_name(iface);
            assert!(!pin.contains('.'), "{pin}");
            assert_eq!(iface_name(&pin), iface);
        }
    }
}
