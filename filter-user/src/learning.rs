//! Addresses of devices declared by MAC alone, learned from what they send
//! (ARCHITECTURE §5).
//!
//! A device with `mac` and no `ip` is found by the program by its MAC when
//! a frame's source address is no device's: that frame is dropped as
//! `learning`, and its event (or an ARP/DHCP identity report of the MAC)
//! brings the address here. [`Bindings::claim`] binds it when it lies in
//! the device's VLAN's subnets and is nobody else's; an address already
//! bound to another device, or a static address of one, is a conflict,
//! reported and never rebound. A binding lives until the device has not
//! been seen using it for `[settings] learned_address_ttl`.
//!
//! The bindings are compiled into every policy generation as the device's
//! addresses ([`Bindings::merged`]), bound into the running one at once
//! (`Filter::bind_learned`), and kept in the inventory database across
//! restarts.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{Resolved, policy::ResolvedDevice};

/// Addresses one device may have bound at a time: a device sending from
/// ever new addresses of its subnet must not take them all.
pub const MAX_PER_DEVICE: usize = 8;

/// An address bound to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub device: String,
    pub mac: [u8; 6],
    pub vlan: u16,
    pub addr: IpAddr,
    /// Unix seconds.
    pub bound_at: u64,
    pub last_seen: u64,
}

/// What a claim came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Newly bound.
    Bound(Binding),
    /// Bound to that device already (its last sight refreshed).
    Held,
    /// The address is another device's: `holder`.
    Conflict { holder: String },
    /// The device has `MAX_PER_DEVICE` addresses bound.
    Full,
    /// Not an address the device can have (outside its VLAN's subnets,
    /// link-local, multicast, unspecified).
    Outside,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings {
    by_addr: BTreeMap<IpAddr, Binding>,
}

