//! The two ways a frame reaches the decision: XDP (`vlanguard`, the fast
//! path) and TC ingress (`vlanguard_tc`, for ports whose NIC takes the
//! 802.1Q tag out of the frame and hands it over beside it, README "VLAN
//! offload"). The parser and the decision read a frame only through this
//! trait, so both programs decide with the same code.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use filter_common::{Reason, Verdict};

use crate::{debug, parse::Packet};

pub trait Frame {
    /// The frame's first bytes, `data .. data_end`: every header the
    /// parser reads lies there (`filter_common::MAX_HEADER_START`).
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The whole frame's length, beyond the first buffer of a multi-buffer
    /// (jumbo) XDP frame too.
    fn len(&self) -> u32;
    /// The interface the frame arrived on.
    fn arrived_on(&self) -> u32;
    /// The tag kept beside the frame (the NIC's VLAN offload, or the
    /// kernel's own untagging before TC): `Some(vlan id)`, `None` for none.
    /// It was the frame's outermost tag.
    fn outer_tag(&self) -> Option<u16>;
    /// Logs the decision when the policy turns the debug log on.
    fn log(&self, pkt: &Packet, reason: Reason, verdict: Verdict, ifindex: u32);
    /// Copies `len` bytes of the frame from `offset` to `dst` (beyond the
    /// first buffer too); false if the frame is shorter.
    ///
    /// # Safety
    /// `dst` is valid for writes of `len` bytes.
    unsafe fn copy(&self, offset: u32, dst: *mut u8, len: u32) -> bool;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        // SAFETY: the helper reads the context it is given, this program's.
        unsafe { bpf_xdp_get_buff_len(self.ctx) as u32 }
    }

    #[inline(always)]
    fn arrived_on(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    /// XDP sees the frame as the driver received it; a tag the NIC took is
    /// invisible here, which is why such ports run `vlanguard_tc`.
    #[inline(always)]
    fn outer_tag(&self) -> Option<u16> {
        None
    }

    #[inline(always)]
    fn log(&self, pkt: &Packet, reason: Reason, verdict: Verdict, ifindex: u32) {
        debug::log_decision(self, pkt, reason, verdict, ifindex);
    }

    #[inline(always)]
    unsafe fn copy(&self, offset: u32, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the caller's `dst` holds `len` bytes; the helper checks
        // the frame's side.
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, dst.cast::<c_void>(), len) == 0 }
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }

    #[inline(always)]
    fn arrived_on(&self) -> u32 {
        // SAFETY: the program's own context.
        unsafe { (*self.skb.skb).ingress_ifindex }
    }

    #[inline(always)]
    fn outer_tag(&self) -> Option<u16> {
        // SAFETY: the program's own context.
        let (present, tci) = unsafe { ((*self.skb.skb).vlan_present, (*self.skb.skb).vlan_tci) };
        if present != 0 { Some(tci as u16 & 0x0fff) } else { None }
    }

    /// The debug log is an XDP program reached by tail call; a TC program
    /// cannot call it (program arrays hold one program type). TC ports log
    /// nothing; counters and drop events are the same as on XDP ports.
    #[inline(always)]
    fn log(&self, _pkt: &Packet, _reason: Reason, _verdict: Verdict, _ifindex: u32) {}

    #[inline(always)]
    unsafe fn copy(&self, offset: u32, dst: *mut u8, len: u32) -> bool {
        // SAFETY: as for XDP.
        unsafe {
            bpf_skb_load_bytes(self.skb.skb.cast::<c_void>(), offset, dst.cast::<c_void>(), len)
                == 0
        }
    }
}
