//! Requests refused for lack of rights go to the audit log too (who tried
//! what), but a caller without rights must not be able to fill the disk:
//! per user, the first `PER_WINDOW` refusals of a minute are written one by
//! one, the rest are counted and written as one line when the minute ends.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Refusals written one by one per user and window.
pub const PER_WINDOW: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);

/// A request the control socket refused before the daemon acted on it.
#[derive(Debug)]
pub struct Refusal {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    /// The request as sent (its first line).
    pub line: String,
    pub reason: String,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it.
    Write,
    /// Count it; written in the window's summary.
    Count,
}

#[derive(Default)]
pub struct Limiter {
    /// uid (None: unidentified callers) -> (window start, written, counted).
    windows: HashMap<Option<u32>, (Instant, u32, u64)>,
}

impl Limiter {
    /// Whether the refusal of `uid` at `now` is written or counted. A
    /// window that ended is summarised first (returned).
    pub fn admit(&mut self, uid: Option<u32>, now: Instant) -> (Admit, Option<u64>) {
        let mut ended = None;
        let w = self.windows.entry(uid).or_insert((now, 0, 0));
        if now.duration_since(w.0) >= WINDOW {
            if w.2 > 0 {
                ended = Some(w.2);
            }
            *w = (now, 0, 0);
        }
        if w.1 < PER_WINDOW {
            w.1 += 1;
            (Admit::Write, ended)
        } else {
            w.2 += 1;
            (Admit::Count, ended)
        }
    }

    /// Windows that ended by `now` with refusals counted, not written:
    /// (uid, how many). Forgets ended windows.
    pub fn ended(&mut self, now: Instant) -> Vec<(Option<u32>, u64)> {
        let mut out = Vec::new();
        self.windows.retain(|uid, (start, _, counted)| {
            if now.duration_since(*start) < WINDOW {
                return true;
            }
            if *counted > 0 {
                out.push((*uid, *counted));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_written_ten_times_then_summed() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let admits: Vec<Admit> = (0..50).map(|_| l.admit(Some(1000), t0).0).collect();
        assert_eq!(admits.iter().filter(|a| **a == Admit::Write).count(), PER_WINDOW as usize);
        // Another user has a window of its own.
        assert_eq!(l.admit(Some(1001), t0).0, Admit::Write);
        assert!(l.ended(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(l.ended(t0 + WINDOW), vec![(Some(1000), 40)]);
        // A new window after the summary.
        assert_eq!(l.admit(Some(1000), t0 + WINDOW), (Admit::Write, None));
    }

    #[test]
    fn the_next_refusal_after_a_window_carries_its_summary() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..12 {
            l.admit(None, t0);
        }
        assert_eq!(l.admit(None, t0 + WINDOW), (Admit::Write, Some(2)));
    }
}
