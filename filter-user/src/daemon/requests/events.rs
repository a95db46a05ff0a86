//! `events`: the recent drop events (`--follow` then streams new ones from
//! the connection, `daemon::server`).

use crate::{
    control::{Reply, replies},
    daemon::Daemon,
    events::Event,
};

impl Daemon {
    pub(super) fn events_list(&self, device: Option<&str>) -> anyhow::Result<Reply> {
        if let Some(d) = device {
            self.known_device(d)?;
        }
        let events = self.events.recent().matching(device);
        let text = events.iter().map(Event::line).collect::<Vec<_>>().join("\n");
        Ok(Reply::with(text, &replies::Events { events }))
    }
}
