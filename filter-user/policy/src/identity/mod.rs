//! What identifies a host on a protected VLAN, from what it sends: its
//! DHCP client messages (`dhcp`) and the vendor its MAC was assigned to
//! (`oui`). Parsers of untrusted bytes: lengths checked, nothing guessed.

pub mod dhcp;
pub mod oui;
