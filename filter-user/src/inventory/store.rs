//! The inventory on disk: one SQLite database under the daemon's state
//! directory, so what was seen survives restarts and upgrades. Sightings
//! arrive in batches, each written in one transaction; the table is
//! bounded, the hosts seen longest ago evicted first (declared devices'
//! MACs never), and the evictions counted.

use std::{
    collections::HashSet,
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime},
};

use filter_policy::{addr::mac_text, identity::dhcp::DhcpClient};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::learning::Binding;
use serde::{Deserialize, Serialize};

/// One host seen on a protected VLAN: a frame from `address` (if it had
/// one), or a DHCP client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub mac: [u8; 6],
    pub vlan: u16,
    pub interface: String,
    pub address: Option<IpAddr>,
    pub at: SystemTime,
    /// Frames this sighting stands for (the program reports a host once
    /// per interval, with the frames it saw).
    pub frames: u64,
    pub vendor: Option<String>,
    pub dhcp: Option<DhcpClient>,
}

/// A host as the inventory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub mac: String,
    pub vendor: Option<String>,
    pub vlan: u16,
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// Seconds since the epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    pub frames: u64,
    pub dhcp: Option<HostDhcp>,
}

/// The last DHCP client message's identifying fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDhcp {
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    pub parameters: Vec<u16>,
    pub mud_url: Option<String>,
}

