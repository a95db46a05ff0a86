//! The control socket: bound with its permissions, one task per
//! connection. A connection checks its caller and reads the request; the
//! main loop answers it (`Call`), so requests never run concurrently.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Semaphore, broadcast, mpsc, oneshot},
};

use crate::{
    control::{self, Reply, Request},
    events::Event,
    refusals::Refusal,
};

/// Connections served at once (`events --follow` ones included).
pub const MAX_CONNECTIONS: usize = 2048;
/// A request line (a policy file sent whole included) is at most this long.
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Longer lines than this are read by at most `LARGE_READS` connections at
/// a time.
const SMALL_REQUEST_BYTES: u64 = 1 << 20;
const LARGE_READS: usize = 2;
/// A connection has this long to send its whole request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request from a connection, with who sent it and where the reply goes.
pub(super) struct Call {
    pub request: Request,
    pub uid: u32,
    pub reply: oneshot::Sender<Reply>,
}

pub(super) struct Server {
    listener: UnixListener,
    /// Members may use the socket (root always may).
    group: Option<u32>,
}

/// What each connection task holds: where its call and a refusal go, and
/// the events feed for `events --follow`.
#[derive(Clone)]
pub(super) struct Links {
    calls: mpsc::Sender<Call>,
    refused: mpsc::Sender<Refusal>,
    /// Refusals that found the queue full: counted, summed every tick.
    dropped: Arc<AtomicU64>,
    followers: broadcast::Sender<Event>,
    group: Option<u32>,
    /// `MAX_CONNECTIONS` and `LARGE_READS` permits.
    slots: Arc<Semaphore>,
    large_reads: Arc<Semaphore>,
}

impl Links {
    /// Refusals not queued since the counter was last reset.
    pub fn dropped(&self) -> &AtomicU64 {
        &self.dropped
    }

    /// Queues a refusal for the audit log, or counts it when the queue is
    /// full (a flood of refused callers never blocks anyone).
    fn refuse(&self, r: Refusal) {
        if self.refused.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Server {
    /// Binds the control socket, replacing a stale file but never a live
    /// socket, readable and writable by root and `group` only.
    pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<Server> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "socket {} is in use by another vlanguard daemon; use another --socket",
                    path.display()
                );
            }
            fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
        }
        Ok(Server { listener, group })
    }

    pub async fn accept(&self) -> std::io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    pub fn links(
        &self,
        calls: mpsc::Sender<Call>,
        refused: mpsc::Sender<Refusal>,
        followers: broadcast::Sender<Event>,
    ) -> Links {
        Links {
            calls,
            refused,
            dropped: Arc::default(),
            followers,
            group: self.group,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            large_reads: Arc::new(Semaphore::new(LARGE_READS)),
        }
    }
}

/// One connection: a request line in, a reply line out. Unauthorised
/// callers get a refusal and nothing else.
pub(super) async fn connection(stream: UnixStream, links: Links) {
    let cred = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    // Beyond the cap, a connection is told so and closed: a runaway tool
    // opening thousands cannot exhaust the daemon's descriptors.
    let Ok(_slot) = links.slots.clone().try_acquire_owned() else {
        let busy = Reply::invalid(format!(
            "the daemon serves {MAX_CONNECTIONS} connections at once; try again"
        ));
        let _ = write.write_all(reply_line(&busy).as_bytes()).await;
        return;
    };
    let mut line = String::new();
    let mut follow: Option<Option<String>> = None;
    let reply = match read_request(read, &mut line, &links).await {
        Err(e) => Reply::invalid(e),
        Ok(()) => match cred {
            Err(e) => {
                let reason = format!("cannot identify the caller: {e}");
                links.refuse(refusal(None, None, &line, &reason));
                Reply::denied(reason)
            }
            Ok(c) if !control::authorised(c.uid(), c.gid(), c.pid(), links.group) => {
                let reason = denied_reason(c.uid(), links.group);
                links.refuse(refusal(Some(c.uid()), c.pid(), &line, &reason));
                Reply::denied(reason)
            }
            Ok(c) => match serde_json::from_str::<Request>(&line) {
                Err(e) => Reply::invalid(format!("bad request: {e}")),
                Ok(request) => {
                    if let Request::Events { device, follow: true } = &request {
                        follow = Some(device.clone());
                    }
                    let (tx, rx) = oneshot::channel();
                    if links.calls.send(Call { request, uid: c.uid(), reply: tx }).await.is_err() {
                        return;
                    }
                    rx.await.unwrap_or_else(|_| Reply::invalid("the daemon is stopping"))
                }
            },
        },
    };
    if write.write_all(reply_line(&reply).as_bytes()).await.is_err() || !reply.ok {
        return;
    }
    if let Some(device) = follow {
        follow_events(&mut write, links.followers.subscribe(), device).await;
    }
}

fn reply_line(reply: &Reply) -> String {
    let mut out = serde_json::to_string(reply).unwrap_or_default();
    out.push('\n');
    out
}

/// Reads the request line into `line`, within `REQUEST_TIMEOUT` and
/// `MAX_REQUEST_BYTES`. Lines past `SMALL_REQUEST_BYTES` (whole policy
/// files) are read by at most `LARGE_READS` connections at a time, so
/// memory stays bounded however many connections send big lines.
async fn read_request(read: OwnedReadHalf, line: &mut String, links: &Links) -> Result<(), String> {
    let read = async {
        let mut reader = BufReader::new(read.take(SMALL_REQUEST_BYTES));
        reader.read_line(line).await.map_err(|e| format!("reading the request: {e}"))?;
        if line.ends_with('\n') || (line.len() as u64) < SMALL_REQUEST_BYTES {
            return Ok(());
        }
        let _large = links.large_reads.acquire().await.map_err(|e| e.to_string())?;
        let mut reader = reader.into_inner();
        reader.set_limit(MAX_REQUEST_BYTES - SMALL_REQUEST_BYTES + 1);
        let mut reader = BufReader::new(reader);
        reader.read_line(line).await.map_err(|e| format!("reading the request: {e}"))?;
        if line.len() as u64 > MAX_REQUEST_BYTES {
            return Err(format!("the request is longer than {MAX_REQUEST_BYTES} bytes"));
        }
        Ok(())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(format!("no whole request within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

fn refusal(uid: Option<u32>, pid: Option<i32>, line: &str, reason: &str) -> Refusal {
    Refusal { uid, pid, line: line.trim_end().to_string(), reason: reason.to_string() }
}

/// What a caller without rights is told.
fn denied_reason(uid: u32, group: Option<u32>) -> String {
    format!(
        "permission denied: user {} is neither root nor in the vlanguard operators' group{}",
        crate::sys::users::user_name(uid),
        if group.is_none() { " (the daemon allows root only; see run --group)" } else { "" }
    )
}

/// `events --follow`: every new event, until the caller goes away.
async fn follow_events(
    write: &mut OwnedWriteHalf,
    mut rx: broadcast::Receiver<Event>,
    device: Option<String>,
) {
    loop {
        let e = match rx.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if device.as_deref().is_some_and(|d| !e.involves(d)) {
            continue;
        }
        let mut line = serde_json::to_string(&e).unwrap_or_default();
        line.push('\n');
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}
