//! The TC variant of the filter (`vlanguard_tc`), for interfaces whose NIC
//! takes VLAN tags out of frames (`crate::datapath::offload`): the same decision code
//! and maps, attached at TC ingress through a TCX link, pinned beside the
//! XDP program (`DIR/prog_tc`) and its links (`DIR/links/IFACE`, a TCX link
//! instead of an XDP one).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, LinkType, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use filter_common::{TC_PROGRAM_NAME, maps};

use super::{Filter, Program};
use crate::error::LoadError;

/// Where the TC program is pinned, next to the XDP program's pin `prog`
/// (no dot: a BPF filesystem refuses names with one).
pub fn tc_pin(prog: &Path) -> PathBuf {
    let mut name = prog.file_name().unwrap_or_default().to_os_string();
    name.push("_tc");
    prog.with_file_name(name)
}

/// The TC program when it is not in the filter's own object: adopted from
/// its pin, or loaded over the pinned maps (a daemon that adopted the XDP
/// program and now meets an interface that needs TC).
pub(super) enum TcSource {
    Pinned(Box<SchedClassifier>),
    Object(Box<Ebpf>),
}

impl TcSource {
    /// The pinned TC program next to `prog`, if there is one.
    pub(super) fn from_pin(prog: &Path) -> Result<Option<TcSource>, LoadError> {
        let path = tc_pin(prog);
        if !path.exists() {
            return Ok(None);
        }
        let program = SchedClassifier::from_pin(&path).map_err(|e| LoadError::pin("", &path, e))?;
        Ok(Some(TcSource::Pinned(Box::new(program))))
    }
}

fn tc_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    Ok(ebpf
        .program_mut(TC_PROGRAM_NAME)
        .ok_or(LoadError::MissingMap(TC_PROGRAM_NAME))?
        .try_into()?)
}

/// Loads the object's TC program unless it is loaded.
fn ensure_loaded(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    let program = tc_mut(ebpf)?;
    if program.fd().is_err() {
        program.load()?;
    }
    Ok(program)
}

impl Filter {
    /// The TC program, loaded (and pinned, for a pinned filter) on first
    /// use: the verifier's time is spent only where an interface needs it.
    pub fn tc_program(&mut self) -> Result<&mut SchedClassifier, LoadError> {
        let pinned = self.pins.clone();
        if let Program::Loaded(ebpf) = &mut self.program {
            let fresh = tc_mut(ebpf)?.fd().is_err();
            let program = ensure_loaded(ebpf)?;
            if let (true, Some((prog, _))) = (fresh, &pinned) {
                pin(program, prog)?;
            }
            return Ok(program);
        }
        if self.tc.is_none() {
            let Some((prog, maps_dir)) = &pinned else {
                return Err(LoadError::Refused("the TC program needs the pin directory".into()));
            };
            // The XDP program was adopted from its pin: load the TC one
            // from this binary over the same pinned maps.
            let mut loader = EbpfLoader::new();
            let paths: Vec<(&'static str, PathBuf)> =
                maps::ALL.iter().map(|name| (*name, maps_dir.join(name))).collect();
            for (name, path) in &paths {
                loader.map_pin_path(name, path.as_path());
            }
            let mut ebpf = loader.load(crate::PROGRAM_OBJECT)?;
            pin(ensure_loaded(&mut ebpf)?, prog)?;
            self.tc = Some(TcSource::Object(Box::new(ebpf)));
        }
        match self.tc.as_mut() {
            Some(TcSource::Pinned(program)) => Ok(program),
            Some(TcSource::Object(ebpf)) => tc_mut(ebpf),
            None => unreachable!("set above"),
        }
    }

    /// Attaches the TC program to `iface`'s ingress, first in line (a TCX
    /// link, kernel 6.6 or later); the caller pins the link.
    pub fn attach_tc(&mut self, iface: &str) -> Result<FdLink, LoadError> {
        let program = self.tc_program()?;
        let id = program
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(|e| LoadError::Attach {
                iface: iface.to_string(),
                reason: format!(
                    "its NIC takes 802.1Q tags out of frames, and enforcing it at TC ingress \
                     (TCX, Linux 6.6 or later) failed: {e}{}. Nothing was attached to it. Turn \
                     the offload off (`ethtool -K {iface} rxvlan off`, or --vlan-offload=disable \
                     to let vlanguard do it) so that XDP sees the tags",
                    std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default()
                ),
            })?;
        let link = program.take_link(id)?;
        FdLink::try_from(link).map_err(|e| LoadError::system(format!("TCX link of {iface}"), e))
    }
}

fn pin(program: &mut SchedClassifier, prog: &Path) -> Result<(), LoadError> {
    let path = tc_pin(prog);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LoadError::pin("", &path, e));
        }
        _ => {}
    }
    program.pin(&path).map_err(|e| LoadError::pin("pinning the TC program at", &path, e))
}

/// Which hook the link pinned at `path` runs the filter at.
pub fn link_type(path: &Path) -> Result<LinkType, LoadError> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| LoadError::pin("", path, e))?;
    FdLink::from(pinned).info().and_then(|i| i.link_type()).map_err(|e| LoadError::pin("", path, e))
}

/// The pinned links, XDP ones and TCX ones apart.
pub(super) fn links_by_hook(
    paths: &[PathBuf],
) -> Result<(Vec<XdpLink>, Vec<SchedClassifierLink>), LoadError> {
    let (mut xdp, mut tcx) = (Vec::new(), Vec::new());
    for path in paths {
        let open = || -> Result<FdLink, LoadError> {
            Ok(FdLink::from(PinnedLink::from_pin(path).map_err(|e| LoadError::pin("", path, e))?))
        };
        let bad = |e: aya::programs::links::LinkError| LoadError::pin("", path, e);
        match link_type(path)? {
            LinkType::Tcx => tcx.push(SchedClassifierLink::try_from(open()?).map_err(bad)?),
            _ => xdp.push(XdpLink::try_from(open()?).map_err(bad)?),
        }
    }
    Ok((xdp, tcx))
}

/// Whether the TC program of `ebpf` (loaded here, so the verifier has
/// spoken before anything changes) differs from the pinned one, where a
/// filter runs TC at all (a pinned TC program or TCX links).
pub(super) fn needs_upgrade(
    ebpf: &mut Ebpf,
    prog_pin: &Path,
    links: &[SchedClassifierLink],
) -> Result<bool, LoadError> {
    let pin = tc_pin(prog_pin);
    if links.is_empty() && !pin.exists() {
        return Ok(false);
    }
    let new = ensure_loaded(ebpf)?.info()?.tag();
    let old = match SchedClassifier::from_pin(&pin) {
        Ok(p) => Some(p.info()?.tag()),
        Err(_) => None,
    };
    Ok(old != Some(new))
}

/// An upgrade's TC half: the new object's TC program into every TCX link
/// (BPF_LINK_UPDATE, never a moment without a filter) and into the pin, if
/// the running filter had one.
pub(super) fn upgrade(
    ebpf: &mut Ebpf,
    prog_pin: &Path,
    links: Vec<SchedClassifierLink>,
) -> Result<(), LoadError> {
    if links.is_empty() && !tc_pin(prog_pin).exists() {
        return Ok(());
    }
    let program = ensure_loaded(ebpf)?;
    for link in links {
        let id = program.attach_to_link(link)?;
        // The pin keeps the link; this handle only closes its descriptor.
        drop(program.take_link(id)?);
    }
    pin(program, prog_pin)
}
