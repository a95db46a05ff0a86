//! The vendor of a MAC address, from the IEEE registration authority's
//! public listings as Debian's `ieee-data` package installs them
//! (`/usr/share/ieee-data/`: `oui.csv` for MA-L blocks of 24 bits,
//! `mam.csv` for MA-M of 28, `oui36.csv` and `iab.csv` for MA-S and IAB of
//! 36). The longest assignment that holds the address names the vendor.

use std::{collections::HashMap, io, path::Path};

/// Where Debian's `ieee-data` puts the listings.
pub const DEBIAN_DIR: &str = "/usr/share/ieee-data";

/// The listings, by assignment length.
#[derive(Clone, Debug, Default)]
pub struct Vendors {
    /// (prefix bits, the address's top bits) -> organisation.
    by_prefix: HashMap<(u8, u64), String>,
}

impl Vendors {
    /// Every listing in `dir` that exists (`oui.csv`, `mam.csv`,
    /// `oui36.csv`, `iab.csv`); an error only when none could be read.
    pub fn load(dir: &Path) -> io::Result<Vendors> {
        let mut v = Vendors::default();
        let mut read = 0;
        let mut last_error = None;
        for file in ["oui.csv", "mam.csv", "oui36.csv", "iab.csv"] {
            match std::fs::read_to_string(dir.join(file)) {
                Ok(text) => {
                    v.add_csv(&text);
                    read += 1;
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (read, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(v),
        }
    }

    /// Adds the rows of one listing: `Registry,Assignment,Organization
    /// Name,Organization Address`, fields with commas in double quotes.
    /// Rows that are not an assignment of 6, 7 or 9 hex digits are skipped.
    pub fn add_csv(&mut self, text: &str) {
        for line in text.lines().skip(1) {
            let fields = csv_fields(line);
            let (Some(assignment), Some(name)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            let bits = match assignment.len() {
                6 => 24,
                7 => 28,
                9 => 36,
                _ => continue,
            };
            let (Ok(prefix), false) = (u64::from_str_radix(assignment, 16), name.is_empty()) else {
                continue;
            };
            self.by_prefix.insert((bits, prefix), name.trim().to_string());
        }
    }

    /// The organisation `mac` was assigned to, if it is listed.
    pub fn lookup(&self, mac: [u8; 6]) -> Option<&str> {
        let m = mac.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        [36u8, 28, 24]
            .into_iter()
            .find_map(|bits| self.by_prefix.get(&(bits, m >> (48 - bits))))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

/// Whether `mac` is locally administered (its second-lowest bit of the
/// first octet set): no vendor owns it, as with the random addresses
/// phones and some tablets use.
pub fn is_local(mac: [u8; 6]) -> bool {
    mac[0] & 0x02 != 0
}

/// The fields of one CSV line (RFC 4180: a field in double quotes may hold
/// commas, and `""` stands for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows as the IEEE's listings (and Debian's copies) write them.
    const OUI: &str = "Registry,Assignment,Organization Name,Organization Address\r\n\
MA-L,001B63,Apple Inc,1 Infinite Loop Cupertino CA US 95014 \r\n\
MA-L,08EA44,\"Extreme Networks, Inc.\",\"6480 Via Del Oro San Jose CA US 95119 \"\r\n\
MA-L,70B3D5,IEEE Registration Authority,445 Hoes Lane Piscataway NJ US 08554 \r\n";
    const MAS: &str = "Registry,Assignment,Organization Name,Organization Address\n\
MA-S,70B3D5F2A,\"Medical \"\"Pumps\"\" GmbH\",Somewhere DE\n\
MA-S,not-hex,Nobody,Nowhere\n";

    #[test]
    fn the_longest_assignment_names_the_vendor() {
        let mut v = Vendors::default();
        v.add_csv(OUI);
        v.add_csv(MAS);
        assert_eq!(v.len(), 4);
        assert_eq!(v.lookup([0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6]), Some("Apple Inc"));
        assert_eq!(v.lookup([0x08, 0xea, 0x44, 0, 0, 1]), Some("Extreme Networks, Inc."));
        // 70:B3:D5:F2:A0:01 lies in the MA-S block inside the IEEE's MA-L.
        assert_eq!(v.lookup([0x70, 0xb3, 0xd5, 0xf2, 0xa0, 0x01]), Some("Medical \"Pumps\" GmbH"));
        assert_eq!(v.lookup([0x70, 0xb3, 0xd5, 0x11, 0, 1]), Some("IEEE Registration Authority"));
        assert_eq!(v.lookup([0x02, 0, 0, 0, 0, 1]), None);
        assert!(is_local([0x02, 0, 0, 0, 0, 1]) && !is_local([0x00, 0x1b, 0x63, 0, 0, 0]));
    }

    #[test]
    fn a_missing_directory_is_an_error_a_partial_one_is_not() {
        assert!(Vendors::load(Path::new("/nonexistent/ieee-data")).is_err());
        let dir = std::env::temp_dir().join(format!("vlanguard-oui-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("oui.csv"), OUI).expect("write");
        let v = Vendors::load(&dir).expect("one listing is enough");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(v.len(), 3);
    }
}
