//! The passive inventory: every host seen on a protected VLAN, with its
//! MAC's vendor, addresses and what its DHCP client said (issue 17; the
//! program's reports come next). Sightings gather in memory (`Pending`),
//! merged per host and address and bounded, so a flood of new MACs costs
//! the event loop a hash insert each and no disk write; a batch goes to
//! `store` (SQLite) once per interval, off the event loop.

pub mod store;
pub mod view;

use std::{collections::HashMap, net::IpAddr};

use filter_policy::identity::oui::Vendors;
use store::Sighting;

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
