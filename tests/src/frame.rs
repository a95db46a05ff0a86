//! Builds Ethernet frames byte by byte for the kernel tests: VLAN tags,
//! ARP, IPv4 (options, fragments), IPv6 (extension headers), TCP, UDP,
//! ICMP, ICMPv6. Checksums are left zero: the XDP program never reads them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        doff: u8,
        /// FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10.
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (by the IP version) with this type.
    Icmp {
        icmp_type: u8,
    },
    /// Any other protocol with a payload of this many bytes.
    Other {
        proto: u8,
        len: usize,
    },
}

impl L4 {
    /// A segment of an open connection (ACK): decided by the rules alone,
    /// since it neither opens nor (without a SYN before it) continues a
    /// tracked flow.
    pub fn tcp(sport: u16, dport: u16) -> L4 {
        L4::Tcp { sport, dport, doff: 5, flags: 0x10 }
    }
    /// A connection's first segment (SYN): opens a flow when allowed.
    pub fn syn(sport: u16, dport: u16) -> L4 {
        L4::Tcp { sport, dport, doff: 5, flags: 0x02 }
    }
    pub fn udp(sport: u16, dport: u16) -> L4 {
        L4::Udp { sport, dport }
    }
    pub fn icmp(icmp_type: u8) -> L4 {
        L4::Icmp { icmp_type }
    }
}

/// An IPv6 extension header.
#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop { len8: u8 },
    Routing { len8: u8 },
    DestOpts { len8: u8 },
    Fragment { offset8: u16, more: bool },
}

#[derive(Clone, Debug)]
pub enum Body {
    Ip {
        src: IpAddr,
        dst: IpAddr,
        l4: L4,
        /// IPv4 header length in 32-bit words (5 = no options).
        ihl: u8,
        /// IPv4: fragment offset in 8-byte units and the MF flag.
        frag_offset8: u16,
        more_frags: bool,
        ext: Vec<Ext>,
        /// Payload bytes after the L4 header.
        payload: usize,
    },
    Arp {
        oper: u16,
        sha: [u8; 6],
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    Ether {
        ethertype: u16,
        payload: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Outermost first: (TPID, VID).
    pub tags: Vec<(u16, u16)>,
    pub body: Body,
}

pub const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];
pub const HOST_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];

impl Frame {
    pub fn ip(src: IpAddr, dst: IpAddr, l4: L4) -> Frame {
        Frame {
            dst_mac: ROUTER_MAC,
            src_mac: HOST_MAC,
            tags: Vec::new(),
            body: Body::Ip {
                src,
                dst,
                l4,
                ihl: 5,
                frag_offset8: 0,
                more_frags: false,
                ext: Vec::new(),
                payload: 0,
            },
        }
    }

