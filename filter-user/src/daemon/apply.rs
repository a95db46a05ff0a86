//! The one way a policy comes into force. Every source proposes a policy
//! (and, if the policy file changes with it, the file's new text); the
//! daemon diffs it against the running one where someone reads the diff,
//! then commits it: the file is written, the policy installed, and the old
//! text put back if installing fails, so the file and the running policy do
//! not part ways over a failed apply.
//!
//! Sources: SIGHUP (the file as it is), `policy apply` (given text or the
//! file), the CLI's edits, `policy merge` and `mud import` (an edit of the
//! file's text), the DNS refresh (the running policy with new answers).
//! SIGHUP and the refresh do not diff: nobody reads it, and a large
//! policy's diff costs time and memory. The audit of requests is in
//! `requests`, around the request as a whole.

use std::{fs, path::Path};

use anyhow::Context as _;

use super::{Daemon, join, log, timed, untagged_ifaces};
use crate::{Policy, Resolved, compile, diff, edit, failpoints::crash_point, read_policy};

/// A policy that could come into force.
pub(super) struct Proposal {
    pub policy: Resolved,
    /// The policy file's new text; `None`: the file stays as it is.
    file: Option<NewText>,
}

struct NewText {
    text: String,
    /// Put back if the policy cannot be installed (`None`: it could not be
    /// read, so nothing is put back).
    previous: Option<String>,
}

impl Daemon {
    /// The policy file as it is now.
    fn propose_file(&self) -> anyhow::Result<Proposal> {
        Ok(Proposal { policy: read_policy(&self.config.policy)?, file: None })
    }

    /// `text`, which replaces the policy file when committed, or without
    /// it the policy file as it is. `file` names where `text` came from,
    /// for error messages.
    pub(super) fn propose_text(
        &self,
        text: Option<&str>,
        file: Option<&Path>,
    ) -> anyhow::Result<Proposal> {
        let path = &self.config.policy;
        let shown = file.unwrap_or(path);
        let read = match text {
            Some(t) => t.to_string(),
            None => {
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
            }
        };
        let policy =
            crate::resolve_policy(&read).map_err(|e| anyhow::anyhow!(e.render(shown, &read)))?;
        let file =
            text.map(|t| NewText { text: t.to_string(), previous: fs::read_to_string(path).ok() });
        Ok(Proposal { policy, file })
    }

    /// An edit of the policy file's text, validated as a whole.
    pub(super) fn propose_edit(
        &self,
        edit_doc: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), String>,
    ) -> anyhow::Result<Proposal> {
        let path = &self.config.policy;
        let old =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut doc = edit::parse(&old).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        edit_doc(&mut doc).map_err(|e| anyhow::anyhow!(e))?;
        let text = doc.to_string();
        let policy = crate::resolve_policy(&text).map_err(|e| {
            anyhow::anyhow!("the change would make the policy invalid: {}", e.render(path, &text))
        })?;
        Ok(Proposal { policy, file: Some(NewText { text, previous: Some(old) }) })
    }

    /// The running policy with its DNS names resolved again, if an answer
    /// changed, and the changed names. Names that do not answer keep their
    /// addresses. `None` too while the policy file holds changes not yet
    /// applied (they wait for an apply or SIGHUP, as always).
    fn propose_names(&self) -> Option<(Proposal, Vec<String>)> {
        let text = fs::read_to_string(&self.config.policy).ok()?;
        let mut file = Policy::from_toml(&text).ok()?;
        file.names = self.policy.names.clone();
        if file.resolve().ok().as_ref() != Some(&self.policy) {
            log("DNS refresh skipped: the policy file has changes that are not applied");
            return None;
        }
        file.names = crate::lookup_names(&file.dns_names());
        for (name, addrs) in &self.policy.names {
            file.names.entry(name.clone()).or_insert_with(|| addrs.clone());
        }
        match file.resolve() {
            Ok(new) if new != self.policy => {
                let changed = new
                    .names
                    .iter()
                    .filter(|(n, a)| self.policy.names.get(*n) != Some(*a))
                    .map(|(n, a)| format!("{n} -> {}", join(a)))
                    .collect();
                Some((Proposal { policy: new, file: None }, changed))
            }
            Ok(_) => None,
            Err(e) => {
                log(&format!("DNS refresh: {}", e.render(&self.config.policy, &text)));
                None
            }
        }
    }

    /// What committing `p` would change, in operator terms.
    pub(super) fn diff(&self, p: &Proposal) -> Vec<diff::Change> {
        diff::diff(&self.policy, &p.policy)
    }

    /// Writes the proposal's text, if any, and installs its policy; the
    /// file's old text is put back if installing fails. Returns the new
    /// revision.
    pub(super) fn commit(&mut self, p: Proposal) -> anyhow::Result<u64> {
        let path = self.config.policy.clone();
        if let Some(new) = &p.file {
            edit::write_atomically(&path, &new.text)
                .with_context(|| format!("writing {}", path.display()))?;
            crash_point!("commit::file-written");
        }
        self.install(p.policy).inspect_err(|_| {
            if let Some(NewText { previous: Some(old), .. }) = &p.file {
                let _ = edit::write_atomically(&path, old);
            }
        })
    }

    /// Validates `policy` against the system and installs it; the running
    /// policy stays when anything is wrong.
    pub(super) fn install(&mut self, policy: Resolved) -> anyhow::Result<u64> {
        let untagged = untagged_ifaces(&self.config.policy, &policy)?;
        // Learned addresses go in with their devices, as far as the new
        // policy still allows them.
        let mut learned = self.learning.bindings.clone();
        let gone = learned.retain_valid(&policy);
        self.filter.apply(&compile(&learned.merged(&policy)), &untagged)?;
        self.learning.bindings = learned;
        for b in gone {
            log(&format!(
                "forgetting the address {} learned for device {}: the policy no longer allows it",
                b.addr, b.device
            ));
            self.inventory.binding_changed(b.addr, None);
        }
        self.revision = self.filter.revision()?;
        self.events.policy_changed(&self.policy, &policy);
        self.inventory.policy_changed();
        self.policy = policy;
        self.applied_at = std::time::SystemTime::now();
        // The old policy and the parse of the new one are freed now.
        crate::sys::process::trim_heap();
        Ok(self.revision)
    }

    /// Re-reads the policy file and applies it.
    pub fn reload(&mut self) -> anyhow::Result<u64> {
        let p = self.propose_file()?;
        self.commit(p)
    }

    /// SIGHUP: `reload`, logged; a failure keeps the running policy.
    pub(super) fn sighup(&mut self) {
        match timed(|| self.reload()) {
            (Ok(g), took) => {
                self.last_apply_ok = true;
                log(&format!(
                    "SIGHUP: {} applied as revision {g} in {} ms",
                    self.config.policy.display(),
                    took.as_millis()
                ));
            }
            (Err(e), _) => {
                self.last_apply_ok = false;
                log(&format!("SIGHUP: {e:#}; the running policy stays"));
            }
        }
    }

    /// Resolves the policy's DNS names again and applies the policy if an
    /// answer changed (`propose_names`).
    pub(super) fn refresh_names(&mut self) {
        let Some((proposal, changed)) = self.propose_names() else { return };
        match self.commit(proposal) {
            Ok(g) => log(&format!("DNS refresh: {} ; applied as revision {g}", changed.join(", "))),
            Err(e) => log(&format!("DNS refresh: applying: {e:#}")),
        }
    }
}
