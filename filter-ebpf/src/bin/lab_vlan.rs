//! Test lab only: a tc ingress program that switches VLANs between veths,
//! standing in for 802.1Q subinterfaces (this lab kernel has no 8021q).
//! By the time tc runs, the stack has moved an 802.1Q tag out of the frame
//! into the skb; this program pops it and redirects the frame to its VLAN's
//! veth, or pushes the tag of an access veth and redirects to the trunk.
#![no_std]
#![no_main]

// The panic handler.
use filter_ebpf as _;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_skb_vlan_pop, bpf_skb_vlan_push},
    macros::{classifier, map},
    maps::HashMap,
    programs::TcContext,
};
use filter_common::{
    ethertype,
    lab::{PortAction, PortKey},
};

#[map]
static LAB_VLAN: HashMap<PortKey, PortAction> = HashMap::with_max_entries(64, 0);

#[classifier]
pub fn lab_vlan(ctx: TcContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer the kernel passed in; these are
    // readable __sk_buff fields.
    let (ifindex, present, tci) = unsafe { ((*skb).ifindex, (*skb).vlan_present, (*skb).vlan_tci) };
    let vid = if present != 0 { (tci & 0x0fff) as u16 } else { 0 };
    let key = PortKey { ifindex, vid, _pad: 0 };
    // SAFETY: plain data copied out at once.
    let Some(action) = (unsafe { LAB_VLAN.get(key) }).copied() else {
        // Tagged frames of VLANs this port does not carry are dropped, as a
        // switch would; untagged frames of a port not configured pass.
        return if present != 0 { TC_ACT_SHOT } else { TC_ACT_OK };
    };
    // SAFETY: helpers called with the program's own skb context.
    let done = unsafe {
        if present != 0 {
            bpf_skb_vlan_pop(skb)
        } else {
            bpf_skb_vlan_push(skb, ethertype::VLAN_8021Q.to_be(), action.push_vid)
        }
    };
    if done != 0 {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(action.target, 0) as i32 }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
