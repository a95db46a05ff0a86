//! The program's debug log (`[settings] debug_log = true`): aya-log
//! records from the `vlanguard_log` program, written to standard error as
//! `program: <line>`.
//!
//! Read on a thread of its own: aya-log drains its ring buffer until it is
//! empty, which under a flood may take long, and the daemon's event loop
//! (control socket, scrapes, drop events) must not wait for it.

use std::{io, os::fd::AsFd as _, thread};

use aya_log::EbpfLogger;
use log::{Log, Metadata, Record};

use crate::sys;

/// Writes each program record as one line on standard error.
struct Stderr;

impl Log for Stderr {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        eprintln!("program: {}", record.args());
    }

    fn flush(&self) {}
}

/// Starts the reader for the log of the program with id `program_id`. Runs
/// until the process exits; it sleeps in poll(2) until there are records,
/// which only happens while the policy has `debug_log` on.
pub fn spawn(program_id: u32) -> anyhow::Result<()> {
    let mut logger = EbpfLogger::init_from_id_with_logger(program_id, Stderr)
        .map_err(|e| anyhow::anyhow!("opening the program's debug log: {e}"))?;
    thread::Builder::new().name("program-log".into()).spawn(move || {
        // Its descriptors are open; like the main thread, it keeps nothing
        // more than the filter's capabilities.
        if let Err(e) = crate::privileges::drop_unneeded() {
            eprintln!("vlanguard: program log: giving up capabilities: {e}");
        }
        loop {
            match sys::process::wait_readable(logger.as_fd()) {
                Ok(()) => logger.flush(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("vlanguard: program log: poll: {e}");
                    return;
                }
            }
        }
    })?;
    Ok(())
}
