//! `vlanguard run`: the daemon. It owns the pin directory while it runs,
//! adopts what an earlier daemon pinned, applies the policy file, follows
//! SIGHUP reloads, and on SIGTERM exits with the filter still enforcing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    Filter, Resolved,
    attach::{AttachMode, ifindex},
    compile,
    pins::{Lock, PinDir},
    read_policy, report,
};

#[derive(Clone, Debug)]
pub struct Config {
    pub policy: PathBuf,
    pub ifaces: Vec<String>,
    pub mode: AttachMode,
    pub pin_dir: PathBuf,
    pub stats_interval: u64,
}

/// The running daemon's state.
pub struct Daemon {
    pub config: Config,
    pub pins: PinDir,
    _lock: Lock,
    pub filter: Filter,
    pub policy: Resolved,
    pub generation: u32,
}

impl Daemon {
    /// Everything that can be checked is checked before the kernel is
    /// touched; then the filter is adopted or loaded, the policy applied and
    /// only then new interfaces attached (never a moment without filtering).
    pub fn start(config: Config) -> anyhow::Result<Daemon> {
        let policy = read_policy(&config.policy)?;
        for iface in &config.ifaces {
            ifindex(iface)?;
        }
        let untagged = untagged_ifaces(&config.policy, &policy)?;
        let pins = PinDir::new(&config.pin_dir);
        let lock = pins.lock()?;
        let (mut filter, adopted) = pins.open_filter(&lock)?;
        let generation = filter.apply(&compile(&policy), &untagged)?;

        let mut attached = Vec::new();
        for iface in &config.ifaces {
            if pins.ensure_link(&mut filter, iface, config.mode)? {
                attached.push(iface.clone());
            }
        }
        // Reconcile: interfaces no longer configured stop being filtered.
        for iface in pins.linked_ifaces() {
            if !config.ifaces.contains(&iface) {
                pins.remove_link(&iface)?;
                log(&format!("detached from {iface}: not in --iface any more"));
            }
        }
        log(&format!(
            "{} program in {}; policy {} applied as generation {generation} ({} devices); \
             interfaces {} (newly attached: {})",
            if adopted { "adopted the pinned" } else { "loaded and pinned the" },
            pins.root().display(),
            config.policy.display(),
            policy.devices.len(),
            config.ifaces.join(", "),
            if attached.is_empty() { "none".to_string() } else { attached.join(", ") },
        ));
        Ok(Daemon { config, pins, _lock: lock, filter, policy, generation })
    }

    /// Re-reads the policy file and applies it; an invalid file is reported
    /// and the running policy stays.
    pub fn reload(&mut self) -> anyhow::Result<u32> {
        let policy = read_policy(&self.config.policy)?;
        let untagged = untagged_ifaces(&self.config.policy, &policy)?;
        self.generation = self.filter.apply(&compile(&policy), &untagged)?;
        self.policy = policy;
        Ok(self.generation)
    }

    /// Serves until SIGTERM or SIGINT; the filter stays attached afterwards.
    pub async fn serve(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let period = Duration::from_secs(self.config.stats_interval.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match timed(|| self.reload()) {
                    (Ok(g), took) => log(&format!(
                        "SIGHUP: {} applied as generation {g} in {} ms",
                        self.config.policy.display(),
                        took.as_millis()
                    )),
                    (Err(e), _) => log(&format!("SIGHUP: {e:#}; the running policy stays")),
                },
                _ = tick.tick(), if self.config.stats_interval > 0 => {
                    print!("{}", report::device_table(&self.policy, &self.filter.device_stats()?));
                }
            }
        }
        println!("{}", report::device_table(&self.policy, &self.filter.device_stats()?));
        println!("{}", report::global_table(&self.filter.global_stats()?));
        log(&format!(
            "stopping; the filter stays attached and enforcing (pins in {}); \
             `vlanguard detach` removes it",
            self.pins.root().display()
        ));
        Ok(())
    }
}

/// (ifindex, VLAN) of the policy's `[[interface]]` entries.
fn untagged_ifaces(file: &Path, policy: &Resolved) -> anyhow::Result<Vec<(u32, u16)>> {
    policy
        .interfaces
        .iter()
        .map(|(name, vlan)| {
            let index = ifindex(name).with_context(|| {
                format!("{}: [[interface]] {name:?} (untagged VLAN {vlan})", file.display())
            })?;
            Ok((index, *vlan))
        })
        .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed())
}

pub fn log(message: &str) {
    eprintln!("vlanguard: {message}");
}
