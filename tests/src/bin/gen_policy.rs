//! Prints the benchmarks' policy of N devices (`scale::policy_toml`) for
//! `cargo xtask gen-policy`.

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => anyhow::bail!("usage: gen_policy DEVICES"),
    };
    if n > vlanguard_tests::scale::MAX_DEVICES {
        anyhow::bail!("at most {} devices", vlanguard_tests::scale::MAX_DEVICES);
    }
    print!("{}", vlanguard_tests::scale::policy_toml(n));
    Ok(())
}
