//! A small DNS server for the lab: answers A queries for the names it
//! holds (changeable while it runs), NXDOMAIN for other names and no
//! records for other types. It listens on 127.0.0.1:53 inside one lab
//! namespace, so processes there whose resolv.conf names 127.0.0.1 (see
//! `Lab::resolv_conf`) resolve through it. Stops when dropped, and after
//! two minutes (`start_for`: a given time) whatever happens.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::lab::Lab;

const TYPE_A: u16 = 1;
const NXDOMAIN: u8 = 3;
const LIFETIME: Duration = Duration::from_secs(120);

type Names = Arc<Mutex<HashMap<String, Ipv4Addr>>>;

pub struct Dns {
    names: Names,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Queries answered, for tests that want to see the daemon asked.
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl Dns {
    /// Serves `names` (name, IPv4 address) in `role`'s namespace.
    pub fn start(lab: &Lab, role: &str, names: &[(&str, &str)]) -> Dns {
        Dns::start_for(lab, role, names, LIFETIME)
    }

    /// `start`, serving for at most `lifetime` (the soak's whole run).
    pub fn start_for(lab: &Lab, role: &str, names: &[(&str, &str)], lifetime: Duration) -> Dns {
        let map: HashMap<String, Ipv4Addr> =
            names.iter().map(|(n, a)| (n.to_string(), a.parse().expect("IPv4 address"))).collect();
        let names: Names = Arc::new(Mutex::new(map));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = {
            let (names, stop, queries) = (names.clone(), stop.clone(), queries.clone());
            lab.in_ns(role, move || {
                let sock = UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53");
                sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
                let _ = ready.send(());
                let until = Instant::now() + lifetime;
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                    let names = names.lock().expect("names").clone();
                    if let Some((reply, name)) = answer(&buf[..n], &names) {
                        queries.lock().expect("queries").push(name);
                        let _ = sock.send_to(&reply, from);
                    }
                }
            })
        };
        bound.recv_timeout(Duration::from_secs(5)).expect("DNS server listening");
        Dns { names, stop, thread: Some(thread), queries }
    }

    /// Answers `name` with `addr` from now on.
    pub fn set(&self, name: &str, addr: &str) {
        self.names.lock().expect("names").insert(name.into(), addr.parse().expect("IPv4 address"));
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to one query (RFC 1035 4.1), and the name asked; None for
/// what is not a single-question query.
fn answer(q: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<(Vec<u8>, String)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question = &q[12..at + 4];
    let name = labels.join(".");
    let found = names.get(&name);
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]);
    // QR, opcode 0, RD copied, RA; rcode.
    r.push(0x80 | (q[2] & 0x01));
    r.push(0x80 | if found.is_some() { 0 } else { NXDOMAIN });
    let answers: u16 = u16::from(found.is_some() && qtype == TYPE_A);
    for v in [1u16, answers, 0, 0] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    r.extend_from_slice(question);
    if let (Some(addr), true) = (found, answers == 1) {
        // Name: a pointer to the question's; type A, class IN, TTL 1 s.
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        r.extend_from_slice(&addr.octets());
    }
    Some((r, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_and_refuses_unknown_names() {
        let names = HashMap::from([("x.lab.test".to_string(), Ipv4Addr::new(10, 20, 5, 10))]);
        // id 0x1234, RD, one question: x.lab.test A IN.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in ["x", "lab", "test"] {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let (r, name) = answer(&q, &names).expect("reply");
        assert_eq!(name, "x.lab.test");
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 20, 5, 10]);

        let unknown = q.iter().map(|b| if *b == b'x' { b'y' } else { *b }).collect::<Vec<_>>();
        let (r, _) = answer(&unknown, &HashMap::new()).expect("reply");
        assert_eq!(r[3] & 0x0f, NXDOMAIN);
        assert!(answer(&q[..5], &names).is_none(), "truncated");
    }
}
