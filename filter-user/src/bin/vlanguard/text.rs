//! Everything the CLI prints for the operator, in one place: results and
//! summaries on stdout, notes and refusals on stderr (prefixed
//! `vlanguard: `). The daemon's replies and `mud show`'s description are
//! written by the library and only printed here; error messages stay with
//! the check that raises them.

use std::{fmt::Display, path::Path};

use filter_user::{
    Compiled,
    control::Reply,
    events::Event,
    mud::{self, Conversion, Mud},
};

/// A line on stderr: an error, a refusal or a note, told from the output
/// by its prefix.
pub fn notice(message: impl Display) {
    eprintln!("vlanguard: {message}");
}

/// A request the daemon did: its data as JSON, or its message.
pub fn reply(reply: &Reply, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&reply.data)?);
    } else {
        println!("{}", reply.message.trim_end());
    }
    Ok(())
}

/// A daemon's message, as it wrote it.
pub fn message(message: &str) {
    println!("{message}");
}

/// A drop event of the reply to `vlanguard events`.
pub fn event(e: &Event, json: bool) {
    println!("{}", if json { serde_json::to_string(e).unwrap_or_default() } else { e.line() });
}

/// A drop event `--follow` received: with --json, `line` as the daemon sent it.
pub fn followed_event(e: &Event, line: &str, json: bool) {
    println!("{}", if json { line.to_string() } else { e.line() });
}

/// `vlanguard policy validate`: what the file compiles to.
pub fn validated(file: &Path, c: &Compiled) {
    println!(
        "{}: valid: {} vlans, {} devices, {} device addresses, {} rule sets \
         ({} rule entries, {} peer-set networks)",
        file.display(),
        c.vlans.len(),
        c.devices.len(),
        c.devices.iter().map(|d| d.addrs.len()).sum::<usize>(),
        c.rule_sets.len(),
        c.rule_entries(),
        c.peer_nets(),
    );
}

/// `vlanguard mud show`.
pub fn mud(parsed: &Mud, conversion: &Conversion) {
    print!("{}", mud::describe(parsed, conversion));
}

pub fn signature_verified() {
    notice("signature verified against the trust anchor");
}

/// `vlanguard detach` without a daemon.
pub fn detached(ifaces: &[String], pin_dir: &Path) {
    println!(
        "detached from {}; removed {}",
        if ifaces.is_empty() { "no interface".to_string() } else { ifaces.join(", ") },
        pin_dir.display()
    );
}

/// `vlanguard check`.
pub fn checked(verified_instructions: impl Display, translated_bytes: impl Display) {
    println!(
        "program loaded: {verified_instructions} instructions verified, {translated_bytes} bytes \
         translated"
    );
}
