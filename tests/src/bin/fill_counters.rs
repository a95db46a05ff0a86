//! `fill_counters PIN_DIR N`: runs the pinned program (BPF_PROG_TEST_RUN) on
//! one allowed and one dropped frame for each of the first N devices of a
//! `cargo xtask gen-policy` policy, so every device has counters — for
//! measuring scrapes and `stats` at scale. Lab use only (root).

use aya::programs::{TestRun as _, Xdp};
use vlanguard_tests::{
    frame::{Frame, L4, v4},
    scale,
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(pins), Some(n)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: fill_counters PIN_DIR N");
    };
    let n: u32 = n.parse()?;
    let prog = Xdp::from_pin(format!("{pins}/prog"), aya_obj::programs::XdpAttachType::Interface)?;
    for i in 0..n {
        let dst = scale::device_ip(i as usize);
        for port in [443, 80] {
            let frame = Frame::ip(v4("10.30.1.1"), dst, L4::tcp(40000, port)).padded();
            prog.test_run(aya::TestRunOptions { data_in: Some(&frame), ..Default::default() })?;
        }
    }
    Ok(())
}
