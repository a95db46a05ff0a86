//! Fragments of datagrams whose first fragment passed (ARCHITECTURE §3 step 4):
//! only the first fragment carries the ports, so the rules can only be
//! asked about it. When it passes (allowed, or part of a flow), its ports
//! are remembered by (source, destination, protocol, identification), as
//! Cilium's fragment map does, and the later fragments of the same
//! datagram are decided with them. A later fragment whose first fragment
//! was not seen, or did not pass, is decided without ports as before.
//!
//! An LRU hash shared by all CPUs: with RSS the fragments of one datagram
//! may arrive on different queues and CPUs.

use aya_ebpf::{macros::map, maps::LruHashMap};
use filter_common::{FRAG_TIMEOUT_NS, FragKey, FragPorts, MAX_FRAGS};

use crate::{
    flow::now,
    parse::{Packet, frag},
    scratch,
};

#[map]
static FRAGS: LruHashMap<FragKey, FragPorts> = LruHashMap::with_max_entries(MAX_FRAGS, 0);

#[inline(always)]
fn key(pkt: &Packet) -> Option<&'static FragKey> {
    // In the CPU's scratch space, not on the stack, as the flow key.
    let slot = scratch::frag_key()?.ptr();
    // SAFETY: this CPU's scratch slot (`scratch::Slot`); plain data
    // written whole.
    unsafe {
        slot.write(FragKey {
            src: pkt.src.0,
            dst: pkt.dst.0,
            id: pkt.frag_id,
            proto: pkt.proto,
            _pad: [0; 3],
        });
        Some(&*slot)
    }
}

/// A later fragment: takes the ports of its datagram's first fragment if
/// that one passed and is remembered.
#[inline(always)]
pub fn recall(pkt: &mut Packet) {
    let Some(k) = key(pkt) else { return };
    // SAFETY: a plain value copied out at once; a concurrent update gives
    // the old or the new ports of the same datagram.
    let Some(p) = (unsafe { FRAGS.get(k) }) else { return };
    let p = *p;
    if now() > p.expires_ns {
        return;
    }
    pkt.sport = p.sport;
    pkt.port = p.dport;
    pkt.l4_known = true;
    pkt.frag = frag::RECALLED;
}

/// A first fragment that passed: remember its ports for the rest.
#[inline(always)]
pub fn remember(pkt: &Packet) {
    let Some(k) = key(pkt) else { return };
    let ports = FragPorts {
        expires_ns: now().saturating_add(FRAG_TIMEOUT_NS),
        sport: pkt.sport,
        dport: pkt.port,
        _pad: 0,
    };
    let _ = FRAGS.insert(k, ports, 0);
}
