//! The policy requests: `policy show/diff/apply/suggest/merge` and `mud
//! import`. Everything that changes the policy goes through the apply path
//! (`daemon::apply`).

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;

use super::changes_text;
use crate::{
    Policy,
    control::{Reply, replies},
    daemon::Daemon,
    edit::{self, Direction, RuleSpec},
    suggest,
};

impl Daemon {
    pub(super) fn policy_show(&self) -> anyhow::Result<Reply> {
        let text = fs::read_to_string(&self.config.policy)
            .with_context(|| format!("reading {}", self.config.policy.display()))?;
        let data = replies::PolicyText {
            file: self.config.policy.clone(),
            revision: self.revision,
            text: text.clone(),
        };
        Ok(Reply::with(text, &data))
    }

    /// What applying `text` (or the policy file as it is) would change.
    pub(super) fn policy_diff(
        &self,
        text: Option<&str>,
        file: Option<&Path>,
    ) -> anyhow::Result<Reply> {
        let changes = self.diff(&self.propose_text(text, file)?);
        let data = replies::Changes { changes: replies::changes(&changes) };
        Ok(Reply::with(changes_text(&changes, "no changes"), &data))
    }

    /// Applies `text`, which replaces the policy file, or the policy file
    /// as it is.
    pub(super) fn policy_apply(
        &mut self,
        text: Option<&str>,
        file: Option<&Path>,
    ) -> anyhow::Result<Reply> {
        let proposal = self.propose_text(text, file)?;
        let changes = self.diff(&proposal);
        let revision = self.commit(proposal)?;
        let text = changes_text(&changes, "no changes");
        let data = replies::Applied { revision, changes: replies::changes(&changes) };
        Ok(Reply::with(format!("applied as revision {revision}\n{text}"), &data))
    }

    /// An edit of the policy file (`device add`, `allow`, `merge`, ...):
    /// applied to its text, validated as a whole, written back atomically,
    /// then installed. Nothing changes if any step fails.
    pub(super) fn edit_policy(
        &mut self,
        edit_doc: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), String>,
    ) -> anyhow::Result<Reply> {
        let proposal = self.propose_edit(edit_doc)?;
        let changes = self.diff(&proposal);
        let revision = self.commit(proposal)?;
        let text = changes_text(&changes, "no effective change");
        let data = replies::Applied { revision, changes: replies::changes(&changes) };
        let message = format!(
            "{text}\napplied as revision {revision}; {} updated",
            self.config.policy.display()
        );
        Ok(Reply::with(message, &data))
    }

    /// Allow rules for what monitor mode would have dropped, as a policy
    /// fragment; `since_secs`: only events that recent.
    pub(super) fn policy_suggest(
        &self,
        device: Option<&str>,
        since_secs: Option<u64>,
    ) -> anyhow::Result<Reply> {
        if let Some(d) = device {
            self.known_device(d)?;
        }
        let window = since_secs.map(Duration::from_secs);
        let since = window.map(|w| SystemTime::now() - w);
        let text = fs::read_to_string(&self.config.policy)
            .with_context(|| format!("reading {}", self.config.policy.display()))?;
        let peers = Policy::from_toml(&text)
            .map(|p| p.peers.into_iter().map(|(k, v)| (k, v.into_inner())).collect())
            .unwrap_or_default();
        let list = suggest::suggest(&self.events.recent().matching(None), &peers, device, since);
        let data = replies::Suggestions {
            suggestions: list
                .iter()
                .map(|s| replies::Suggested {
                    device: s.device.clone(),
                    direction: s.direction,
                    rule: s.rule.clone(),
                    frames: s.frames,
                })
                .collect(),
        };
        Ok(Reply::with(suggest::to_toml(&list, window), &data))
    }

    /// Adds the rules of a fragment (as `policy suggest` writes it); rules
    /// already there are left as they are.
    pub(super) fn policy_merge(
        &mut self,
        text: &str,
        file: Option<&Path>,
    ) -> anyhow::Result<Reply> {
        let from = file.map_or("the fragment".into(), |f| f.display().to_string());
        let rules = suggest::parse_fragment(text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
        if rules.is_empty() {
            anyhow::bail!("{from}: no rules to merge");
        }
        self.edit_policy(|doc| {
            for (target, direction, rule) in &rules {
                match edit::add_rule(doc, target, *direction, rule) {
                    Ok(()) => {}
                    // Merging twice changes nothing the second time.
                    Err(e) if e == edit::ALREADY_THERE => {}
                    Err(e) => return Err(format!("{from}: {e}")),
                }
            }
            Ok(())
        })
    }

    /// Makes `profile` hold exactly `rules`, imported from the MUD file at
    /// `url`.
    pub(super) fn mud_import(
        &mut self,
        profile: &str,
        url: &str,
        rules: &[(Direction, RuleSpec)],
    ) -> anyhow::Result<Reply> {
        let origin = format!("imported from MUD file {url} (vlanguard mud import)");
        let mut reply =
            self.edit_policy(|doc| edit::set_profile_rules(doc, profile, &origin, rules))?;
        reply.message = format!("profile {profile:?} from {url}:\n{}", reply.message);
        Ok(reply)
    }
}
