//! The inventory counted for `/metrics`, `status` and `top`: hosts by VLAN,
//! known or not, new unknown hosts, evictions and the unknown hosts seen
//! last. Counted on the writing thread after each write (and after a
//! policy change), so a scrape or a status request only copies a few
//! numbers and never waits for SQLite.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    sync::{Mutex, MutexGuard, PoisonError},
};

use super::store::{Host, Recorded, Sighting, Store, StoreError};
use crate::{Resolved, policy::parse_mac};

/// Unknown hosts kept for `top`, the latest first.
pub const RECENT: usize = 5;

/// The declared devices as the inventory matches hosts to them (as
/// `view::entries` does: same VLAN, and its MAC or one of its addresses).
/// Made once per policy, not per write.
#[derive(Debug, Default)]
pub struct Declared {
    /// Every declared MAC, whatever its VLAN: never evicted.
    pub keep: HashSet<[u8; 6]>,
    macs: HashSet<(u16, [u8; 6])>,
    addrs: HashSet<(u16, IpAddr)>,
}

impl Declared {
    pub fn of(policy: &Resolved) -> Declared {
        let mut d = Declared::default();
        for device in &policy.devices {
            if let Some(mac) = device.mac {
                d.keep.insert(mac);
                d.macs.insert((device.vlan, mac));
            }
            d.addrs.extend(device.addrs.iter().map(|a| (device.vlan, *a)));
        }
        d
    }

    /// Whether a host of `vlan` with `mac` and `addrs` is a declared device.
    pub fn knows(&self, vlan: u16, mac: [u8; 6], addrs: &[IpAddr]) -> bool {
        self.macs.contains(&(vlan, mac)) || addrs.iter().any(|a| self.addrs.contains(&(vlan, *a)))
    }
}

/// Every host of the store, counted against the declared devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// (VLAN, known) -> hosts.
    pub hosts: BTreeMap<(u16, bool), u64>,
    /// Hosts evicted since the database was created.
    pub evicted: u64,
    /// The unknown hosts seen last, the latest first (at most `RECENT`).
    pub recent_unknown: Vec<Host>,
}

impl Census {
    pub fn of(store: &Store, declared: &Declared) -> Result<Census, StoreError> {
        let mut census = Census { evicted: store.evicted()?, ..Census::default() };
        store.census(|h| census.add(h, declared))?;
        Ok(census)
    }

    fn add(&mut self, h: Host, declared: &Declared) {
        let known = parse_mac(&h.mac).is_ok_and(|m| declared.knows(h.vlan, m, &h.addresses));
        *self.hosts.entry((h.vlan, known)).or_default() += 1;
        if !known {
            keep_recent(&mut self.recent_unknown, h);
        }
    }

    /// Hosts that are no declared device.
    pub fn unknown(&self) -> u64 {
        self.hosts.iter().filter(|((_, known), _)| !known).map(|(_, n)| n).sum()
    }
}

/// Adds `h` to the latest `RECENT` hosts, the latest first.
fn keep_recent(recent: &mut Vec<Host>, h: Host) {
    if recent.len() == RECENT && recent.last().is_some_and(|l| l.last_seen >= h.last_seen) {
        return;
    }
    recent.push(h);
    recent.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.mac.cmp(&b.mac)));
    recent.truncate(RECENT);
}

/// What the inventory's metrics report.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub census: Census,
    /// VLAN -> hosts first recorded since the daemon started that were no
    /// declared device then.
    pub new_unknown: BTreeMap<u16, u64>,
    /// Writes of the database that failed since the daemon started (a full
    /// or read-only disk): their sightings are lost, the daemon runs on.
    pub write_errors: u64,
    /// The last write failed (so the next success is logged).
    pub failing: bool,
}

impl Tally {
    /// Counts the hosts `batch` created that no declared device is.
    fn add_new(&mut self, batch: &[Sighting], recorded: &Recorded, declared: &Declared) {
        for s in recorded.created.iter().filter_map(|i| batch.get(*i)) {
            let address = s.address.or(s.dhcp.as_ref().and_then(|d| d.requested));
            let addrs: Vec<IpAddr> = address.into_iter().collect();
            if !declared.knows(s.vlan, s.mac, &addrs) {
                *self.new_unknown.entry(s.vlan).or_default() += 1;
            }
        }
    }
}

