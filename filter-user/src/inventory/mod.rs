//! The passive inventory: every host seen on a protected VLAN, with its
//! MAC's vendor, addresses and what its DHCP client said. A host is seen
//! through its frames the program drops as `unknown-device` (their drop
//! events carry the source MAC) and through the program's identity
//! reports: its ARP, IPv6 neighbour discovery and DHCP client messages.
//! Sightings gather in memory (`Pending`), merged per host and address and
//! bounded, so a flood of new MACs costs the event loop a hash insert each
//! and no disk write; a batch goes to `store` (SQLite) once a second, on a
//! blocking thread, which then counts the hosts for the metrics (`tally`).

pub mod store;
pub mod tally;
pub mod view;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use filter_common::{Direction, Reason};
use filter_policy::identity::{
    oui::{self, Vendors},
    report::Report,
};
use store::{Host, Sighting, Store, StoreError};
use tally::{Declared, Tally};

use crate::{Resolved, events::Event, learning::Binding, policy::parse_mac};

/// Where the daemon keeps the inventory unless told otherwise.
pub const DEFAULT_DB: &str = "/var/lib/vlanguard/inventory.db";
/// Hosts kept unless told otherwise (`--inventory-capacity`); the ones
/// seen longest ago give way.
pub const DEFAULT_CAPACITY: u32 = 65_536;
/// Distinct sightings held between two writes.
const PENDING: usize = 8192;

/// The daemon's inventory.
pub struct Inventory {
    pending: Pending,
    /// Learned bindings made, refreshed (`Some`) or ended (`None`) since
    /// the last write.
    bindings: Vec<(IpAddr, Option<Binding>)>,
    store: Arc<Mutex<Store>>,
    /// A write is running: the next batch waits for the next second.
    writing: Arc<AtomicBool>,
    /// The policy's devices as hosts are matched to them; `None` after a
    /// policy change (made again, and the hosts counted again, at the next
    /// flush).
    declared: Option<Arc<Declared>>,
    /// The counts, as of the last write.
    tally: Arc<Mutex<Tally>>,
}

impl Inventory {
    /// The inventory in the database at `path` (`None`: in memory only) of
    /// at most `capacity` hosts, vendors from Debian's ieee-data. What could
    /// not be opened is said in the returned warnings; the daemon runs on
    /// without it.
    pub fn open(path: Option<&Path>, capacity: usize) -> (Inventory, Vec<String>) {
        let mut warnings = Vec::new();
        let vendors = Vendors::load(Path::new(oui::DEBIAN_DIR)).unwrap_or_else(|e| {
            warnings.push(format!(
                "MAC vendors: {}: {e} (install Debian's ieee-data)",
                oui::DEBIAN_DIR
            ));
            Vendors::default()
        });
        let store = match path.map(|p| {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            Store::open(p, capacity)
        }) {
            Some(Ok(s)) => s,
            other => {
                if let (Some(p), Some(Err(e))) = (path, other) {
                    warnings.push(format!("{}: {e}; the inventory is kept in memory", p.display()));
                }
                Store::in_memory(capacity).expect("an in-memory database opens")
            }
        };
        let inventory = Inventory {
            pending: Pending::new(PENDING, vendors),
            bindings: Vec::new(),
            store: Arc::new(Mutex::new(store)),
            writing: Arc::new(AtomicBool::new(false)),
            declared: None,
            tally: Arc::default(),
        };
        (inventory, warnings)
    }

    /// A drop event: a sighting when an unknown host of a protected
    /// VLAN's subnets sent it.
    pub fn observe(&mut self, e: &Event, policy: &Resolved) {
        if let Some(s) = sighting(e, policy) {
            self.pending.observe(s);
        }
    }

    /// An identity report of the program (ARP, NDP, a DHCP client
    /// message) from `interface`.
    pub fn report(&mut self, r: &Report, interface: String, policy: &Resolved) {
        if let Some(s) = reported(r, interface, policy) {
            self.pending.observe(s);
        }
    }

    /// The policy changed: hosts are matched to its devices from the next
    /// flush on, and counted again then.
    pub fn policy_changed(&mut self) {
        self.declared = None;
    }

