//! Operators' actions as the controller handles them: blocklist entries
//! and quarantines, made into `BlockEntry` values with their expiry on the
//! program's clock (boot time), and described back in operator terms.

use std::time::{Duration, SystemTime};

use aya::maps::lpm_trie::Key;
use filter_common::{BLOCK_REASON_LEN, BlockEntry, MAX_BLOCKS, NS_PER_SEC, PeerData};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Filter;
use crate::{error::LoadError, sys, time};

/// An entry that lasts `lasts` from now (`None`: until lifted), with the
/// operator's `reason`.
pub fn entry(lasts: Option<Duration>, reason: &str) -> Result<BlockEntry, String> {
    if reason.len() > BLOCK_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes; at most {BLOCK_REASON_LEN} are kept, say it shorter",
            reason.len()
        ));
    }
    let expires_ns = match lasts {
        None => 0,
        Some(d) if d.is_zero() => return Err("--for must be longer than 0s".into()),
        Some(d) => {
            sys::clock::boot_ns().saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64)
        }
    };
    let mut text = [0u8; BLOCK_REASON_LEN];
    text[..reason.len()].copy_from_slice(reason.as_bytes());
    let created_unix =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(BlockEntry { expires_ns, created_unix, reason: text })
}

/// An entry in operator terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    /// The address or network, or the device.
    pub what: String,
    pub reason: String,
    pub since: String,
    /// RFC 3339, or "never".
    pub expires: String,
    /// Seconds left, `None` for never.
    pub remaining_secs: Option<u64>,
}

pub fn describe(what: String, e: &BlockEntry, now_ns: u64) -> Described {
    let reason_len = e.reason.iter().position(|b| *b == 0).unwrap_or(e.reason.len());
    let remaining = (e.expires_ns != 0).then(|| e.expires_ns.saturating_sub(now_ns) / NS_PER_SEC);
    Described {
        what,
        reason: String::from_utf8_lossy(&e.reason[..reason_len]).into_owned(),
        since: time::date(SystemTime::UNIX_EPOCH + Duration::from_secs(e.created_unix)),
        expires: match remaining {
            None => "never".into(),
            Some(s) => time::date(SystemTime::now() + Duration::from_secs(s)),
        },
        remaining_secs: remaining,
    }
}

impl Described {
    pub fn line(&self) -> String {
        let left = match self.remaining_secs {
            None => "until lifted".to_string(),
            Some(s) => format!("{} left", humantime::format_duration(Duration::from_secs(s))),
        };
        format!("{:<24} {:<18} since {}  {}", self.what, left, self.since, self.reason)
    }
}

impl Filter {
    /// Blocks `net` until boot time `expires_ns` (0: until unblocked).
    /// Keeps the program's longest-prefix lookup right: an entry inside
    /// another lasts at least as long as the one around it, so a more
    /// specific entry expiring never unblocks addresses its enclosing entry
    /// still blocks. Replaces an entry for the same `net`.
    pub fn block(&mut self, net: IpNet, mut entry: BlockEntry) -> Result<(), LoadError> {
        let net = net.trunc();
        // IPv4 lives at ::ffff:0:0/96 in the program's keys: an IPv6 block
        // around or inside it would block IPv4 hosts.
        if crate::compile::overlaps_v4_mapped(&net) {
            return Err(LoadError::Refused(format!(
                "{net} covers IPv4-mapped addresses (::ffff:0:0/96); block IPv4 networks as \
                 such and IPv6 ones outside that range"
            )));
        }
        let later = |a: u64, b: u64| if a == 0 || b == 0 { 0 } else { a.max(b) };
        let mut existing = self.blocks()?;
        // A full trie: expired entries make room; else refused before
        // anything changes (the loop below extends entries inside this
        // one), with more to go on than the kernel's ENOSPC.
        let full = |e: &[(IpNet, BlockEntry)]| {
            e.len() >= MAX_BLOCKS as usize && !e.iter().any(|(n, _)| *n == net)
        };
        if full(&existing) {
            self.prune_actions(sys::clock::boot_ns())?;
            existing = self.blocks()?;
            if full(&existing) {
                return Err(LoadError::Refused(format!(
                    "the blocklist is full ({MAX_BLOCKS} entries): unblock some, or block a \
                     network that covers several"
                )));
            }
        }
        for (other, e) in &existing {
            if *other != net && other.contains(&net) {
                entry.expires_ns = later(entry.expires_ns, e.expires_ns);
            }
        }
        for (inner, mut e) in existing {
            if inner != net && net.contains(&inner) {
                e.expires_ns = later(e.expires_ns, entry.expires_ns);
                self.maps.blocks.insert(&block_key(inner), e, 0)?;
            }
        }
        self.maps.blocks.insert(&block_key(net), entry, 0)?;
        self.count_actions()
    }

