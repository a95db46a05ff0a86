//! What a DHCP client says about itself (RFC 2131/2132 for IPv4, RFC 8415
//! for IPv6): its MAC, the address it asks for, its host name, vendor
//! class, the options it requests and the MUD URL of RFC 8520 §10. The
//! program hands the daemon the UDP payload of client messages as they came
//! off the wire; nothing here trusts a length it has not checked, and a
//! field that does not parse is left out rather than guessed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The identifying fields of one client message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpClient {
    /// `discover`, `request`, `inform`, ... (DHCPv4); `solicit`,
    /// `request`, `renew`, ... (DHCPv6).
    pub message: String,
    /// `chaddr` (DHCPv4), or the link-layer address in the client's DUID
    /// (DHCPv6, DUID-LLT and DUID-LL).
    pub client_mac: Option<[u8; 6]>,
    /// Option 50 (DHCPv4), or the first IA address (DHCPv6); else `ciaddr`.
    pub requested: Option<IpAddr>,
    /// Option 12 (DHCPv4), or the client FQDN option 39 (DHCPv6).
    pub hostname: Option<String>,
    /// Option 60 (DHCPv4), or the vendor class option 16 (DHCPv6).
    pub vendor_class: Option<String>,
    /// The options the client asks for: option 55 (DHCPv4), the option
    /// request option 6 (DHCPv6).
    pub parameters: Vec<u16>,
    /// Option 161 (DHCPv4) or 112 (DHCPv6): where the device's MUD file is.
    pub mud_url: Option<String>,
}

/// Why a payload is not a DHCP client message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("shorter than a DHCP message ({0} bytes)")]
    Short(usize),
    #[error("not a BOOTREQUEST with the DHCP magic cookie")]
    NotDhcp,
    #[error("option {code} runs past the end of the message")]
    Truncated { code: u16 },
    #[error("message type {0} is not one a client sends")]
    NotClient(u8),
}

/// The fixed BOOTP header, then the magic cookie (RFC 2131 §3).
const V4_HEADER: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// DHCPv4 option codes (RFC 2132, RFC 8520 §10).
mod v4opt {
    pub const PAD: u8 = 0;
    pub const HOSTNAME: u8 = 12;
    pub const REQUESTED_IP: u8 = 50;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const PARAMETERS: u8 = 55;
    pub const VENDOR_CLASS: u8 = 60;
    pub const MUD_URL: u8 = 161;
    pub const END: u8 = 255;
}

/// DHCPv6 option codes (RFC 8415 §21, RFC 4704, RFC 8520 §10).
mod v6opt {
    pub const CLIENT_ID: u16 = 1;
    pub const IA_NA: u16 = 3;
    pub const IA_ADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const VENDOR_CLASS: u16 = 16;
    pub const CLIENT_FQDN: u16 = 39;
    pub const MUD_URL: u16 = 112;
}

/// Longest text kept of a host name, vendor class or URL: DHCP options
/// hold at most 255 bytes each.
const MAX_TEXT: usize = 255;

/// A DHCPv4 client message (the UDP payload from port 68 to 67).
pub fn parse_v4(p: &[u8]) -> Result<DhcpClient, DhcpError> {
    if p.len() < V4_HEADER + MAGIC.len() {
        return Err(DhcpError::Short(p.len()));
    }
    // op 1 is BOOTREQUEST; htype 1 / hlen 6 is Ethernet.
    if p[0] != 1 || p[V4_HEADER..V4_HEADER + 4] != MAGIC {
        return Err(DhcpError::NotDhcp);
    }
    let mut out = DhcpClient::default();
    if p[1] == 1 && p[2] == 6 {
        out.client_mac = p[28..34].try_into().ok();
    }
    let ciaddr = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let mut options = v4_options(&p[V4_HEADER + 4..])?;
    // Option 52 (RFC 2132 §9.3): more options in `file` (1), `sname` (2).
    let overload = options.iter().find(|(c, d)| *c == v4opt::OVERLOAD && d.len() == 1);
    let overload = overload.map_or(0, |(_, d)| d[0]);
    if overload & 1 != 0 {
        options.extend(v4_options(&p[108..236])?);
    }
    if overload & 2 != 0 {
        options.extend(v4_options(&p[44..108])?);
    }
    let mut message = None;
    for (code, data) in options {
        match code {
            v4opt::MESSAGE_TYPE if data.len() == 1 => message = Some(data[0]),
            v4opt::REQUESTED_IP if data.len() == 4 => {
                let a = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
                out.requested = Some(IpAddr::V4(a));
            }
            v4opt::HOSTNAME => out.hostname = text(data),
            v4opt::VENDOR_CLASS => out.vendor_class = text(data),
            v4opt::PARAMETERS => out.parameters = data.iter().map(|c| u16::from(*c)).collect(),
            v4opt::MUD_URL => out.mud_url = url(data),
            _ => {}
        }
    }
    out.message = match message {
        Some(1) => "discover",
        Some(3) => "request",
        Some(4) => "decline",
        Some(7) => "release",
        Some(8) => "inform",
        Some(other) => return Err(DhcpError::NotClient(other)),
        // BOOTP: a client without a message type.
        None => "bootp",
    }
    .to_string();
    if out.requested.is_none() && !ciaddr.is_unspecified() {
        out.requested = Some(IpAddr::V4(ciaddr));
    }
    Ok(out)
}