impl Bindings {
    pub fn new(all: impl IntoIterator<Item = Binding>) -> Bindings {
        Bindings { by_addr: all.into_iter().map(|b| (b.addr, b)).collect() }
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&Binding> {
        self.by_addr.get(addr)
    }

    /// The addresses bound to `device`.
    pub fn of(&self, device: &str) -> Vec<IpAddr> {
        self.by_addr.values().filter(|b| b.device == device).map(|b| b.addr).collect()
    }

    /// Device `index` of `policy` (one that learns) claims `addr`, seen now
    /// (`now`, Unix seconds).
    pub fn claim(&mut self, policy: &Resolved, index: usize, addr: IpAddr, now: u64) -> Claim {
        let Some(d) = policy.devices.get(index).filter(|d| d.learns) else {
            return Claim::Outside;
        };
        if !can_have(policy, d, &addr) {
            return Claim::Outside;
        }
        if let Some(b) = self.by_addr.get_mut(&addr) {
            if b.device == d.name {
                b.last_seen = b.last_seen.max(now);
                return Claim::Held;
            }
            return Claim::Conflict { holder: b.device.clone() };
        }
        if let Some(other) = policy.devices.iter().find(|o| o.addrs.contains(&addr)) {
            return Claim::Conflict { holder: other.name.clone() };
        }
        if self.by_addr.values().filter(|b| b.device == d.name).count() >= MAX_PER_DEVICE {
            return Claim::Full;
        }
        let b = Binding {
            device: d.name.clone(),
            mac: d.mac.unwrap_or_default(),
            vlan: d.vlan,
            addr,
            bound_at: now,
            last_seen: now,
        };
        self.by_addr.insert(addr, b.clone());
        Claim::Bound(b)
    }

    /// Forgets the binding of `addr` (one that could not be installed).
    pub fn remove(&mut self, addr: &IpAddr) -> Option<Binding> {
        self.by_addr.remove(addr)
    }

    /// `device` was seen sending: its bindings are fresh.
    pub fn seen(&mut self, device: &str, now: u64) {
        for b in self.by_addr.values_mut().filter(|b| b.device == device) {
            b.last_seen = b.last_seen.max(now);
        }
    }

    /// Removes and returns the bindings not seen for `ttl` seconds.
    pub fn expire(&mut self, now: u64, ttl: u64) -> Vec<Binding> {
        self.take_where(|b| now.saturating_sub(b.last_seen) >= ttl)
    }

    /// Removes and returns the bindings `policy` no longer supports: the
    /// device is gone, no longer learns, has another MAC or VLAN, or the
    /// address left its subnets or became another device's.
    pub fn retain_valid(&mut self, policy: &Resolved) -> Vec<Binding> {
        self.take_where(|b| {
            let device = policy.devices.iter().find(|d| d.name == b.device);
            !device.is_some_and(|d| {
                d.learns
                    && d.mac == Some(b.mac)
                    && d.vlan == b.vlan
                    && can_have(policy, d, &b.addr)
                    && !policy.devices.iter().any(|o| o.addrs.contains(&b.addr))
            })
        })
    }

    /// `policy` with each device's bound addresses added to it: what is
    /// compiled into the program.
    pub fn merged(&self, policy: &Resolved) -> Resolved {
        let mut merged = policy.clone();
        for d in merged.devices.iter_mut().filter(|d| d.learns) {
            d.addrs.extend(self.of(&d.name));
        }
        merged
    }

    fn take_where(&mut self, drop: impl Fn(&Binding) -> bool) -> Vec<Binding> {
        let gone: Vec<IpAddr> = self.by_addr.values().filter(|b| drop(b)).map(|b| b.addr).collect();
        gone.iter().filter_map(|a| self.by_addr.remove(a)).collect()
    }
}

/// The learning device of `policy` with `mac` on `vlan`: its index.
pub fn device_with_mac(policy: &Resolved, mac: [u8; 6], vlan: u16) -> Option<usize> {
    policy.devices.iter().position(|d| d.learns && d.mac == Some(mac) && d.vlan == vlan)
}

/// Whether `d` may have `addr`: a unicast address in its VLAN's subnets.
fn can_have(policy: &Resolved, d: &ResolvedDevice, addr: &IpAddr) -> bool {
    let special = match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_unicast_link_local(),
    };
    !special
        && policy
            .vlans
            .iter()
            .find(|v| v.id == d.vlan)
            .is_some_and(|v| v.subnets.iter().any(|n| n.contains(addr)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve_policy;

    const MAC: [u8; 6] = [0x58, 0x46, 0xe1, 0, 7, 0x42];

    fn policy() -> Resolved {
        let text = r#"
[[vlan]]
id = 110
name = "pumps"
subnets = ["10.110.0.0/24", "2001:db8:110::/64"]

[[device]]
name = "learner"
vlan = 110
mac = "58:46:e1:00:07:42"

[[device]]
name = "pump"
vlan = 110
ip = ["10.110.0.7"]
"#;
        resolve_policy(text).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_learning_device_binds_addresses_of_its_subnets_once() {
        let p = policy();
        let mut b = Bindings::default();
        assert!(matches!(b.claim(&p, 0, ip("10.110.0.99"), 10), Claim::Bound(_)));
        assert_eq!(b.claim(&p, 0, ip("10.110.0.99"), 20), Claim::Held);
        assert_eq!(b.get(&ip("10.110.0.99")).map(|b| b.last_seen), Some(20));
        assert!(matches!(b.claim(&p, 0, ip("2001:db8:110::99"), 20), Claim::Bound(_)));
        for outside in ["10.120.0.5", "fe80::1", "0.0.0.0", "255.255.255.255", "ff02::1"] {
            assert_eq!(b.claim(&p, 0, ip(outside), 20), Claim::Outside, "{outside}");
        }
        // A device that does not learn claims nothing.
        assert_eq!(b.claim(&p, 1, ip("10.110.0.98"), 20), Claim::Outside);
        assert_eq!(b.of("learner").len(), 2);
        let merged = b.merged(&p);
        assert_eq!(merged.devices[0].addrs, [ip("10.110.0.99"), ip("2001:db8:110::99")]);
        assert_eq!(merged.devices[1].addrs, [ip("10.110.0.7")]);
    }

    #[test]
    fn another_devices_address_is_a_conflict_and_never_rebound() {
        let p = policy();
        let mut b = Bindings::default();
        assert_eq!(b.claim(&p, 0, ip("10.110.0.7"), 1), Claim::Conflict { holder: "pump".into() });
        assert!(b.is_empty());
        let mut two = p.clone();
        let mut second = two.devices[0].clone();
        second.name = "second".into();
        second.mac = Some([2, 0, 0, 0, 0, 9]);
        two.devices.push(second);
        assert!(matches!(b.claim(&two, 0, ip("10.110.0.99"), 1), Claim::Bound(_)));
        assert_eq!(
            b.claim(&two, 2, ip("10.110.0.99"), 2),
            Claim::Conflict { holder: "learner".into() }
        );
        assert_eq!(b.get(&ip("10.110.0.99")).map(|b| b.device.as_str()), Some("learner"));
    }

    #[test]
    fn bindings_are_bounded_expire_and_follow_the_policy() {
        let p = policy();
        let mut b = Bindings::default();
        for i in 0..MAX_PER_DEVICE {
            assert!(matches!(
                b.claim(&p, 0, ip(&format!("10.110.0.{}", 100 + i)), 5),
                Claim::Bound(_)
            ));
        }
        assert_eq!(b.claim(&p, 0, ip("10.110.0.200"), 5), Claim::Full);
        b.seen("learner", 50);
        assert!(b.expire(100, 60).is_empty());
        assert_eq!(b.expire(110, 60).len(), MAX_PER_DEVICE);
        assert!(matches!(b.claim(&p, 0, ip("10.110.0.99"), 5), Claim::Bound(_)));
        // The device now has another MAC: the binding goes.
        let mut changed = p.clone();
        changed.devices[0].mac = Some([2, 0, 0, 0, 0, 1]);
        assert_eq!(b.retain_valid(&changed).len(), 1);
        assert!(b.is_empty());
        assert_eq!(device_with_mac(&p, MAC, 110), Some(0));
        assert_eq!(device_with_mac(&p, MAC, 120), None);
    }
}