/// One job of the writing thread: `batch` recorded (its new unknown hosts
/// counted), then every host counted again. `tally` is locked only to
/// store the results.
pub fn write(
    store: &mut Store,
    batch: &[Sighting],
    declared: &Declared,
    tally: &Mutex<Tally>,
) -> Result<(), StoreError> {
    if !batch.is_empty() {
        let recorded = store.record(batch, &declared.keep)?;
        lock(tally).add_new(batch, &recorded, declared);
    }
    let census = Census::of(store, declared)?;
    lock(tally).census = census;
    Ok(())
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    const POLICY: &str = r#"
[[vlan]]
id = 110
name = "pumps"
subnets = ["10.110.0.0/24"]

[[vlan]]
id = 120
name = "monitors"
subnets = ["10.120.0.0/24"]

[[device]]
name = "pump-1"
vlan = 110
ip = ["10.110.0.10"]
mac = "00:1b:63:00:00:01"

[[device]]
name = "monitor-1"
vlan = 120
ip = ["10.120.0.11"]
"#;

    fn declared() -> Declared {
        Declared::of(&crate::resolve_policy(POLICY).expect("policy"))
    }

    fn seen(last: u8, vlan: u16, addr: &str, at: u64) -> Sighting {
        Sighting {
            mac: [0x00, 0x1b, 0x63, 0, 0, last],
            vlan,
            interface: "trunk0".into(),
            address: Some(addr.parse().expect("address")),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            frames: 1,
            vendor: None,
            dhcp: None,
        }
    }

    #[test]
    fn hosts_are_known_by_mac_or_address_on_their_own_vlan() {
        let d = declared();
        let pump = [0x00, 0x1b, 0x63, 0, 0, 1];
        let other = [0x00, 0x1b, 0x63, 0, 0, 9];
        let addr = |a: &str| -> Vec<IpAddr> { vec![a.parse().expect("address")] };
        assert!(d.knows(110, pump, &addr("10.110.0.99")), "its MAC");
        assert!(!d.knows(120, pump, &[]), "its MAC on another VLAN");
        assert!(d.knows(120, other, &addr("10.120.0.11")), "a declared address");
        assert!(!d.knows(110, other, &addr("10.120.0.11")), "that address on another VLAN");
        assert_eq!(d.keep.len(), 1);
    }

    #[test]
    fn writes_count_new_unknown_hosts_and_every_host_by_vlan() {
        let (mut store, tally) =
            (Store::in_memory(100).expect("store"), Mutex::new(Tally::default()));
        let batch = [
            seen(1, 110, "10.110.0.10", 1), // pump-1: known
            seen(2, 110, "10.110.0.50", 2), // unknown
            seen(2, 110, "10.110.0.51", 3), // the same host
            seen(3, 120, "10.120.0.11", 4), // monitor-1's address: known
            seen(4, 120, "10.120.0.77", 5), // unknown
        ];
        write(&mut store, &batch, &declared(), &tally).expect("write");
        // Seen again: not new.
        write(&mut store, &batch[1..2], &declared(), &tally).expect("write");
        let t = lock(&tally).clone();
        assert_eq!(t.new_unknown, BTreeMap::from([(110, 1), (120, 1)]));
        let want = BTreeMap::from([
            ((110, false), 1),
            ((110, true), 1),
            ((120, false), 1),
            ((120, true), 1),
        ]);
        assert_eq!(t.census.hosts, want);
        assert_eq!(t.census.unknown(), 2);
        let recent: Vec<&str> = t.census.recent_unknown.iter().map(|h| h.mac.as_str()).collect();
        assert_eq!(recent, ["00:1b:63:00:00:04", "00:1b:63:00:00:02"], "latest first");
        // A policy that declares host 2 makes it known at the next count.
        let adopted = format!(
            "{POLICY}\n[[device]]\nname = \"pump-2\"\nvlan = 110\nip = [\"10.110.0.50\"]\nmac = \"00:1b:63:00:00:02\"\n"
        );
        let d = Declared::of(&crate::resolve_policy(&adopted).expect("policy"));
        write(&mut store, &[], &d, &tally).expect("recount");
        let t = lock(&tally).clone();
        assert_eq!(t.census.hosts.get(&(110, false)), None, "no unknown host left on 110");
        assert_eq!(t.census.hosts.get(&(110, true)), Some(&2));
        assert_eq!(t.new_unknown.get(&110), Some(&1), "a count of what happened, kept");
    }

    #[test]
    fn the_latest_unknown_hosts_are_kept_latest_first() {
        let d = Declared::default();
        let mut census = Census::default();
        for i in 0..20u8 {
            let mut h = host(i);
            h.last_seen = u64::from((i * 7) % 20);
            census.add(h, &d);
        }
        let seen: Vec<u64> = census.recent_unknown.iter().map(|h| h.last_seen).collect();
        assert_eq!(seen, [19, 18, 17, 16, 15]);
        assert_eq!(census.unknown(), 20);
    }

    fn host(last: u8) -> Host {
        Host {
            mac: format!("00:1b:63:00:00:{last:02x}"),
            vendor: None,
            vlan: 110,
            interface: "trunk0".into(),
            addresses: Vec::new(),
            first_seen: 0,
            last_seen: 0,
            frames: 1,
            dhcp: None,
        }
    }
}
