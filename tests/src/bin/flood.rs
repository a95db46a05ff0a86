//! A bounded UDP flood out of one veth, for the end-to-end benchmark: the
//! kernel's XDP live-frames mode (BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES) runs `flood_tx` (XDP_TX) on the same frame
//! over and over, so each run transmits it to the veth's peer without a
//! socket or an skb on the sending side.
//!
//! Run in the sender's network namespace:
//! `flood IFACE SRC_MAC DST_MAC SRC_IP DST_IP DPORT SECONDS CPU`.
//! Prints `sent N in S seconds`.

use std::{
    ffi::CString,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, TestRunOptions,
    programs::{TestRun as _, Xdp},
};
use filter_user::test_objects::BENCH_OBJECT;
use vlanguard_tests::frame::{Frame, L4};

/// Frames per BPF_PROG_TEST_RUN call: about a tenth of a second, so the
/// deadline is kept closely.
const PER_CALL: u32 = 200_000;
/// Frames the kernel sends per batch (its default is 64).
const BATCH: u32 = 64;
/// Upper bound on calls, whatever the clock says.
const MAX_CALLS: u32 = 10_000;

fn mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC address {s}"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("MAC address {s}: six bytes"))
}

/// Fills in the IPv4 header checksum (the frame builder leaves it zero; the
/// receiving stack would drop the frame before any filter saw it).
fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ip = &mut frame[14..34];
    ip[10..12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, src_mac, dst_mac, src, dst, dport, seconds, cpu] = args.as_slice() else {
        bail!("usage: flood IFACE SRC_MAC DST_MAC SRC_IP DST_IP DPORT SECONDS CPU");
    };
    let (src, dst): (IpAddr, IpAddr) = (src.parse()?, dst.parse()?);
    let seconds: u64 = seconds.parse()?;
    let cpu: usize = cpu.parse()?;
    vlanguard_tests::pin_to_cpu(0, cpu).with_context(|| format!("pinning to CPU {cpu}"))?;

    let mut frame = Frame::ip(src, dst, L4::udp(40000, dport.parse()?));
    frame.src_mac = mac(src_mac)?;
    frame.dst_mac = mac(dst_mac)?;
    let mut bytes = frame.padded();
    if src.is_ipv4() {
        fix_ipv4_checksum(&mut bytes);
    }

    let name = CString::new(iface.as_str())?;
    // SAFETY: if_nametoindex reads the NUL-terminated name we own.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface} in this network namespace");
    }
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex. The kernel wants data_end to be the
    // frame's length.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(bytes.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());

    let mut ebpf = Ebpf::load(BENCH_OBJECT)?;
    let prog: &mut Xdp = ebpf.program_mut("flood_tx").context("flood_tx")?.try_into()?;
    prog.load()?;

    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    for _ in 0..MAX_CALLS {
        if Instant::now() >= deadline {
            break;
        }
        prog.test_run(TestRunOptions {
            data_in: Some(&bytes),
            ctx_in: Some(&ctx),
            repeat: PER_CALL,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(BATCH),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN in live-frames mode")?;
        sent += u64::from(PER_CALL);
    }
    println!("sent {sent} in {:.3} seconds", start.elapsed().as_secs_f64());
    Ok(())
}