/// What writing a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Hosts evicted to keep the table bounded.
    pub evicted: u64,
    /// The batch's sightings that made a new host, by index.
    pub created: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("inventory database: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// The schema; `user_version` says which one a file holds.
const SCHEMA: &str = "
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS hosts (
    mac TEXT NOT NULL,
    vlan INTEGER NOT NULL,
    interface TEXT NOT NULL,
    vendor TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    hostname TEXT,
    vendor_class TEXT,
    parameters TEXT,
    mud_url TEXT,
    PRIMARY KEY (mac, vlan)
);
CREATE INDEX IF NOT EXISTS hosts_by_age ON hosts (last_seen);
CREATE TABLE IF NOT EXISTS addresses (
    mac TEXT NOT NULL,
    vlan INTEGER NOT NULL,
    address TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (mac, vlan, address),
    FOREIGN KEY (mac, vlan) REFERENCES hosts (mac, vlan) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
PRAGMA user_version = 1;
";

/// Addresses bound to devices declared by MAC alone (`crate::learning`).
const LEARNED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS learned (
    address TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    mac TEXT NOT NULL,
    vlan INTEGER NOT NULL,
    bound_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
";

pub struct Store {
    conn: Connection,
    /// Hosts kept at most.
    capacity: usize,
}

impl Store {
    /// Opens (creating) the database at `path`, holding at most `capacity`
    /// hosts. Written through a write-ahead log: a crash loses at most the
    /// last batch, never the file.
    pub fn open(path: &Path, capacity: usize) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Store::with(conn, capacity)
    }

    /// A database in memory (tests, and a daemon without a state directory).
    pub fn in_memory(capacity: usize) -> Result<Store, StoreError> {
        Store::with(Connection::open_in_memory()?, capacity)
    }

    fn with(conn: Connection, capacity: usize) -> Result<Store, StoreError> {
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(LEARNED_SCHEMA)?;
        Ok(Store { conn, capacity })
    }

    /// Writes a batch in one transaction, then evicts the hosts seen
    /// longest ago beyond the capacity, never those whose MAC is in
    /// `keep` (declared devices).
    pub fn record(
        &mut self,
        batch: &[Sighting],
        keep: &HashSet<[u8; 6]>,
    ) -> Result<Recorded, StoreError> {
        let tx = self.conn.transaction()?;
        let mut created = Vec::new();
        let mut exists = tx.prepare("SELECT 1 FROM hosts WHERE mac = ?1 AND vlan = ?2")?;
        for (i, s) in batch.iter().enumerate() {
            if !exists.exists(params![mac_text(s.mac), s.vlan])? {
                created.push(i);
            }
            upsert(&tx, s)?;
        }
        drop(exists);
        let hosts: i64 = tx.query_row("SELECT count(*) FROM hosts", [], |r| r.get(0))?;
        let mut evicted: i64 = 0;
        let over = (hosts as u64).saturating_sub(self.capacity as u64);
        if over > 0 {
            let keep: Vec<String> = keep.iter().map(|m| mac_text(*m)).collect();
            let mut oldest =
                tx.prepare("SELECT mac, vlan FROM hosts ORDER BY last_seen, first_seen")?;
            let victims: Vec<(String, u16)> = oldest
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .filter_map(Result::ok)
                .filter(|(mac, _)| !keep.contains(mac))
                .take(over as usize)
                .collect();
            drop(oldest);
            for (mac, vlan) in victims {
                tx.execute("DELETE FROM hosts WHERE mac = ?1 AND vlan = ?2", params![mac, vlan])?;
                evicted += 1;
            }
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('evicted', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = value + ?1",
                [evicted],
            )?;
        }
        tx.commit()?;
        Ok(Recorded { evicted: evicted as u64, created })
    }

    /// Hosts evicted since the database was created.
    pub fn evicted(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT value FROM counters WHERE name = 'evicted'", [], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Every host, ordered by VLAN and MAC, with its addresses.
    pub fn hosts(&self) -> Result<Vec<Host>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT mac, vendor, vlan, interface, first_seen, last_seen, frames,
                    hostname, vendor_class, parameters, mud_url
             FROM hosts ORDER BY vlan, mac",
        )?;
        let mut hosts: Vec<Host> = stmt
            .query_map([], |r| {
                let parameters: Option<String> = r.get(9)?;
                let dhcp = HostDhcp {
                    hostname: r.get(7)?,
                    vendor_class: r.get(8)?,
                    parameters: parameters
                        .iter()
                        .flat_map(|p| p.split(','))
                        .filter_map(|c| c.parse().ok())
                        .collect(),
                    mud_url: r.get(10)?,
                };
                Ok(Host {
                    mac: r.get(0)?,
                    vendor: r.get(1)?,
                    vlan: r.get(2)?,
                    interface: r.get(3)?,
                    addresses: Vec::new(),
                    first_seen: r.get::<_, i64>(4)? as u64,
                    last_seen: r.get::<_, i64>(5)? as u64,
                    frames: r.get::<_, i64>(6)? as u64,
                    dhcp: (dhcp != HostDhcp::default()).then_some(dhcp),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut addrs = self.conn.prepare(
            "SELECT address FROM addresses WHERE mac = ?1 AND vlan = ?2 ORDER BY address",
        )?;
        for h in &mut hosts {
            h.addresses = addrs
                .query_map(params![h.mac, h.vlan], |r| r.get::<_, String>(0))?
                .filter_map(Result::ok)
                .filter_map(|a| a.parse().ok())
                .collect();
        }
        Ok(hosts)
    }

    /// Every host with its addresses, handed to `f` one at a time in one
    /// query (counting them holds no list of every host), without its
    /// DHCP fields.
    pub fn census(&self, mut f: impl FnMut(Host)) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT h.mac, h.vendor, h.vlan, h.interface, h.first_seen, h.last_seen, h.frames,
                    group_concat(a.address)
             FROM hosts h LEFT JOIN addresses a ON a.mac = h.mac AND a.vlan = h.vlan
             GROUP BY h.mac, h.vlan",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let addresses: Option<String> = r.get(7)?;
            let mut addresses: Vec<IpAddr> = addresses
                .iter()
                .flat_map(|a| a.split(','))
                .filter_map(|a| a.parse().ok())
                .collect();
            addresses.sort();
            f(Host {
                mac: r.get(0)?,
                vendor: r.get(1)?,
                vlan: r.get(2)?,
                interface: r.get(3)?,
                addresses,
                first_seen: r.get::<_, i64>(4)? as u64,
                last_seen: r.get::<_, i64>(5)? as u64,
                frames: r.get::<_, i64>(6)? as u64,
                dhcp: None,
            });
        }
        Ok(())
    }
}

/// One sighting into the tables: the host created or its last sight,
/// frames, interface and DHCP fields updated; its address added.
fn upsert(tx: &rusqlite::Transaction<'_>, s: &Sighting) -> Result<(), StoreError> {
    let (mac, at) = (mac_text(s.mac), unix(s.at));
    let d = s.dhcp.as_ref();
    let parameters =
        d.map(|d| d.parameters.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    tx.execute(
        "INSERT INTO hosts (mac, vlan, interface, vendor, first_seen, last_seen, frames,
                            hostname, vendor_class, parameters, mud_url)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (mac, vlan) DO UPDATE SET
            interface = ?3,
            vendor = coalesce(?4, vendor),
            last_seen = max(last_seen, ?5),
            frames = frames + ?6,
            hostname = coalesce(?7, hostname),
            vendor_class = coalesce(?8, vendor_class),
            parameters = coalesce(?9, parameters),
            mud_url = coalesce(?10, mud_url)",
        params![
            mac,
            s.vlan,
            s.interface,
            s.vendor,
            at,
            s.frames as i64,
            d.and_then(|d| d.hostname.clone()),
            d.and_then(|d| d.vendor_class.clone()),
            parameters,
            d.and_then(|d| d.mud_url.clone()),
        ],
    )?;
    let address = s.address.or(d.and_then(|d| d.requested));
    if let Some(a) = address.filter(|a| !a.is_unspecified()) {
        tx.execute(
            "INSERT INTO addresses (mac, vlan, address, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mac, vlan, address) DO UPDATE SET last_seen = max(last_seen, ?4)",
            params![mac, s.vlan, a.to_string(), at],
        )?;
    }
    Ok(())
}

/// Seconds since the epoch (SQLite integers are signed).
fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64
}

/// The learned bindings (`crate::learning`).
impl Store {
    /// Every binding as last written.
    pub fn bindings(&self) -> Result<Vec<Binding>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT address, device, mac, vlan, bound_at, last_seen FROM learned")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u16>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        Ok(rows
            .filter_map(Result::ok)
            .filter_map(|(addr, device, mac, vlan, bound_at, last_seen)| {
                Some(Binding {
                    addr: addr.parse().ok()?,
                    device,
                    mac: crate::policy::parse_mac(&mac).ok()?,
                    vlan,
                    bound_at: bound_at as u64,
                    last_seen: last_seen as u64,
                })
            })
            .collect())
    }

    /// Writes bindings made or refreshed (`Some`) and ended (`None` for the
    /// address) in one transaction.
    pub fn save_bindings(
        &mut self,
        changes: &[(IpAddr, Option<Binding>)],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for (addr, b) in changes {
            match b {
                Some(b) => tx.execute(
                    "INSERT INTO learned (address, device, mac, vlan, bound_at, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (address) DO UPDATE SET device = ?2, mac = ?3, vlan = ?4,
                        bound_at = ?5, last_seen = ?6",
                    params![
                        addr.to_string(),
                        b.device,
                        mac_text(b.mac),
                        b.vlan,
                        b.bound_at as i64,
                        b.last_seen as i64
                    ],
                )?,
                None => tx.execute("DELETE FROM learned WHERE address = ?1", [addr.to_string()])?,
            };
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(mac: u8, vlan: u16, addr: &str, at: u64) -> Sighting {
        Sighting {
            mac: [0x00, 0x1b, 0x63, 0, 0, mac],
            vlan,
            interface: "trunk0".into(),
            address: Some(addr.parse().expect("address")),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            frames: 1,
            vendor: Some("Apple Inc".into()),
            dhcp: None,
        }
    }

    #[test]
    fn sightings_merge_into_hosts_with_their_addresses_and_dhcp_fields() {
        let mut s = Store::in_memory(100).expect("store");
        let mut dhcp = seen(1, 110, "0.0.0.0", 30);
        dhcp.address = None;
        dhcp.dhcp = Some(DhcpClient {
            message: "request".into(),
            requested: Some("10.110.0.7".parse().expect("address")),
            hostname: Some("pump-ward3".into()),
            parameters: vec![1, 3, 6],
            mud_url: Some("https://pumps.example.com/m.json".into()),
            ..DhcpClient::default()
        });
        let batch = [seen(1, 110, "10.110.0.7", 10), seen(1, 110, "fe80::1", 20), dhcp];
        let recorded = s.record(&batch, &HashSet::new()).expect("record");
        // One host: the first sighting made it, the others updated it.
        assert_eq!(recorded, Recorded { evicted: 0, created: vec![0] });
        let hosts = s.hosts().expect("hosts");
        assert_eq!(hosts.len(), 1);
        let h = &hosts[0];
        assert_eq!(h.mac, "00:1b:63:00:00:01");
        assert_eq!((h.vlan, h.first_seen, h.last_seen, h.frames), (110, 10, 30, 3));
        let want: Vec<IpAddr> =
            ["10.110.0.7", "fe80::1"].iter().map(|a| a.parse().expect("address")).collect();
        assert_eq!(h.addresses, want);
        let d = h.dhcp.as_ref().expect("dhcp fields");
        assert_eq!(d.hostname.as_deref(), Some("pump-ward3"));
        assert_eq!(d.parameters, [1, 3, 6]);
        assert_eq!(d.mud_url.as_deref(), Some("https://pumps.example.com/m.json"));
    }

    #[test]
    fn the_table_is_bounded_oldest_unknown_hosts_go_first() {
        let mut s = Store::in_memory(3).expect("store");
        let keep: HashSet<[u8; 6]> = [[0x00, 0x1b, 0x63, 0, 0, 1]].into();
        let batch: Vec<Sighting> =
            (1..=5).map(|i| seen(i, 110, &format!("10.110.0.{i}"), u64::from(i))).collect();
        assert_eq!(s.record(&batch, &keep).expect("record").evicted, 2);
        let macs: Vec<String> = s.hosts().expect("hosts").into_iter().map(|h| h.mac).collect();
        // Host 1 is the oldest but declared: hosts 2 and 3 went.
        assert_eq!(macs, ["00:1b:63:00:00:01", "00:1b:63:00:00:04", "00:1b:63:00:00:05"]);
        assert_eq!(s.evicted().expect("count"), 2);
    }

    #[test]
    fn only_a_hosts_first_sighting_creates_it_and_the_census_sees_every_host() {
        let mut s = Store::in_memory(100).expect("store");
        s.record(&[seen(1, 110, "10.110.0.1", 5)], &HashSet::new()).expect("record");
        let mut bare = seen(3, 120, "0.0.0.0", 7);
        bare.address = None;
        let batch = [seen(1, 110, "fe80::1", 6), seen(2, 110, "10.110.0.2", 6), bare];
        let recorded = s.record(&batch, &HashSet::new()).expect("record");
        assert_eq!(recorded.created, [1, 2], "host 1 was there already");
        let mut census = Vec::new();
        s.census(|h| census.push((h.mac, h.vlan, h.addresses, h.last_seen))).expect("census");
        census.sort();
        let addrs = |list: &[&str]| -> Vec<IpAddr> {
            list.iter().map(|a| a.parse().expect("address")).collect()
        };
        assert_eq!(
            census,
            [
                ("00:1b:63:00:00:01".into(), 110, addrs(&["10.110.0.1", "fe80::1"]), 6),
                ("00:1b:63:00:00:02".into(), 110, addrs(&["10.110.0.2"]), 6),
                ("00:1b:63:00:00:03".into(), 120, addrs(&[]), 7),
            ]
        );
    }

    #[test]
    fn the_inventory_survives_reopening_the_file() {
        let path = std::env::temp_dir().join(format!("vlanguard-inv-{}.db", std::process::id()));
        {
            let mut s = Store::open(&path, 10).expect("store");
            s.record(&[seen(9, 120, "10.120.0.9", 5)], &HashSet::new()).expect("record");
        }
        let s = Store::open(&path, 10).expect("reopen");
        let hosts = s.hosts().expect("hosts");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].addresses, ["10.120.0.9".parse::<IpAddr>().expect("address")]);
    }
}