/// DHCPv4 options up to the end option: (code, data) pairs, each length
/// checked.
fn v4_options(mut p: &[u8]) -> Result<Vec<(u8, &[u8])>, DhcpError> {
    let mut out = Vec::new();
    while let Some((&code, rest)) = p.split_first() {
        match code {
            v4opt::PAD => p = rest,
            v4opt::END => break,
            _ => {
                let (&len, rest) =
                    rest.split_first().ok_or(DhcpError::Truncated { code: code.into() })?;
                let data = rest
                    .get(..usize::from(len))
                    .ok_or(DhcpError::Truncated { code: code.into() })?;
                out.push((code, data));
                p = &rest[usize::from(len)..];
            }
        }
    }
    Ok(out)
}

/// A DHCPv6 client message (the UDP payload from port 546 to 547).
pub fn parse_v6(p: &[u8]) -> Result<DhcpClient, DhcpError> {
    if p.len() < 4 {
        return Err(DhcpError::Short(p.len()));
    }
    let message = match p[0] {
        1 => "solicit",
        3 => "request",
        4 => "confirm",
        5 => "renew",
        6 => "rebind",
        8 => "release",
        9 => "decline",
        11 => "information-request",
        other => return Err(DhcpError::NotClient(other)),
    };
    let mut out = DhcpClient { message: message.to_string(), ..DhcpClient::default() };
    for (code, data) in v6_options(&p[4..])? {
        match code {
            v6opt::CLIENT_ID => out.client_mac = duid_mac(data),
            v6opt::IA_NA if out.requested.is_none() && data.len() >= 12 => {
                // IAID, T1, T2, then options: the first IA address.
                out.requested = v6_options(&data[12..])?
                    .into_iter()
                    .find(|(c, d)| *c == v6opt::IA_ADDR && d.len() >= 16)
                    .and_then(|(_, d)| <[u8; 16]>::try_from(&d[..16]).ok())
                    .map(|a| IpAddr::V6(Ipv6Addr::from(a)));
            }
            v6opt::ORO => {
                out.parameters =
                    data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            }
            // Enterprise number, then length-prefixed strings: the first.
            v6opt::VENDOR_CLASS if data.len() >= 6 => {
                let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
                out.vendor_class = data.get(6..6 + len).and_then(text);
            }
            // Flags, then the name in DNS wire format (RFC 4704 §4).
            v6opt::CLIENT_FQDN if !data.is_empty() => out.hostname = dns_name(&data[1..]),
            v6opt::MUD_URL => out.mud_url = url(data),
            _ => {}
        }
    }
    Ok(out)
}

/// DHCPv6 options: (code, data) pairs, each length checked.
fn v6_options(mut p: &[u8]) -> Result<Vec<(u16, &[u8])>, DhcpError> {
    let mut out = Vec::new();
    while !p.is_empty() {
        let code = u16::from_be_bytes([p[0], *p.get(1).ok_or(DhcpError::Truncated { code: 0 })?]);
        let len = p
            .get(2..4)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .ok_or(DhcpError::Truncated { code })?;
        let data = p.get(4..4 + len).ok_or(DhcpError::Truncated { code })?;
        out.push((code, data));
        p = &p[4 + len..];
    }
    Ok(out)
}

