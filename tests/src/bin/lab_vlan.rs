//! `lab-vlan NETNS TRUNK VID=ACCESS...`: turns veths in network namespace
//! NETNS into an 802.1Q switch port set with the lab VLAN program (tc):
//! frames tagged VID arriving on TRUNK leave untagged through ACCESS; frames
//! arriving on ACCESS leave through TRUNK tagged VID. The tc filters stay
//! after this exits and go with the interfaces. Lab use only (root).

use std::{fs::File, os::fd::AsRawFd as _};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::HashMap,
    programs::{SchedClassifier, TcAttachType, tc},
};
use filter_common::lab::{MAP, PROGRAM_NAME, PortAction, PortKey};
use filter_user::{datapath::attach::ifindex, test_objects::LAB_VLAN_OBJECT};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [netns, trunk, ports @ ..] = args.as_slice() else {
        bail!("usage: lab-vlan NETNS TRUNK VID=ACCESS [VID=ACCESS ...]");
    };
    if ports.is_empty() {
        bail!("usage: lab-vlan NETNS TRUNK VID=ACCESS [VID=ACCESS ...]");
    }
    let ns =
        File::open(format!("/var/run/netns/{netns}")).with_context(|| format!("netns {netns}"))?;
    // SAFETY: setns on a namespace fd we own; this program is single-threaded.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {netns}: {}", std::io::Error::last_os_error());
    }

    let mut ebpf = Ebpf::load(LAB_VLAN_OBJECT)?;
    let mut map: HashMap<_, PortKey, PortAction> =
        HashMap::try_from(ebpf.take_map(MAP).context("map")?)?;
    let prog: &mut SchedClassifier =
        ebpf.program_mut(PROGRAM_NAME).context("program")?.try_into()?;
    prog.load()?;
    let trunk_index = ifindex(trunk)?;
    let mut ifaces = vec![trunk.clone()];
    for port in ports {
        let (vid, access) =
            port.split_once('=').with_context(|| format!("{port}: want VID=ACCESS"))?;
        let vid: u16 = vid.parse().with_context(|| format!("{port}: VLAN id"))?;
        let access_index = ifindex(access)?;
        map.insert(
            PortKey { ifindex: trunk_index, vid, _pad: 0 },
            PortAction { target: access_index, push_vid: 0, _pad: 0 },
            0,
        )?;
        map.insert(
            PortKey { ifindex: access_index, vid: 0, _pad: 0 },
            PortAction { target: trunk_index, push_vid: vid, _pad: 0 },
            0,
        )?;
        ifaces.push(access.to_string());
    }
    for iface in &ifaces {
        // An existing clsact qdisc is fine.
        let _ = tc::qdisc_add_clsact(iface);
        let id = prog
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                tc::TcAttachOptions::Netlink(tc::NlOptions::default()),
            )
            .with_context(|| format!("attaching to {iface}"))?;
        // A netlink tc filter lives with the interface; keep aya from
        // removing it when this process exits.
        std::mem::forget(prog.take_link(id)?);
    }
    Ok(())
}
