//! Drop events, from the ring buffer to everyone who wants them: the
//! recent list (`events`, `stats`, `policy suggest`), `events --follow`
//! connections, the events log, the journal, and scan detection, which
//! blocks a scanning source and reports that as an event of its own.

use std::{
    fs,
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::{Instant, SystemTime},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::{AsyncFd, AsyncFdReadyMutGuard},
    sync::broadcast,
};

use super::{Daemon, detector, log};
use crate::{Resolved, datapath::actions, events, journal::Journal, scan};

/// Ring-buffer records read per wake-up, so scrapes and the CLI stay
/// served under a flood.
const BATCH: usize = 4096;

pub(super) struct EventHub {
    recent: events::Recent,
    followers: broadcast::Sender<events::Event>,
    /// Scan detection, when the policy turns it on.
    scan: Option<scan::Detector>,
    scans_detected: u64,
    /// Opened when serving starts (`open_log`).
    log: Option<fs::File>,
    journal: Option<Arc<Journal>>,
    /// The events' kernel timestamps count from here.
    boot: SystemTime,
}

/// A ring buffer, watched for readiness; `None` when the filter has none
/// to give (`what` names it in errors).
pub(super) fn watch(
    ring: Option<RingBuf<MapData>>,
    what: &str,
) -> anyhow::Result<Option<AsyncFd<RingBuf<MapData>>>> {
    let Some(r) = ring else { return Ok(None) };
    // SAFETY: the RingBuf owns its map's file descriptor for as long as the
    // AsyncFd holds it, and always reports that same one.
    let fd = unsafe { AsyncFd::register_with_interest(r, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the {what} ring buffer: {e}"))?;
    Ok(Some(fd))
}

/// Up to `BATCH` records of a ready ring buffer; readiness is cleared
/// when it is drained.
fn read_batch(mut guard: AsyncFdReadyMutGuard<'_, RingBuf<MapData>>) -> Vec<Vec<u8>> {
    let mut raw: Vec<Vec<u8>> = Vec::new();
    {
        let rb = guard.get_inner_mut();
        while raw.len() < BATCH {
            match rb.next() {
                Some(item) => raw.push(item.to_vec()),
                None => break,
            }
        }
    }
    if raw.len() < BATCH {
        guard.clear_ready();
    }
    raw
}

impl EventHub {
    pub fn new(policy: &Resolved, journal: Option<Arc<Journal>>) -> EventHub {
        EventHub {
            recent: events::Recent::default(),
            followers: broadcast::channel(1024).0,
            scan: detector(policy),
            scans_detected: 0,
            log: None,
            journal,
            boot: crate::sys::clock::boot_time(),
        }
    }

    /// Opens the events log (`--events-log`) for appending.
    pub fn open_log(&mut self, path: Option<&Path>) -> anyhow::Result<()> {
        let Some(path) = path else { return Ok(()) };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        self.log = Some(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("events log {}", path.display()))?,
        );
        Ok(())
    }

    /// A new policy is in force: scan detection follows its settings (a
    /// detector keeps what it counted while they stay).
    pub fn policy_changed(&mut self, old: &Resolved, new: &Resolved) {
        if old.scan_detection != new.scan_detection || old.management != new.management {
            self.scan = detector(new);
        }
    }

    pub fn followers(&self) -> broadcast::Sender<events::Event> {
        self.followers.clone()
    }

    pub fn recent(&self) -> &events::Recent {
        &self.recent
    }

    pub fn scans_detected(&self) -> u64 {
        self.scans_detected
    }

    /// Hands `e` to the log, the journal, the followers and the recent list.
    fn publish(&mut self, e: events::Event) {
        if let Some(f) = self.log.as_mut() {
            let line = format!("{}\n", serde_json::to_string(&e).unwrap_or_default());
            let _ = std::io::Write::write_all(f, line.as_bytes());
        }
        if let Some(j) = &self.journal {
            j.event(&e);
        }
        let _ = self.followers.send(e.clone());
        self.recent.push(e);
    }
}

impl Daemon {
    /// The ring buffer is readable: a bounded batch of events is read,
    /// decoded and published; scans among them are reacted to.
    pub(super) fn drain_events(&mut self, guard: AsyncFdReadyMutGuard<'_, RingBuf<MapData>>) {
        for r in read_batch(guard) {
            let names = self.filter.slot_names();
            let Some(e) = events::decode(
                &r,
                self.events.boot,
                |s| names.get(&s).cloned(),
                crate::sys::net::if_name,
            ) else {
                continue;
            };
            self.inventory.observe(&e, &self.policy);
            let learned = self.learn_from_event(&e);
            let scan = self.events.scan.as_mut().and_then(|d| d.observe(&e, Instant::now()));
            self.events.publish(e);
            if let Some(notice) = learned {
                self.events.publish(notice);
            }
            if let Some(alert) = scan.and_then(|(src, n)| self.scan_detected(src, n)) {
                self.events.publish(alert);
            }
        }
    }

    /// The identity ring buffer is readable: a bounded batch of reports
    /// goes to the inventory, and to learning (`learn`).
    pub(super) fn drain_identity(&mut self, guard: AsyncFdReadyMutGuard<'_, RingBuf<MapData>>) {
        for raw in read_batch(guard) {
            let Some(r) = crate::identity::report::decode(&raw) else { continue };
            let interface = crate::sys::net::if_name(r.ifindex);
            self.inventory.report(&r, interface, &self.policy);
            if let Some(notice) = self.learn_from_report(&r) {
                self.events.publish(notice);
            }
        }
    }

    /// A scan was detected: block the source, report it everywhere.
    fn scan_detected(&mut self, src: IpAddr, targets: usize) -> Option<events::Event> {
        let config = *self.events.scan.as_ref()?.config();
        let reason =
            format!("scan: {targets} targets in {}", humantime::format_duration(config.window));
        let entry = match actions::entry(Some(config.block_for), &reason) {
            Ok(e) => e,
            Err(e) => {
                log(&format!("scan detection: {e}"));
                return None;
            }
        };
        let net = ipnet::IpNet::from(src);
        if let Err(e) = self.filter.block(net, entry) {
            log(&format!("scan detection: blocking {src}: {e}"));
            return None;
        }
        self.events.scans_detected += 1;
        let message = format!(
            "scan detection: {src} was denied on {targets} targets within {}; blocked for {}",
            humantime::format_duration(config.window),
            humantime::format_duration(config.block_for)
        );
        log(&message);
        self.audit.scan_block(net, config.block_for, &reason, &message);
        Some(scan_event(src))
    }
}

/// A detected scan as an event of its own (`reason` `scan-detected`).
fn scan_event(src: IpAddr) -> events::Event {
    notice(src, "scan-detected", "block")
}

/// An event of the daemon's own about `addr` (a scan, an address learned
/// or refused): no frame, so no ports, protocol or interface.
pub(super) fn notice(addr: IpAddr, reason: &str, verdict: &str) -> events::Event {
    events::Event {
        time: crate::time::stamp(SystemTime::now()),
        interface: String::new(),
        vlan: 0,
        device: None,
        direction: None,
        src: addr.to_string(),
        dst: String::new(),
        proto: String::new(),
        sport: 0,
        dport: 0,
        reason: reason.into(),
        verdict: verdict.into(),
        to_device: None,
        src_mac: None,
    }
}
