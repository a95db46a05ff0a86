//! What the `fleet` commands and the routers write to etcd besides the TUF
//! metadata: proposals with their approvals, and router status. JSON, so
//! `etcdctl get` shows them as they are.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A policy version proposed, and who approved it so far. The signatures
/// themselves are in `targets`; `approvals` names their holders for
/// people (`fleet log`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    pub version: u64,
    /// Of the policy text, hex.
    pub sha256: String,
    pub length: u64,
    /// Who ran `fleet propose` (the login name; not authenticated: only
    /// approvals are).
    pub proposer: String,
    pub proposed_at: String,
    /// The targets metadata being signed, with the signatures so far.
    pub targets: serde_json::Value,
    pub approvals: Vec<Approval>,
    /// When the approval that reached the threshold published it.
    pub published_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Approval {
    /// The approver's name (`--as`, else the key file's name).
    pub name: String,
    pub keyid: String,
    pub at: String,
}

/// A proposed root (approver keys, thresholds) and its approvals so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootProposal {
    pub version: u64,
    pub proposer: String,
    pub proposed_at: String,
    pub root: serde_json::Value,
    pub approvals: Vec<Approval>,
    pub published_at: Option<String>,
}

/// One router's view, as it writes it under `routers/<name>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RouterStatus {
    pub router: String,
    pub site: String,
    /// The fleet version in force (None: the local policy, none applied
    /// from the fleet yet).
    pub applied_version: Option<u64>,
    pub applied_at: Option<String>,
    /// The newest version the router has seen in etcd (verified or not).
    pub newest_seen: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When the router wrote this (it rewrites it every few seconds while
    /// it reaches etcd).
    pub written_at: String,
}

/// Now, as the records say when (RFC 3339, seconds: `crate::time`).
pub fn now() -> String {
    crate::time::date(SystemTime::now())
}

/// A key id or hash as people read it: its first 12 characters (the whole
/// of a shorter one: records come from etcd, anyone may have written them).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Approval {
    /// Records `keyid`'s approval by `name` now, replacing its earlier one.
    pub fn record(approvals: &mut Vec<Approval>, name: &str, keyid: &str) {
        approvals.retain(|a| a.keyid != keyid);
        approvals.push(Approval { name: name.to_string(), keyid: keyid.to_string(), at: now() });
    }
}