    /// Writes what is pending (sightings, learned bindings) on a blocking
    /// thread and counts the hosts, unless there is nothing to write or
    /// count or a write is still running. Declared devices' MACs are never
    /// evicted (the store counts what is).
    pub fn flush(&mut self, policy: &Resolved) {
        let recount = self.declared.is_none();
        if (self.pending.is_empty() && self.bindings.is_empty() && !recount)
            || self.writing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let declared = self.declared.get_or_insert_with(|| Arc::new(Declared::of(policy))).clone();
        let batch = self.pending.take();
        let bindings = std::mem::take(&mut self.bindings);
        let (store, writing, tally) =
            (self.store.clone(), self.writing.clone(), self.tally.clone());
        tokio::task::spawn_blocking(move || {
            let written = store.lock().map(|mut s| {
                s.save_bindings(&bindings)?;
                tally::write(&mut s, &batch, &declared, &tally)
            });
            let error = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("a write panicked".to_string()),
            };
            // Said once when writes start failing and once when they work
            // again, not every second; counted for the metrics.
            let mut t = tally::lock(&tally);
            match error {
                Some(e) => {
                    t.write_errors += 1;
                    if !std::mem::replace(&mut t.failing, true) {
                        eprintln!(
                            "vlanguard: inventory: {e}; sightings are lost until the database \
                             can be written again (enforcement is not affected)"
                        );
                    }
                }
                None if std::mem::replace(&mut t.failing, false) => {
                    eprintln!("vlanguard: inventory: the database is written again");
                }
                None => {}
            }
            drop(t);
            writing.store(false, Ordering::Release);
        });
    }

    /// Writes what is pending now (the daemon is stopping).
    pub fn flush_now(&mut self, policy: &Resolved) -> Result<(), StoreError> {
        if self.pending.is_empty() && self.bindings.is_empty() {
            return Ok(());
        }
        let batch = self.pending.take();
        let bindings = std::mem::take(&mut self.bindings);
        let declared = self.declared.clone().unwrap_or_else(|| Arc::new(Declared::of(policy)));
        let mut store = tally::lock(&self.store);
        store.save_bindings(&bindings)?;
        store.record(&batch, &declared.keep).map(|_| ())
    }

    /// A learned binding made or refreshed (`Some`) or ended (`None`), to
    /// be written with the next batch.
    pub fn binding_changed(&mut self, addr: IpAddr, binding: Option<Binding>) {
        self.bindings.push((addr, binding));
    }

    /// The learned bindings as last written.
    pub fn bindings(&self) -> Result<Vec<Binding>, StoreError> {
        tally::lock(&self.store).bindings()
    }

    /// The counts as of the last write (a copy of a few numbers: the
    /// metrics and `status` never wait for the database).
    pub fn tally(&self) -> Tally {
        tally::lock(&self.tally).clone()
    }

    /// Sightings dropped since the daemon started because the batch
    /// waiting for the next write was full.
    pub fn sightings_dropped(&self) -> u64 {
        self.pending.dropped
    }

    /// Every host, as last written (a write in progress finishes first).
    pub fn hosts(&self) -> Result<Vec<Host>, StoreError> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).hosts()
    }
}

/// The sighting a drop event stands for: its source was no device, its
/// address lies in a protected VLAN's subnets (so the MAC is the host's
/// own, not a router's), and the event names the MAC.
fn sighting(e: &Event, policy: &Resolved) -> Option<Sighting> {
    // A device as the source (`out`) is not unknown; an unknown host
    // sending to a device is (`in`).
    if e.reason != Reason::UnknownDevice.name() || e.direction == Some(Direction::Out) {
        return None;
    }
    let mac = parse_mac(e.src_mac.as_deref()?).ok()?;
    let src: IpAddr = e.src.parse().ok()?;
    let vlan = policy
        .vlans
        .iter()
        .filter(|v| v.protected && (e.vlan == 0 || v.id == e.vlan))
        .find(|v| v.subnets.iter().any(|n| n.contains(&src)))?;
    Some(Sighting {
        mac,
        vlan: vlan.id,
        interface: e.interface.clone(),
        address: Some(src),
        at: SystemTime::now(),
        frames: 1,
        vendor: None,
        dhcp: None,
    })
}

/// The sighting an identity report stands for: a host of a protected VLAN,
/// with the address it sent from if that lies in the VLAN's subnets (else
/// the one its DHCP client asks for), and what its DHCP client said; none
/// for a report with neither.
fn reported(r: &Report, interface: String, policy: &Resolved) -> Option<Sighting> {
    let vlan = policy.vlans.iter().find(|v| v.protected && v.id == r.vlan)?;
    let dhcp = match &r.dhcp {
        Some(Ok(d)) => Some(d.clone()),
        // A DHCP report that does not parse says nothing trustworthy.
        Some(Err(_)) => return None,
        None => None,
    };
    let ours = |a: &IpAddr| vlan.subnets.iter().any(|n| n.contains(a));
    let address = match r.src {
        Some(a) => Some(a).filter(ours),
        None => dhcp.as_ref().and_then(|d| d.requested).filter(ours),
    };
    // Neighbour discovery from link-local or unspecified addresses alone
    // says nothing an operator can act on (and bridges and switch ports
    // send it from their own MACs): a host is listed once it uses an
    // address of its VLAN or asks DHCP for one.
    if address.is_none() && dhcp.is_none() {
        return None;
    }
    Some(Sighting {
        mac: r.mac,
        vlan: vlan.id,
        interface,
        address,
        at: SystemTime::now(),
        frames: 1,
        vendor: None,
        dhcp,
    })
}

