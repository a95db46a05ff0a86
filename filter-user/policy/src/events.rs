//! Drop events from the kernel's ring buffer: decoded, named, kept (the
//! most recent ones) for `vlanguard events`, logged as JSON lines, and fanned
//! out to followers.

use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

use filter_common::{DROP_EVENT_V1_BYTES, Direction, DropEvent, Reason, Verdict};
use serde::{Deserialize, Serialize};

/// Events kept in memory for `vlanguard events`.
pub const KEEP: usize = 10_000;

/// A drop event, in operator terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub interface: String,
    pub vlan: u16,
    /// The device the frame was to (`direction` in) or from (out), if any.
    pub device: Option<String>,
    pub direction: Option<Direction>,
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub sport: u16,
    pub dport: u16,
    pub reason: String,
    /// `drop`, or `would-drop` in monitor mode.
    #[serde(default)]
    pub verdict: String,
    /// For frames between two devices: the receiving one (`device` is the
    /// sender then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_device: Option<String>,
    /// Who sent the frame (absent from records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
}

impl Event {
    /// Whether the frame was `name`'s: sent by it (`device`) or, between
    /// two devices, to it (`to_device`).
    pub fn involves(&self, name: &str) -> bool {
        self.device.as_deref() == Some(name) || self.to_device.as_deref() == Some(name)
    }

    pub fn line(&self) -> String {
        format!(
            "{} {:<8} vlan {:<4} {:<18} {:<3} {} {}:{} -> {}:{} {} {}",
            self.time,
            self.interface,
            self.vlan,
            self.device.as_deref().unwrap_or("-"),
            self.direction.map_or("-", Direction::name),
            self.proto,
            self.src,
            self.sport,
            self.dst,
            self.dport,
            self.verdict,
            self.reason
        )
    }
}

/// Decodes `raw` (one ring buffer record); `name` maps a counter slot to
/// its device, `iface` an ifindex to its name.
pub fn decode(
    raw: &[u8],
    boot: SystemTime,
    name: impl Fn(u32) -> Option<String>,
    iface: impl Fn(u32) -> String,
) -> Option<Event> {
    if raw.len() < DROP_EVENT_V1_BYTES {
        return None;
    }
    // A record of an earlier program (before `src_mac`) is its prefix: the
    // fields it lacks stay zero.
    let mut e = DropEvent::default();
    let n = raw.len().min(size_of::<DropEvent>());
    // SAFETY: DropEvent is #[repr(C)] plain data for which any bytes are a
    // value; `n` bytes fit both the record and the struct.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr(), (&raw mut e).cast::<u8>(), n) };
    if n < size_of::<DropEvent>() {
        // Where `src_mac` now starts, the earlier layout had padding.
        e.src_mac = [0; 6];
    }
    let (device, direction, to_device) = match (name(e.src_slot), name(e.dst_slot)) {
        (Some(d), to) => (Some(d), Some(Direction::Out), to),
        (None, Some(d)) => (Some(d), Some(Direction::In), None),
        (None, None) => (None, None, None),
    };
    let time = boot + Duration::from_nanos(e.ktime_ns);
    Some(Event {
        time: crate::time::stamp(time),
        interface: iface(e.ifindex),
        vlan: e.vlan,
        device,
        direction,
        src: crate::addr::from_key(e.src).to_string(),
        dst: crate::addr::from_key(e.dst).to_string(),
        proto: crate::policy::proto_name(e.proto),
        sport: e.sport,
        dport: e.dport,
        reason: Reason::from_u8(e.reason).map_or("unknown", Reason::name).to_string(),
        verdict: Verdict::from_u8(e.verdict).map_or("unknown", Verdict::name).to_string(),
        to_device,
        src_mac: (e.src_mac != [0; 6]).then(|| crate::addr::mac_text(e.src_mac)),
    })
}

/// The most recent events.
#[derive(Default)]
pub struct Recent {
    events: VecDeque<Event>,
    pub delivered: u64,
}

impl Recent {
    pub fn push(&mut self, e: Event) {
        if self.events.len() == KEEP {
            self.events.pop_front();
        }
        self.events.push_back(e);
        self.delivered += 1;
    }

    pub fn matching(&self, device: Option<&str>) -> Vec<Event> {
        self.events.iter().filter(|e| device.is_none_or(|d| e.involves(d))).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_record() {
        let e = DropEvent {
            ktime_ns: 2_000_000_000,
            src: filter_common::v4_mapped([10, 30, 1, 1]),
            dst: filter_common::v4_mapped([10, 110, 0, 7]),
            src_slot: u32::MAX,
            dst_slot: 3,
            ifindex: 7,
            sport: 40000,
            dport: 23,
            vlan: 0,
            proto: 6,
            reason: Reason::NotAllowed as u8,
            verdict: Verdict::Drop as u8,
            src_mac: [0x00, 0x1b, 0x63, 0x84, 0x45, 0xe6],
            _pad: [0; 5],
        };
        // SAFETY: DropEvent is plain data.
        let raw = unsafe {
            std::slice::from_raw_parts((&raw const e).cast::<u8>(), size_of::<DropEvent>())
        };
        let boot = SystemTime::UNIX_EPOCH;
        let got = decode(raw, boot, |s| (s == 3).then(|| "pump".to_string()), |_| "uplink".into())
            .expect("decodes");
        assert_eq!(got.device.as_deref(), Some("pump"));
        assert_eq!(got.direction, Some(Direction::In));
        assert_eq!(
            (got.src.as_str(), got.dst.as_str(), got.proto.as_str()),
            ("10.30.1.1", "10.110.0.7", "tcp")
        );
        assert_eq!((got.sport, got.dport, got.reason.as_str()), (40000, 23, "not-allowed"));
        assert_eq!(got.time, "1970-01-01T00:00:02.000Z");
        assert_eq!(got.src_mac.as_deref(), Some("00:1b:63:84:45:e6"));
        // A record of a program before `src_mac`: its first 64 bytes.
        let old =
            decode(&raw[..filter_common::DROP_EVENT_V1_BYTES], boot, |_| None, |_| "uplink".into())
                .expect("decodes");
        assert_eq!((old.src_mac, old.dport), (None, 23));
        assert!(decode(&raw[..40], boot, |_| None, |_| String::new()).is_none());
        assert!(decode(&raw[..10], boot, |_| None, |_| String::new()).is_none());
    }

    #[test]
    fn a_frame_between_two_devices_is_either_devices_event() {
        let mut recent = Recent::default();
        let mut e = Event {
            time: String::new(),
            interface: "trunk0".into(),
            vlan: 110,
            device: Some("pump".into()),
            direction: Some(Direction::Out),
            src: "10.110.0.7".into(),
            dst: "10.120.0.9".into(),
            proto: "udp".into(),
            sport: 5000,
            dport: 5050,
            reason: "not-allowed".into(),
            verdict: "drop".into(),
            to_device: Some("monitor".into()),
            src_mac: None,
        };
        recent.push(e.clone());
        e.to_device = None;
        recent.push(e);
        assert_eq!(recent.matching(Some("pump")).len(), 2);
        assert_eq!(recent.matching(Some("monitor")).len(), 1);
        assert_eq!(recent.matching(Some("nurse")).len(), 0);
    }
}
