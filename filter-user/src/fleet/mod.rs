//! Fleet mode: many routers follow one site's policy, kept in etcd v3 and
//! approved by a threshold of people, as TUF metadata (docs/ARCHITECTURE.md
//! §8, README "Many routers").
//!
//! Key layout, under `/vlanguard/sites/<site>/`:
//!
//! - `tuf/metadata/<N>.root.json` — the approver keys and thresholds, one key
//!   per root version (rotation adds N+1, signed by a threshold of N's
//!   keys and of its own);
//! - `tuf/metadata/<V>.targets.json`, `<V>.snapshot.json`,
//!   `timestamp.json` — approved policy version V: the policy's hash,
//!   signed by the approvers; the snapshot and timestamp bind it and
//!   expire (freeze protection);
//! - `tuf/targets/<sha256>.policy.toml` — policy bodies by their hash;
//! - `proposals/<V>` — a proposal and its approvals so far;
//! - `root-proposals/<N>` — a proposed root (key rotation);
//! - `approved` — the newest approved version (for `fleet status`);
//! - `routers/<name>` — each router's status, rewritten every few seconds;
//! - `alive/<name>` — present while the router's lease is kept alive.
//!
//! `tuf/` is a TUF repository (consistent snapshots) as etcd keys: a
//! router mirrors it with one watch and verifies it with tough.

pub mod admin;
pub mod etcd;
pub mod follow;
pub mod records;
pub mod tuf;

/// A router's fleet mode (`vlanguard run --fleet-*`): where etcd is, the
/// site it follows and as whom, what it trusts, where it keeps state.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoints: etcd::Endpoints,
    pub site: Site,
    /// This router's name in `fleet status`.
    pub router: String,
    /// The trusted root (`--fleet-root`): the first root.json, handed to
    /// the router out of band.
    pub trusted_root: std::path::PathBuf,
    /// `applied.json`, `policy.toml` (the last good policy) and `tuf/`
    /// (`datastore`).
    pub state_dir: std::path::PathBuf,
}

impl Config {
    /// tough's last verified metadata (rollback protection across restarts).
    pub fn datastore(&self) -> std::path::PathBuf {
        self.state_dir.join("tuf")
    }
}

/// The keys of one site.
#[derive(Clone, Debug)]
pub struct Site {
    pub name: String,
}

impl Site {
    /// `name` if it can be part of a key: letters, digits, `-`, `_`, `.`.
    pub fn new(name: &str) -> anyhow::Result<Site> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !name.starts_with('.');
        anyhow::ensure!(
            ok,
            "site {name:?}: use 1 to 64 letters, digits, '-', '_' or '.' (not first)"
        );
        Ok(Site { name: name.to_string() })
    }

    pub fn prefix(&self) -> String {
        format!("/vlanguard/sites/{}/", self.name)
    }

    /// The TUF repository: `metadata/...` and `targets/...` below it.
    pub fn tuf(&self) -> String {
        format!("{}tuf/", self.prefix())
    }

    pub fn metadata(&self, file: &str) -> String {
        format!("{}metadata/{file}", self.tuf())
    }

    pub fn target(&self, file: &str) -> String {
        format!("{}targets/{file}", self.tuf())
    }

    pub fn proposal(&self, version: u64) -> String {
        format!("{}{version:020}", self.proposals())
    }

    pub fn proposals(&self) -> String {
        format!("{}proposals/", self.prefix())
    }

    pub fn root_proposal(&self, version: u64) -> String {
        format!("{}{version:020}", self.root_proposals())
    }

    pub fn root_proposals(&self) -> String {
        format!("{}root-proposals/", self.prefix())
    }

    pub fn approved(&self) -> String {
        format!("{}approved", self.prefix())
    }

    pub fn routers(&self) -> String {
        format!("{}routers/", self.prefix())
    }

    pub fn router(&self, name: &str) -> String {
        format!("{}{name}", self.routers())
    }

    pub fn alive(&self) -> String {
        format!("{}alive/", self.prefix())
    }

    pub fn alive_key(&self, name: &str) -> String {
        format!("{}{name}", self.alive())
    }
}

/// An error and its causes on one line (tough's messages nest).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The name of the one target each version holds: the policy file.
pub const POLICY_TARGET: &str = "policy.toml";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_that_cannot_be_keys_are_refused() {
        for bad in ["", "a/b", "..", ".x", "a b", &"x".repeat(65)] {
            assert!(Site::new(bad).is_err(), "{bad:?}");
        }
        let s = Site::new("north-wing.2").unwrap();
        assert_eq!(
            s.metadata("timestamp.json"),
            "/vlanguard/sites/north-wing.2/tuf/metadata/timestamp.json"
        );
        // Zero-padded: the keys list in version order.
        assert!(s.proposal(9) < s.proposal(10));
    }
}
