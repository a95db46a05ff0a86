//! What identifies a host on a protected VLAN, from what it sends: its
//! DHCP client messages (`dhcp`) and the vendor its MAC was assigned to
//! (`oui`), as the program reports them (`report`). Parsers of untrusted
//! bytes: lengths checked, nothing guessed.

pub mod dhcp;
pub mod oui;
pub mod report;