/// The Ethernet address in a DUID-LLT (type 1) or DUID-LL (type 3) of
/// hardware type 1; other DUIDs name no MAC.
fn duid_mac(duid: &[u8]) -> Option<[u8; 6]> {
    let kind = u16::from_be_bytes([*duid.first()?, *duid.get(1)?]);
    let hw = u16::from_be_bytes([*duid.get(2)?, *duid.get(3)?]);
    let at = match kind {
        1 => 8,
        3 => 4,
        _ => return None,
    };
    if hw != 1 {
        return None;
    }
    duid.get(at..at + 6)?.try_into().ok()
}

/// A name in DNS wire format (labels), dotted.
fn dns_name(mut p: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    while let Some((&len, rest)) = p.split_first() {
        if len == 0 {
            break;
        }
        let label = rest.get(..usize::from(len))?;
        labels.push(text(label)?);
        p = &rest[usize::from(len)..];
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

/// Printable text: control characters dropped (a host name reaches logs
/// and terminals), invalid UTF-8 replaced, at most `MAX_TEXT` bytes; a
/// trailing NUL (some clients send one) is not part of it.
fn text(data: &[u8]) -> Option<String> {
    let data = &data[..data.len().min(MAX_TEXT)];
    let s: String = String::from_utf8_lossy(data).chars().filter(|c| !c.is_control()).collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A MUD URL: RFC 8520 §10 requires https.
fn url(data: &[u8]) -> Option<String> {
    text(data).filter(|u| u.starts_with("https://") && !u.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCPv4 client message as RFC 2131 lays it out: BOOTREQUEST,
    /// Ethernet, `mac`, the magic cookie, then `options` and the end option.
    fn v4(mac: [u8; 6], ciaddr: [u8; 4], options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; V4_HEADER];
        p[0] = 1;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&0x3903_f326_u32.to_be_bytes());
        p[12..16].copy_from_slice(&ciaddr);
        p[28..34].copy_from_slice(&mac);
        p.extend_from_slice(&MAGIC);
        for (code, data) in options {
            p.push(*code);
            p.push(data.len() as u8);
            p.extend_from_slice(data);
        }
        p.push(v4opt::END);
        p
    }

    const MAC: [u8; 6] = [0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6];

    #[test]
    fn a_discover_names_mac_host_vendor_parameters_and_mud_url() {
        let url = b"https://pumps.example.com/mud/infusion-7.json";
        let p = v4(
            MAC,
            [0; 4],
            &[
                (53, &[1]),
                (50, &[10, 110, 0, 7]),
                (12, b"pump-ward3\0"),
                (60, b"ACME Infusion 7.2"),
                (55, &[1, 3, 6, 15, 119, 252]),
                (161, url),
            ],
        );
        let c = parse_v4(&p).expect("a discover");
        assert_eq!(c.message, "discover");
        assert_eq!(c.client_mac, Some(MAC));
        assert_eq!(c.requested, Some("10.110.0.7".parse().expect("address")));
        assert_eq!(c.hostname.as_deref(), Some("pump-ward3"));
        assert_eq!(c.vendor_class.as_deref(), Some("ACME Infusion 7.2"));
        assert_eq!(c.parameters, [1, 3, 6, 15, 119, 252]);
        assert_eq!(c.mud_url.as_deref(), Some(std::str::from_utf8(url).expect("text")));
    }

    #[test]
    fn a_renewing_request_names_its_address_by_ciaddr_and_pads_are_skipped() {
        let mut p = v4(MAC, [10, 110, 0, 9], &[(53, &[3])]);
        // Pad options between options are allowed anywhere.
        p.splice(V4_HEADER + 4..V4_HEADER + 4, [0, 0, 0]);
        let c = parse_v4(&p).expect("a request");
        assert_eq!(c.message, "request");
        assert_eq!(c.requested, Some("10.110.0.9".parse().expect("address")));
        assert_eq!(c.hostname, None);
    }

    #[test]
    fn overloaded_file_and_sname_fields_are_read() {
        let mut p = v4(MAC, [0; 4], &[(53, &[1]), (52, &[3])]);
        // Host name in `file`, vendor class in `sname`.
        p[108..118].copy_from_slice(&[12, 7, b'm', b'o', b'n', b'i', b't', b'o', b'r', 255]);
        p[44..50].copy_from_slice(&[60, 3, b'G', b'E', b'X', 255]);
        let c = parse_v4(&p).expect("a discover");
        assert_eq!(c.hostname.as_deref(), Some("monitor"));
        assert_eq!(c.vendor_class.as_deref(), Some("GEX"));
    }

    #[test]
    fn bad_messages_are_refused_not_guessed() {
        assert_eq!(parse_v4(&[1; 20]), Err(DhcpError::Short(20)));
        let mut reply = v4(MAC, [0; 4], &[(53, &[2])]);
        assert_eq!(parse_v4(&reply), Err(DhcpError::NotClient(2)), "an offer is the server's");
        reply[0] = 2;
        assert_eq!(parse_v4(&reply), Err(DhcpError::NotDhcp));
        let mut cut = v4(MAC, [0; 4], &[(53, &[1]), (12, b"long-host-name")]);
        cut.truncate(cut.len() - 6);
        assert_eq!(parse_v4(&cut), Err(DhcpError::Truncated { code: 12 }));
    }

    #[test]
    fn names_lose_control_characters_and_urls_must_be_https() {
        let p = v4(
            MAC,
            [0; 4],
            &[(53, &[1]), (12, b"evil\x1b[31mhost\n"), (161, b"http://plain.example/mud.json")],
        );
        let c = parse_v4(&p).expect("a discover");
        assert_eq!(c.hostname.as_deref(), Some("evil[31mhost"));
        assert_eq!(c.mud_url, None);
    }

    /// A DHCPv6 option: code, length, data.
    fn opt6(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    #[test]
    fn a_solicit_names_duid_mac_address_fqdn_vendor_oro_and_mud_url() {
        let mut duid = vec![0, 1, 0, 1, 0x2c, 0x5f, 0x10, 0x22];
        duid.extend_from_slice(&MAC);
        let mut ia_addr = "2001:db8:110::7".parse::<Ipv6Addr>().expect("address").octets().to_vec();
        ia_addr.extend_from_slice(&[0; 8]);
        let mut ia_na = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        ia_na.extend(opt6(v6opt::IA_ADDR, &ia_addr));
        let mut vendor = 9_u32.to_be_bytes().to_vec();
        vendor.extend_from_slice(&[0, 5]);
        vendor.extend_from_slice(b"MONTR");
        let fqdn = [&[1u8][..], b"\x07monitor\x04ward\x00"].concat();
        let mut p = vec![1, 0xab, 0xcd, 0xef];
        for o in [
            opt6(v6opt::CLIENT_ID, &duid),
            opt6(v6opt::IA_NA, &ia_na),
            opt6(v6opt::ORO, &[0, 23, 0, 24, 0, 112]),
            opt6(v6opt::VENDOR_CLASS, &vendor),
            opt6(v6opt::CLIENT_FQDN, &fqdn),
            opt6(v6opt::MUD_URL, b"https://monitors.example.com/m.json"),
        ] {
            p.extend(o);
        }
        let c = parse_v6(&p).expect("a solicit");
        assert_eq!(c.message, "solicit");
        assert_eq!(c.client_mac, Some(MAC));
        assert_eq!(c.requested, Some("2001:db8:110::7".parse().expect("address")));
        assert_eq!(c.parameters, [23, 24, 112]);
        assert_eq!(c.vendor_class.as_deref(), Some("MONTR"));
        assert_eq!(c.hostname.as_deref(), Some("monitor.ward"));
        assert_eq!(c.mud_url.as_deref(), Some("https://monitors.example.com/m.json"));
    }

    #[test]
    fn dhcpv6_lengths_are_checked_and_server_messages_refused() {
        assert_eq!(parse_v6(&[2, 0, 0, 1]), Err(DhcpError::NotClient(2)), "an advertise");
        let mut p = vec![1, 0, 0, 1];
        p.extend(opt6(v6opt::CLIENT_ID, &[0, 3, 0, 1, 1, 2]));
        p.truncate(p.len() - 1);
        assert_eq!(parse_v6(&p), Err(DhcpError::Truncated { code: v6opt::CLIENT_ID }));
        // A DUID-EN names no MAC.
        let mut q = vec![3, 0, 0, 1];
        q.extend(opt6(v6opt::CLIENT_ID, &[0, 2, 0, 0, 0, 9, 1, 2, 3]));
        assert_eq!(parse_v6(&q).expect("a request").client_mac, None);
    }
}
