//! The program's identity reports (`filter_common::Sighting` and
//! `DhcpCapture` records of the `IDENTITY` ring buffer) decoded: who sent
//! which ARP, NDP or DHCP client message on which VLAN. The bytes come from
//! the kernel, but the DHCP payload in them came off the wire.

use std::net::IpAddr;

use filter_common::{Sighting, identity};

use super::dhcp::{self, DhcpClient, DhcpError};
use crate::addr;

/// One report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `filter_common::identity::*`.
    pub kind: u8,
    /// CLOCK_MONOTONIC, ns.
    pub ktime_ns: u64,
    pub ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    /// The frame's source address; `None` when it had none (0.0.0.0, ::).
    pub src: Option<IpAddr>,
    /// For DHCP reports: the client message, or why it is none.
    pub dhcp: Option<Result<DhcpClient, DhcpError>>,
}

/// The report in `raw`, `None` if it is too short to be one.
pub fn decode(raw: &[u8]) -> Option<Report> {
    let head_len = size_of::<Sighting>();
    if raw.len() < head_len {
        return None;
    }
    let mut head = Sighting::default();
    // SAFETY: Sighting is #[repr(C)] plain data for which any bytes are a
    // value, and `raw` holds at least its size.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr(), (&raw mut head).cast::<u8>(), head_len) };
    let src = addr::from_key(head.src);
    let payload = raw.get(head_len..head_len + usize::from(head.payload_len));
    let dhcp = match head.kind {
        identity::DHCPV4 => Some(payload.map_or(Err(DhcpError::Short(0)), dhcp::parse_v4)),
        identity::DHCPV6 => Some(payload.map_or(Err(DhcpError::Short(0)), dhcp::parse_v6)),
        _ => None,
    };
    Some(Report {
        kind: head.kind,
        ktime_ns: head.ktime_ns,
        ifindex: head.ifindex,
        vlan: head.vlan,
        mac: head.src_mac,
        src: (!src.is_unspecified()).then_some(src),
        dhcp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, src: IpAddr, payload: &[u8]) -> Vec<u8> {
        let head = Sighting {
            ktime_ns: 7,
            src: addr::key(src),
            ifindex: 3,
            vlan: 110,
            kind,
            _pad: 0,
            src_mac: [0, 0x1b, 0x63, 1, 2, 3],
            payload_len: payload.len() as u16,
        };
        // SAFETY: plain data, read as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const head).cast::<u8>(), size_of::<Sighting>())
        };
        let mut raw = bytes.to_vec();
        raw.extend_from_slice(payload);
        raw
    }

    #[test]
    fn arp_reports_carry_mac_vlan_and_address() {
        let r = decode(&record(identity::ARP, "10.110.0.9".parse().unwrap(), &[])).unwrap();
        assert_eq!(r.kind, identity::ARP);
        assert_eq!((r.vlan, r.ifindex, r.ktime_ns), (110, 3, 7));
        assert_eq!(r.mac, [0, 0x1b, 0x63, 1, 2, 3]);
        assert_eq!(r.src, Some("10.110.0.9".parse().unwrap()));
        assert_eq!(r.dhcp, None);
        // An ARP probe has no sender address yet.
        let probe = decode(&record(identity::ARP, "0.0.0.0".parse().unwrap(), &[])).unwrap();
        assert_eq!(probe.src, None);
    }

    #[test]
    fn dhcp_reports_parse_their_payload_and_short_records_are_refused() {
        let r = decode(&record(identity::DHCPV4, "0.0.0.0".parse().unwrap(), &[1, 2, 3])).unwrap();
        assert!(matches!(r.dhcp, Some(Err(DhcpError::Short(_)))), "{r:?}");
        // The header promises more payload than the record holds.
        let mut raw = record(identity::DHCPV6, "fe80::1".parse().unwrap(), &[0; 8]);
        raw.truncate(raw.len() - 4);
        assert!(matches!(decode(&raw).unwrap().dhcp, Some(Err(_))));
        assert_eq!(decode(&raw[..size_of::<Sighting>() - 1]), None);
    }
}
