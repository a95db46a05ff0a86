//! The daemon's side of fleet mode: a task that mirrors the site's TUF
//! repository out of etcd, verifies it, and hands each verified version to
//! the daemon, whose one apply path puts it in force (`daemon::fleet`).
//!
//! It never blocks the daemon: the daemon starts from its local last-good
//! policy and this task connects, lists, watches and reconnects on its own.
//! A watch starts from the revision of the list it follows; after
//! compaction, a lost connection or a restart the task lists again and
//! replaces its mirror whole, so keys deleted meanwhile are gone from it too.
//! The task also keeps the router's status keys (`routers/<name>`, and
//! `alive/<name>` on a lease).

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::{mpsc, watch};

use super::{
    Config,
    records::{self, RouterStatus},
    tuf::{self, Rejection, Verified},
};

/// The lease behind `alive/<name>`: gone this long after the router stops
/// renewing it.
const LEASE_TTL: i64 = 10;
/// How often the router rewrites its status and renews its lease.
const STATUS_EVERY: Duration = Duration::from_secs(3);
/// Verified again this often without changes, so expiry is noticed.
const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// Waits between connection attempts, growing to the last.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// What the follower tells the daemon.
#[derive(Debug)]
pub enum Event {
    /// A version that verified: the daemon applies it.
    Verified(Verified),
    /// The repository did not verify: the daemon keeps what it enforces.
    Rejected(Rejection),
    /// The follower reached etcd (a list, a watch message, a lease renewal).
    Contact,
    /// The connection failed or was lost; the follower tries again.
    Lost(String),
    /// The newest version the site holds (by its metadata's name, not yet
    /// verified).
    Newest(u64),
}

/// What the daemon tells the follower, for the router's status key.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub version: Option<u64>,
    pub at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
}

/// Starts the follower; it runs until the daemon drops `events`' receiver.
pub fn spawn(
    config: Config,
    events: mpsc::Sender<Event>,
    applied: watch::Receiver<Applied>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut f = Follower {
            config,
            events,
            applied,
            mirror: BTreeMap::new(),
            outcome: None,
            newest: None,
            listed: false,
        };
        let mut failures = 0usize;
        loop {
            f.listed = false;
            let error = match f.session().await {
                Ok(()) => return,
                Err(e) => e,
            };
            if f.events.is_closed() {
                return;
            }
            let compacted = error.downcast_ref::<Compacted>().is_some();
            let _ = f.events.send(Event::Lost(format!("{error:#}"))).await;
            // After compaction the list is due at once; otherwise back off.
            if !compacted {
                tokio::time::sleep(BACKOFF[failures.min(BACKOFF.len() - 1)]).await;
                failures += 1;
            }
            if f.listed {
                failures = 0;
            }
        }
    })
}

/// The watch's start revision was compacted away: list again.
#[derive(Debug, thiserror::Error)]
#[error("etcd compacted revision {0} away before the watch read it; listing the site again")]
struct Compacted(i64);

/// What a verification found, compared with the last one.
#[derive(Debug, PartialEq)]
enum Outcome {
    Verified { version: u64, sha256: String },
    Rejected(tuf::Reason, String),
}

struct Follower {
    config: Config,
    events: mpsc::Sender<Event>,
    applied: watch::Receiver<Applied>,
    /// `tuf/` of the site: `metadata/...` and `targets/...` as etcd has them.
    mirror: BTreeMap<String, Vec<u8>>,
    /// The last verification's result, so each is reported once.
    outcome: Option<Outcome>,
    newest: Option<u64>,
    /// This connection got as far as a list (the backoff starts over).
    listed: bool,
}