    /// Removes the entry for exactly `net`; false if there is none.
    pub fn unblock(&mut self, net: IpNet) -> Result<bool, LoadError> {
        let removed = self.maps.blocks.remove(&block_key(net.trunc())).is_ok();
        self.count_actions()?;
        Ok(removed)
    }

    /// Every blocklist entry, expired ones included.
    pub fn blocks(&self) -> Result<Vec<(IpNet, BlockEntry)>, LoadError> {
        let mut out = Vec::new();
        for key in self.maps.blocks.keys() {
            let key = key?;
            let entry = self.maps.blocks.get(&key, 0)?;
            out.push((block_net(&key), entry));
        }
        Ok(out)
    }

    /// Quarantines the device with counter slot `slot`.
    pub fn quarantine(&mut self, slot: u32, entry: BlockEntry) -> Result<(), LoadError> {
        self.maps.quarantine.insert(slot, entry, 0)?;
        self.count_actions()
    }

    /// Lifts the quarantine of `slot`; false if it had none.
    pub fn release(&mut self, slot: u32) -> Result<bool, LoadError> {
        let removed = self.maps.quarantine.remove(&slot).is_ok();
        self.count_actions()?;
        Ok(removed)
    }

    /// Quarantined devices by counter slot, expired ones included.
    pub fn quarantined(&self) -> Result<Vec<(u32, BlockEntry)>, LoadError> {
        self.maps.quarantine.iter().map(|r| r.map_err(LoadError::from)).collect()
    }

    /// Removes entries that expired before boot time `now_ns`.
    pub fn prune_actions(&mut self, now_ns: u64) -> Result<usize, LoadError> {
        let mut n = 0;
        for (net, e) in self.blocks()? {
            if !e.active(now_ns) && self.maps.blocks.remove(&block_key(net)).is_ok() {
                n += 1;
            }
        }
        for (slot, e) in self.quarantined()? {
            if !e.active(now_ns) && self.maps.quarantine.remove(&slot).is_ok() {
                n += 1;
            }
        }
        self.count_actions()?;
        Ok(n)
    }

    /// Tells the program how many entries to look for (0: skip lookups).
    pub(super) fn count_actions(&mut self) -> Result<(), LoadError> {
        let blocks = self.maps.blocks.keys().count() as u32;
        let quarantined = self.maps.quarantine.keys().count() as u32;
        self.maps.action_counts.set(filter_common::action_counts::BLOCKS, blocks, 0)?;
        self.maps.action_counts.set(filter_common::action_counts::QUARANTINE, quarantined, 0)?;
        Ok(())
    }
}

pub(super) fn block_key(net: IpNet) -> Key<PeerData> {
    let prefix = crate::compile::net_prefixes(&net);
    // An IPv4 net is one prefix; IPv6 nets overlapping ::ffff:0:0/96 are
    // split by net_prefixes, but blocks are taken as given.
    let (addr, len) = match net {
        IpNet::V4(_) => (prefix[0].value.to_be_bytes(), prefix[0].len),
        IpNet::V6(n) => (n.network().octets(), u32::from(n.prefix_len())),
    };
    Key::new(len, addr)
}

pub(super) fn block_net(key: &Key<PeerData>) -> IpNet {
    match crate::addr::key_v4(key.data()) {
        Some(v4) if key.prefix_len() >= 96 => {
            IpNet::V4(ipnet::Ipv4Net::new(v4, (key.prefix_len() - 96) as u8).expect("prefix"))
        }
        _ => {
            let v6 = std::net::Ipv6Addr::from(key.data());
            IpNet::V6(ipnet::Ipv6Net::new(v6, key.prefix_len() as u8).expect("prefix"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_reason_and_expiry() {
        let e = entry(Some(Duration::from_secs(60)), "scan from the guest wifi").expect("entry");
        let now = sys::clock::boot_ns();
        assert!(e.active(now) && !e.active(now + 61_000_000_000));
        let d = describe("10.9.9.9".into(), &e, now);
        assert_eq!(d.reason, "scan from the guest wifi");
        assert!(d.remaining_secs.is_some_and(|s| (58..=60).contains(&s)), "{d:?}");
        let forever = entry(None, "").expect("entry");
        assert!(forever.active(u64::MAX) && describe("x".into(), &forever, now).expires == "never");
        assert!(entry(None, &"x".repeat(49)).unwrap_err().contains("at most 48"));
        assert!(entry(Some(Duration::ZERO), "r").is_err());
    }
}
