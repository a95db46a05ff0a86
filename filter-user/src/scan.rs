//! Scan detection (`[settings.scan_detection]`): a source that is denied on
//! many distinct targets (device or host, and port) within a window is
//! scanning; the daemon blocks it for a while. Works from the drop events,
//! so it sees what the per-CPU event rate lets through: thresholds are in
//! distinct targets, which a scan produces quickly, not in frames.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    time::Instant,
};

use ipnet::IpNet;

use crate::{events::Event, policy::ScanDetection};

/// Sources being watched, with the targets they were denied on.
#[derive(Debug)]
pub struct Detector {
    config: ScanDetection,
    /// Never blocked automatically (the management networks).
    exempt: Vec<IpNet>,
    sources: HashMap<IpAddr, VecDeque<(Instant, Target)>>,
}

/// A denied destination: address and port (ICMP: type).
type Target = (String, u16);

/// Sources watched at once; beyond it the quietest are forgotten, so a
/// spoofed-source flood cannot grow the daemon without bound.
const MAX_SOURCES: usize = 65_536;

impl Detector {
    pub fn new(config: ScanDetection, exempt: Vec<IpNet>) -> Detector {
        Detector { config, exempt, sources: HashMap::new() }
    }

    pub fn config(&self) -> &ScanDetection {
        &self.config
    }

    /// Takes one drop event seen at `now`; returns the source and the
    /// number of distinct targets when it crosses the threshold (once: its
    /// history starts over).
    pub fn observe(&mut self, e: &Event, now: Instant) -> Option<(IpAddr, usize)> {
        if e.reason != "not-allowed" && e.reason != "unknown-device" {
            return None;
        }
        let src: IpAddr = e.src.parse().ok()?;
        if self.exempt.iter().any(|n| n.contains(&src)) {
            return None;
        }
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&src) {
            let window = self.config.window;
            self.sources.retain(|_, seen| seen.back().is_some_and(|(t, _)| now - *t < window));
            if self.sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        let seen = self.sources.entry(src).or_default();
        seen.push_back((now, (e.dst.clone(), e.dport)));
        while seen.front().is_some_and(|(t, _)| now.duration_since(*t) > self.config.window) {
            seen.pop_front();
        }
        let distinct: HashSet<&Target> = seen.iter().map(|(_, target)| target).collect();
        let n = distinct.len();
        if n >= self.config.targets as usize {
            self.sources.remove(&src);
            return Some((src, n));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn denied(src: &str, dst: &str, port: u16) -> Event {
        Event {
            time: String::new(),
            interface: "uplink".into(),
            vlan: 0,
            device: None,
            direction: None,
            src: src.into(),
            dst: dst.into(),
            proto: "tcp".into(),
            sport: 40000,
            dport: port,
            reason: "not-allowed".into(),
            verdict: "drop".into(),
            to_device: None,
            src_mac: None,
        }
    }

    #[test]
    fn distinct_targets_within_the_window_trip_it() {
        let config = ScanDetection {
            targets: 5,
            window: Duration::from_secs(10),
            block_for: Duration::from_secs(60),
        };
        let mut d = Detector::new(config, vec!["10.20.0.0/16".parse().unwrap()]);
        let t0 = Instant::now();
        // The same target again and again is not a scan.
        for _ in 0..50 {
            assert_eq!(d.observe(&denied("10.30.1.1", "10.110.0.7", 22), t0), None);
        }
        // Spread out beyond the window: forgotten.
        for p in 0..4 {
            assert_eq!(d.observe(&denied("10.30.1.2", "10.110.0.7", p), t0), None);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(d.observe(&denied("10.30.1.2", "10.110.0.7", 99), later), None);
        // Five distinct targets inside it: detected once.
        let scanner: IpAddr = "10.30.1.3".parse().unwrap();
        let mut hits = Vec::new();
        // (Once detected its history starts over; the daemon blocks it, so
        // its next frames are `blocked`, which do not count.)
        for p in 0..9 {
            hits.extend(d.observe(&denied("10.30.1.3", "10.110.0.7", p), t0));
        }
        assert_eq!(hits, vec![(scanner, 5)]);
        // Management networks are never blocked automatically.
        for p in 0..10 {
            assert_eq!(d.observe(&denied("10.20.5.10", "10.110.0.7", p), t0), None);
        }
        // Only denials count.
        let mut allowed = denied("10.30.1.4", "10.110.0.7", 1);
        allowed.reason = "blocked".into();
        assert_eq!(d.observe(&allowed, t0), None);
    }
}
