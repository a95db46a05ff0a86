//! `vlanguard events`: the recent drop events, then (with --follow) new
//! ones as the daemon streams them.

use std::{path::Path, process::ExitCode};

use filter_user::{
    control::{self, Request},
    events::Event,
};

use crate::text;

/// The stream's first line is the reply with the recent events; each later
/// line is one new event.
pub fn events(
    socket: &Path,
    device: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    let mut first = true;
    control::stream(socket, &Request::Events { device, follow }, |line| {
        if first {
            first = false;
            let Ok(reply) = serde_json::from_str::<control::Reply>(line) else { return false };
            if !reply.ok {
                code = super::refusal(&reply);
                return false;
            }
            let list: control::replies::Events =
                serde_json::from_value(reply.data).unwrap_or_default();
            for e in list.events {
                text::event(&e, json);
            }
            return follow;
        }
        if let Ok(e) = serde_json::from_str::<Event>(line) {
            text::followed_event(&e, line, json);
        }
        true
    })?;
    Ok(code)
}
