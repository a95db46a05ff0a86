//! The passive inventory: every host seen on a protected VLAN, with its
//! MAC's vendor, addresses and what its DHCP client said (issue 17; the
//! program's reports and the daemon's batching come next). `store` keeps
//! it in SQLite across restarts and upgrades.

pub mod store;