/// Sightings not yet written, merged per (MAC, VLAN, address).
pub struct Pending {
    sightings: HashMap<([u8; 6], u16, Option<IpAddr>), Sighting>,
    /// Distinct sightings held at most between two writes; more are
    /// dropped and counted (a flood of random MACs must not grow memory).
    limit: usize,
    /// Sightings dropped because `limit` was reached, since start.
    pub dropped: u64,
    vendors: Vendors,
}

impl Pending {
    pub fn new(limit: usize, vendors: Vendors) -> Pending {
        Pending { sightings: HashMap::new(), limit, dropped: 0, vendors }
    }

    /// Adds one sighting: merged with one of the same host and address
    /// (frames added, the later time and DHCP fields kept), else held if
    /// there is room. Returns whether it was kept.
    pub fn observe(&mut self, mut s: Sighting) -> bool {
        let key = (s.mac, s.vlan, s.address);
        if let Some(held) = self.sightings.get_mut(&key) {
            held.frames += s.frames;
            held.at = held.at.max(s.at);
            held.interface = s.interface;
            if s.dhcp.is_some() {
                held.dhcp = s.dhcp;
            }
            return true;
        }
        if self.sightings.len() >= self.limit {
            self.dropped += 1;
            return false;
        }
        if s.vendor.is_none() {
            s.vendor = self.vendors.lookup(s.mac).map(str::to_string);
        }
        self.sightings.insert(key, s);
        true
    }

    /// Everything held, for one write.
    pub fn take(&mut self) -> Vec<Sighting> {
        self.sightings.drain().map(|(_, s)| s).collect()
    }

    pub fn len(&self) -> usize {
        self.sightings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sightings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use filter_policy::identity::dhcp::DhcpClient;

    use super::*;

    fn seen(last: u8, addr: Option<&str>, at: u64) -> Sighting {
        Sighting {
            mac: [0x00, 0x1b, 0x63, 0, 0, last],
            vlan: 110,
            interface: "trunk0".into(),
            address: addr.map(|a| a.parse().expect("address")),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            frames: 2,
            vendor: None,
            dhcp: None,
        }
    }

    fn vendors() -> Vendors {
        let mut v = Vendors::default();
        v.add_csv("Registry,Assignment,Organization Name,Organization Address\nMA-L,001B63,Apple Inc,Cupertino\n");
        v
    }

    #[test]
    fn sightings_of_one_host_and_address_merge() {
        let mut p = Pending::new(10, vendors());
        assert!(p.observe(seen(1, Some("10.110.0.7"), 5)));
        assert!(p.observe(seen(1, Some("10.110.0.7"), 9)));
        let mut dhcp = seen(1, None, 7);
        dhcp.dhcp = Some(DhcpClient { hostname: Some("pump".into()), ..DhcpClient::default() });
        assert!(p.observe(dhcp));
        assert_eq!(p.len(), 2, "one per address, the DHCP sighting has none");
        let mut batch = p.take();
        batch.sort_by_key(|s| s.address);
        assert!(p.is_empty());
        assert_eq!(batch[1].frames, 4);
        assert_eq!(batch[1].at, SystemTime::UNIX_EPOCH + Duration::from_secs(9));
        assert_eq!(batch[1].vendor.as_deref(), Some("Apple Inc"));
        assert_eq!(batch[0].dhcp.as_ref().and_then(|d| d.hostname.as_deref()), Some("pump"));
    }

    #[test]
    fn a_flood_of_new_hosts_is_bounded_and_counted() {
        let mut p = Pending::new(100, vendors());
        for i in 0..1000u32 {
            let mut s = seen(0, Some("10.110.0.1"), 1);
            s.mac[3..].copy_from_slice(&i.to_be_bytes()[1..]);
            p.observe(s);
        }
        assert_eq!(p.len(), 100);
        assert_eq!(p.dropped, 900);
        // A host already held still merges when full.
        let mut again = seen(0, Some("10.110.0.1"), 2);
        again.mac[3..].copy_from_slice(&5u32.to_be_bytes()[1..]);
        assert!(p.observe(again));
        assert_eq!(p.dropped, 900);
    }
}
