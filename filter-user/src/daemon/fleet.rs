//! Fleet mode in the daemon (`--fleet-endpoints`, `--site`): what the
//! follower (`fleet::follow`) verified comes into force through the one
//! apply path (validate → diff → commit → audit); what it rejected, and
//! losing etcd, keep the policy in force and are said in `status`, the
//! metrics and the audit log. Never fail open, never drop everything: the
//! last good policy stays until a better one verifies.
//!
//! The last good policy and its version live in the fleet state
//! directory (`policy.toml`, `applied.json`, and tough's datastore in
//! `tuf/`); a restarted daemon enforces them before it reaches etcd.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{Daemon, log};
use crate::{
    edit,
    fleet::{
        self,
        follow::{self, Applied, Event},
        records,
        tuf::{Reason, Rejection, Verified},
    },
};

impl fleet::Config {
    fn applied_file(&self) -> PathBuf {
        self.state_dir.join("applied.json")
    }

    /// The last good policy: the policy file of a fleet router.
    pub fn policy_file(&self) -> PathBuf {
        self.state_dir.join("policy.toml")
    }

    /// The last version applied, if one was (and its copy is there).
    pub fn last_applied(&self) -> Option<AppliedRecord> {
        let text = std::fs::read(self.applied_file()).ok()?;
        let record: AppliedRecord = serde_json::from_slice(&text).ok()?;
        self.policy_file().exists().then_some(record)
    }

    /// Checks what can be checked before the daemon starts: the trusted
    /// root reads as a root, the state directory can be made.
    pub fn check(&self) -> anyhow::Result<()> {
        let root = std::fs::read(&self.trusted_root)
            .with_context(|| format!("--fleet-root {}", self.trusted_root.display()))?;
        fleet::tuf::from_bytes::<tough::schema::Signed<tough::schema::Root>>(&root).with_context(
            || {
                format!(
                    "--fleet-root {}: not a TUF root (fleet init writes it)",
                    self.trusted_root.display()
                )
            },
        )?;
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("--fleet-state {}", self.state_dir.display()))?;
        Ok(())
    }
}

/// `applied.json`: the fleet version in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub site: String,
    pub version: u64,
    pub sha256: String,
    pub applied_at: String,
    pub approvers: Vec<String>,
}

/// The daemon's fleet state.
pub(super) struct Fleet {
    pub config: fleet::Config,
    applied: Option<AppliedRecord>,
    newest: Option<u64>,
    connected: bool,
    last_contact: Option<Instant>,
    /// Since when etcd has not been reached (for the audit log: once).
    lost_since: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
    /// Freshness of the metadata in force.
    fresh_until: Option<String>,
    rejected: BTreeMap<Reason, u64>,
    /// The last rejection, so one tried again is not counted again.
    last_rejection: Option<(Option<u64>, Reason, String)>,
    tell: watch::Sender<Applied>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    pub fn new(config: fleet::Config) -> Fleet {
        let applied = config.last_applied();
        let (tell, _) = watch::channel(Applied::default());
        let mut f = Fleet {
            config,
            applied,
            newest: None,
            connected: false,
            last_contact: None,
            lost_since: None,
            last_error: None,
            fresh_until: None,
            rejected: BTreeMap::new(),
            last_rejection: None,
            tell,
            task: None,
        };
        f.tell_follower();
        f
    }