    pub fn arp(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Frame {
        Frame {
            dst_mac: [0xff; 6],
            src_mac: sha,
            tags: Vec::new(),
            body: Body::Arp { oper: 1, sha, spa, tpa },
        }
    }

    pub fn ether(ethertype: u16, payload: usize) -> Frame {
        Frame {
            dst_mac: [0xff; 6],
            src_mac: HOST_MAC,
            tags: Vec::new(),
            body: Body::Ether { ethertype, payload },
        }
    }

    /// One 802.1Q tag.
    pub fn vlan(mut self, vid: u16) -> Frame {
        self.tags = vec![(TPID_8021Q, vid)];
        self
    }

    /// 802.1ad outer tag and 802.1Q inner tag.
    pub fn qinq(mut self, outer: u16, inner: u16) -> Frame {
        self.tags = vec![(TPID_8021AD, outer), (TPID_8021Q, inner)];
        self
    }

    pub fn from_mac(mut self, mac: [u8; 6]) -> Frame {
        self.src_mac = mac;
        self
    }

    pub fn with_ip(mut self, f: impl FnOnce(&mut Body)) -> Frame {
        f(&mut self.body);
        self
    }

    /// Wire bytes padded to the 60-byte Ethernet minimum, as a NIC delivers
    /// them.
    pub fn padded(&self) -> Vec<u8> {
        let mut out = self.bytes();
        if out.len() < 60 {
            out.resize(60, 0);
        }
        out
    }

    /// Wire bytes, unpadded: every byte belongs to a header or payload.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        for (tpid, vid) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        match &self.body {
            Body::Ip {
                src: IpAddr::V4(s),
                dst: IpAddr::V4(d),
                l4,
                ihl,
                frag_offset8,
                more_frags,
                payload,
                ..
            } => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let (proto, l4_bytes) = l4_bytes(l4, false, *payload);
                let hdr_len = usize::from(*ihl) * 4;
                let total = hdr_len.max(20) + l4_bytes.len();
                out.push(0x40 | (ihl & 0x0f));
                out.push(0);
                out.extend_from_slice(&(total as u16).to_be_bytes());
                out.extend_from_slice(&[0x12, 0x34]);
                let frags = (frag_offset8 & 0x1fff) | if *more_frags { 0x2000 } else { 0 };
                out.extend_from_slice(&frags.to_be_bytes());
                out.push(64);
                out.push(proto);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                // Options: NOPs then end-of-list.
                if hdr_len > 20 {
                    out.extend(std::iter::repeat_n(1u8, hdr_len - 21));
                    out.push(0);
                }
                out.extend_from_slice(&l4_bytes);
            }
            Body::Ip { src: IpAddr::V6(s), dst: IpAddr::V6(d), l4, ext, payload, .. } => {
                out.extend_from_slice(&0x86ddu16.to_be_bytes());
                let (proto, l4_bytes) = l4_bytes(l4, true, *payload);
                let mut chain = Vec::new();
                let next_of = |i: usize| -> u8 { ext.get(i).map_or(proto, ext_proto) };
                for (i, e) in ext.iter().enumerate() {
                    chain.extend_from_slice(&ext_bytes(e, next_of(i + 1)));
                }
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&((chain.len() + l4_bytes.len()) as u16).to_be_bytes());
                out.push(next_of(0));
                out.push(64);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                out.extend_from_slice(&chain);
                out.extend_from_slice(&l4_bytes);
            }
            Body::Ip { .. } => panic!("source and destination must be the same IP version"),
            Body::Arp { oper, sha, spa, tpa } => {
                out.extend_from_slice(&0x0806u16.to_be_bytes());
                out.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
                out.extend_from_slice(&oper.to_be_bytes());
                out.extend_from_slice(sha);
                out.extend_from_slice(&spa.octets());
                out.extend_from_slice(&[0; 6]);
                out.extend_from_slice(&tpa.octets());
            }
            Body::Ether { ethertype, payload } => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend(std::iter::repeat_n(0u8, *payload));
            }
        }
        out
    }
}

fn ext_proto(e: &Ext) -> u8 {
    match e {
        Ext::HopByHop { .. } => 0,
        Ext::Routing { .. } => 43,
        Ext::Fragment { .. } => 44,
        Ext::DestOpts { .. } => 60,
    }
}

fn ext_bytes(e: &Ext, next: u8) -> Vec<u8> {
    match e {
        Ext::HopByHop { len8 } | Ext::DestOpts { len8 } => {
            let mut b = vec![next, *len8];
            // PadN option filling the rest.
            let rest = (usize::from(*len8) + 1) * 8 - 2;
            b.push(1);
            b.push((rest - 2) as u8);
            b.extend(std::iter::repeat_n(0, rest - 2));
            b
        }
        Ext::Routing { len8 } => {
            let mut b = vec![next, *len8, 0, 0];
            b.extend(std::iter::repeat_n(0, (usize::from(*len8) + 1) * 8 - 4));
            b
        }
        Ext::Fragment { offset8, more } => {
            let field = (offset8 << 3) | u16::from(*more);
            let mut b = vec![next, 0];
            b.extend_from_slice(&field.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 1]);
            b
        }
    }
}

fn l4_bytes(l4: &L4, v6: bool, payload: usize) -> (u8, Vec<u8>) {
    let mut b = Vec::new();
    let proto = match l4 {
        L4::Tcp { sport, dport, doff, flags } => {
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            b.push(doff << 4);
            b.push(*flags);
            b.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            // Options making up a data offset above 5.
            b.extend(std::iter::repeat_n(1u8, usize::from(*doff).saturating_sub(5) * 4));
            6
        }
        L4::Udp { sport, dport } => {
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            17
        }
        L4::Icmp { icmp_type } => {
            b.extend_from_slice(&[*icmp_type, 0, 0, 0, 0, 1, 0, 1]);
            if v6 { 58 } else { 1 }
        }
        L4::Other { proto, len } => {
            b.extend(std::iter::repeat_n(0xabu8, *len));
            *proto
        }
    };
    b.extend(std::iter::repeat_n(0x5a, payload));
    (proto, b)
}

pub fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().expect("IPv4 literal"))
}

pub fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("IPv6 literal"))
}