impl Follower {
    /// One connection: list, then watch from the list's revision, keeping
    /// the status keys, until something fails. `Ok` only when the daemon
    /// is gone.
    async fn session(&mut self) -> anyhow::Result<()> {
        let mut client = self.config.endpoints.connect().await?;
        let lease = client.lease_grant(LEASE_TTL, None).await.context("granting a lease")?.id();
        let (mut keeper, mut renewals) =
            client.lease_keep_alive(lease).await.context("keeping the lease alive")?;
        let alive = self.config.site.alive_key(&self.config.router);
        client
            .put(alive, records::now(), Some(PutOptions::new().with_lease(lease)))
            .await
            .context("writing the alive key")?;
        let revision = self.list(&mut client).await?;
        self.listed = true;
        self.send(Event::Contact).await?;
        self.publish_status(&mut client).await?;
        self.verify().await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify();
        let mut stream = client
            .watch(self.config.site.tuf(), Some(options))
            .await
            .context("watching the site")?;
        let mut status = tokio::time::interval(STATUS_EVERY);
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        recheck.reset();
        loop {
            tokio::select! {
                message = stream.message() => {
                    let Some(resp) = message.context("the watch failed")? else {
                        anyhow::bail!("etcd ended the watch");
                    };
                    if resp.compact_revision() > 0 {
                        return Err(Compacted(resp.compact_revision()).into());
                    }
                    if resp.canceled() {
                        anyhow::bail!("etcd cancelled the watch: {}", resp.cancel_reason());
                    }
                    let mut changed = false;
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Some(key) = self.relative(kv.key()) else { continue };
                        changed = true;
                        match event.event_type() {
                            EventType::Put => self.mirror.insert(key, kv.value().to_vec()),
                            EventType::Delete => self.mirror.remove(&key),
                        };
                    }
                    self.send(Event::Contact).await?;
                    if changed {
                        self.verify().await?;
                    }
                }
                _ = status.tick() => {
                    keeper.keep_alive().await.context("renewing the lease")?;
                    match tokio::time::timeout(super::etcd::REQUEST_TIMEOUT, renewals.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                        Ok(Ok(Some(_))) => anyhow::bail!("the lease expired"),
                        Ok(Ok(None)) => anyhow::bail!("etcd ended the lease renewals"),
                        Ok(Err(e)) => return Err(e).context("renewing the lease"),
                        Err(_) => anyhow::bail!("etcd did not answer a lease renewal within {:?}", super::etcd::REQUEST_TIMEOUT),
                    }
                    self.send(Event::Contact).await?;
                    self.publish_status(&mut client).await?;
                }
                changed = self.applied.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.publish_status(&mut client).await?;
                }
                _ = recheck.tick() => {
                    // A version that verified but did not apply (an
                    // interface it names was missing, say) is tried again.
                    self.outcome = self.outcome.take().filter(|_| self.applied_is_newest());
                    self.verify().await?;
                }
            }
        }
    }

    /// Whether the last verified version is the one the daemon enforces
    /// (or the last verification was no version).
    fn applied_is_newest(&self) -> bool {
        match &self.outcome {
            Some(Outcome::Verified { version, .. }) => {
                self.applied.borrow().version == Some(*version)
            }
            _ => true,
        }
    }

    /// Lists the site's repository and replaces the mirror with it; the
    /// revision it was read at.
    async fn list(&mut self, client: &mut Client) -> anyhow::Result<i64> {
        let resp = client
            .get(self.config.site.tuf(), Some(GetOptions::new().with_prefix()))
            .await
            .context("listing the site")?;
        let revision = resp.header().map_or(0, |h| h.revision());
        self.mirror = resp
            .kvs()
            .iter()
            .filter_map(|kv| Some((self.relative(kv.key())?, kv.value().to_vec())))
            .collect();
        Ok(revision)
    }

    /// `key` below the site's `tuf/`, if it is there.
    fn relative(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(&self.config.site.tuf()).map(String::from)
    }

    /// Verifies the mirror and tells the daemon, once per different result.
    async fn verify(&mut self) -> anyhow::Result<()> {
        if let Some(n) = tuf::newest_version(&self.mirror).filter(|n| self.newest != Some(*n)) {
            self.newest = Some(n);
            self.send(Event::Newest(n)).await?;
        }
        let verified =
            tuf::verify(&self.mirror, &self.config.trusted_root, &self.config.datastore()).await;
        let rejected =
            |r: Rejection| (Outcome::Rejected(r.reason, r.message.clone()), Event::Rejected(r));
        let (outcome, event) = match verified {
            Ok(Some(v)) => (
                Outcome::Verified { version: v.version, sha256: v.sha256.clone() },
                Event::Verified(v),
            ),
            // The published version gone (the site's keys deleted): said,
            // the version in force stays.
            Ok(None) if self.applied.borrow().version.is_some() => rejected(Rejection {
                reason: tuf::Reason::Malformed,
                version: None,
                message: "the site publishes no version any more (its timestamp.json is \
                          missing: deleted?)"
                    .into(),
            }),
            // Nothing approved yet.
            Ok(None) => return Ok(()),
            Err(r) => rejected(r),
        };
        if self.outcome.as_ref() != Some(&outcome) {
            self.outcome = Some(outcome);
            self.send(event).await?;
        }
        Ok(())
    }

    async fn publish_status(&mut self, client: &mut Client) -> anyhow::Result<()> {
        let a = self.applied.borrow_and_update().clone();
        let status = RouterStatus {
            router: self.config.router.clone(),
            site: self.config.site.name.clone(),
            applied_version: a.version,
            applied_at: a.at.map(crate::time::date),
            newest_seen: self.newest,
            last_error: a.last_error,
            last_error_at: a.last_error_at.map(crate::time::date),
            written_at: records::now(),
        };
        client
            .put(self.config.site.router(&self.config.router), serde_json::to_vec(&status)?, None)
            .await
            .context("writing the router's status")?;
        Ok(())
    }

    async fn send(&self, event: Event) -> anyhow::Result<()> {
        self.events.send(event).await.map_err(|_| anyhow::anyhow!("the daemon is gone"))
    }
}