    /// Starts the follower; its events come out of the returned receiver.
    pub fn start(&mut self) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(64);
        self.task = Some(follow::spawn(self.config.clone(), tx, self.tell.subscribe()));
        rx
    }

    fn tell_follower(&mut self) {
        let a = Applied {
            version: self.applied.as_ref().map(|a| a.version),
            at: self.applied.as_ref().and_then(|a| crate::time::parse(&a.applied_at)),
            last_error: self.last_error.as_ref().map(|e| e.1.clone()),
            last_error_at: self.last_error.as_ref().map(|e| e.0),
        };
        self.tell.send_replace(a);
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn status(&self) -> crate::control::replies::FleetStatus {
        crate::control::replies::FleetStatus {
            site: self.config.site.name.clone(),
            router: self.config.router.clone(),
            endpoints: self.config.endpoints.shown(),
            applied_version: self.applied.as_ref().map(|a| a.version),
            applied_at: self.applied.as_ref().map(|a| a.applied_at.clone()),
            approvers: self.applied.as_ref().map(|a| a.approvers.clone()).unwrap_or_default(),
            newest_version: self.newest,
            behind: self.behind(),
            connected: self.connected,
            last_contact_seconds: self.last_contact.map(|t| t.elapsed().as_secs_f64()),
            last_error: self.last_error.as_ref().map(|e| e.1.clone()),
            last_error_at: self.last_error.as_ref().map(|e| crate::time::date(e.0)),
            fresh_until: self.fresh_until.clone(),
            rejected: self.rejected.iter().map(|(r, n)| (r.label().to_string(), *n)).collect(),
        }
    }

    /// Samples for `/metrics`.
    pub fn samples(&self) -> crate::metrics::FleetSample {
        crate::metrics::FleetSample {
            site: self.config.site.name.clone(),
            applied_version: self.applied.as_ref().map_or(0, |a| a.version),
            behind: self.behind(),
            connected: self.connected,
            since_contact: self.last_contact.map(|t| t.elapsed().as_secs_f64()),
            rejected: Reason::ALL
                .iter()
                .map(|r| (r.label(), self.rejected.get(r).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// What stays in force when something goes wrong, for messages.
    fn in_force(&self) -> String {
        self.applied
            .as_ref()
            .map_or("the local policy".into(), |a| format!("version {}", a.version))
    }

    /// `message` is the last error now (status, the router's status key).
    fn set_error(&mut self, message: &str) {
        self.last_error = Some((SystemTime::now(), message.to_string()));
        self.tell_follower();
    }

    fn behind(&self) -> u64 {
        let applied = self.applied.as_ref().map_or(0, |a| a.version);
        self.newest.map_or(0, |n| n.saturating_sub(applied))
    }
}

/// The policy file a fleet router starts from: its last good fleet
/// version, else `--config` (until the first version arrives).
pub fn starting_policy(config: &fleet::Config, local: &Path) -> (PathBuf, String) {
    match config.last_applied() {
        Some(a) => {
            let file = config.policy_file();
            let ok = std::fs::read(&file).is_ok_and(|b| fleet::tuf::sha256_hex(&b) == a.sha256);
            let note = if ok {
                String::new()
            } else {
                format!(
                    "; WARNING: {} does not match the hash recorded for it (edited by hand?)",
                    file.display()
                )
            };
            let text = format!(
                "fleet site {}: enforcing the last good version {} from {}, approved by {} key(s){note}",
                a.site,
                a.version,
                file.display(),
                a.approvers.len()
            );
            (file, text)
        }
        None => (
            local.to_path_buf(),
            format!(
                "fleet site {}: no fleet version applied yet; enforcing {} until one arrives",
                config.site.name,
                local.display()
            ),
        ),
    }
}

impl Daemon {
    /// One event from the follower.
    pub(super) fn fleet_event(&mut self, event: Event) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        match event {
            Event::Contact => {
                fleet.last_contact = Some(Instant::now());
                fleet.connected = true;
                if let Some(since) = fleet.lost_since.take() {
                    let away = since.elapsed().unwrap_or_default().as_secs();
                    let message = format!("etcd reached again after {away} s");
                    log(&format!("fleet: {message}"));
                    self.audit.fleet("reconnected", None, true, &message);
                }
            }
            Event::Lost(e) => {
                fleet.connected = false;
                if fleet.lost_since.is_none() {
                    fleet.lost_since = Some(SystemTime::now());
                    let message = format!(
                        "etcd at {} unreachable ({e}); enforcing {} until it is back",
                        fleet.config.endpoints.shown(),
                        fleet.in_force()
                    );
                    log(&format!("fleet: {message}"));
                    fleet.set_error(&message);
                    self.audit.fleet("unreachable", None, false, &message);
                }
            }
            Event::Newest(n) => fleet.newest = Some(n),
            Event::Rejected(r) => self.fleet_rejected(r),
            Event::Verified(v) => self.fleet_verified(v),
        }
    }

    fn fleet_rejected(&mut self, r: Rejection) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        let this = Some((r.version, r.reason, r.message.clone()));
        if fleet.last_rejection == this {
            return;
        }
        fleet.last_rejection = this;
        *fleet.rejected.entry(r.reason).or_default() += 1;
        let version = r.version.map_or(String::new(), |v| format!(" version {v}"));
        let message = format!(
            "rejected{version} ({}): {}; {} stays in force",
            r.reason.label(),
            r.message,
            fleet.in_force()
        );
        log(&format!("fleet: {message}"));
        fleet.set_error(&message);
        self.audit.fleet("rejected", r.version, false, &message);
    }

    fn fleet_verified(&mut self, v: Verified) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        fleet.fresh_until = Some(v.fresh_until.to_string());
        if let Some(a) = &fleet.applied {
            // tough's own rollback state is reset by key rotations; the
            // version in force is the floor whatever happens.
            if v.version < a.version || (v.version == a.version && v.sha256 != a.sha256) {
                let message = format!(
                    "version {} is older than or conflicts with version {} in force (sha256 {})",
                    v.version, a.version, a.sha256
                );
                return self.fleet_rejected(Rejection {
                    reason: Reason::Rollback,
                    version: Some(v.version),
                    message,
                });
            }
            if v.version == a.version {
                if fleet.last_error.take().is_some() {
                    fleet.tell_follower();
                }
                return;
            }
        }
        let started = Instant::now();
        let source =
            PathBuf::from(format!("fleet site {} version {}", fleet.config.site.name, v.version));
        let target = fleet.config.policy_file();
        let before = self.summary();
        let result = (|| -> anyhow::Result<(u64, Vec<crate::diff::Change>)> {
            let proposal = self.propose_text(Some(&v.body), Some(&source))?;
            let changes = self.diff(&proposal);
            // A fleet router's policy file is the last good version.
            let local = std::mem::replace(&mut self.config.policy, target.clone());
            let committed = self.commit(proposal);
            if committed.is_err() {
                self.config.policy = local;
            }
            Ok((committed?, changes))
        })();
        match result {
            Ok((revision, changes)) => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                let record = AppliedRecord {
                    site: fleet.config.site.name.clone(),
                    version: v.version,
                    sha256: v.sha256.clone(),
                    applied_at: records::now(),
                    approvers: v.approvers.clone(),
                };
                if let Err(e) = serde_json::to_string_pretty(&record)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| Ok(edit::write_atomically(&fleet.config.applied_file(), &t)?))
                {
                    log(&format!(
                        "fleet: writing {}: {e:#}",
                        fleet.config.applied_file().display()
                    ));
                }
                fleet.applied = Some(record);
                fleet.last_error = None;
                fleet.last_rejection = None;
                fleet.tell_follower();
                self.last_apply_ok = true;
                let changes = super::requests::changes_text(&changes, "no changes");
                let message = format!(
                    "site {} version {} (approved by {}) applied as revision {revision} in {} ms:\n{changes}",
                    fleet.config.site.name,
                    v.version,
                    v.approvers.iter().map(|k| records::short(k)).collect::<Vec<_>>().join(", "),
                    started.elapsed().as_millis()
                );
                log(&format!("fleet: {message}"));
                self.audit.fleet_applied(
                    v.version,
                    &message,
                    (before, self.summary()),
                    started.elapsed(),
                );
            }
            Err(e) => self.fleet_rejected(Rejection {
                reason: Reason::InvalidPolicy,
                version: Some(v.version),
                message: format!("{e:#}"),
            }),
        }
    }

    /// The refusal of a local policy edit on a fleet router.
    pub(super) fn fleet_managed(&self) -> anyhow::Result<()> {
        if let Some(f) = &self.fleet {
            anyhow::bail!(
                "refused: this router's policy comes from fleet site {:?} (etcd {}); local edits \
                 would be replaced by the next approved version. Propose the change with \
                 `vlanguard fleet propose FILE --site {}` and have it approved. (block, \
                 quarantine and their undoing stay local.)",
                f.config.site.name,
                f.config.endpoints.shown(),
                f.config.site.name
            );
        }
        Ok(())
    }
}
