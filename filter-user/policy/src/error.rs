//! Errors in policies and edits, reported to operators.

use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// A request or an edit named a device the policy does not have.
#[derive(Debug, Error)]
#[error("no device named {0:?} in the policy (device list shows them)")]
pub struct UnknownDevice(pub String);

/// What is wrong with a policy file. `at` is the byte range of the table or
/// rule at fault; [`PolicyError::render`] turns it into `file:line:column`.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// Not TOML, or not the policy's shape (the message has line and column).
    #[error("{0}")]
    Syntax(String),
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String, at: Option<Range<usize>> },
    #[error(
        "device {device:?}: {count} {} rules after merging its profile; \
         the limit is {limit}: merge rules into peer sets or port ranges",
        direction.rules_key()
    )]
    TooManyRules {
        device: String,
        direction: filter_common::Direction,
        count: usize,
        limit: usize,
        at: Option<Range<usize>>,
    },
}

impl PolicyError {
    pub fn invalid(what: impl Into<String>, problem: String) -> PolicyError {
        PolicyError::Invalid { what: what.into(), problem, at: None }
    }

    /// The same error, located at `span` (bytes of the policy text).
    #[must_use]
    pub fn at(mut self, span: Range<usize>) -> PolicyError {
        if let PolicyError::Invalid { at, .. } | PolicyError::TooManyRules { at, .. } = &mut self {
            *at = Some(span);
        }
        self
    }

    /// `file:line:column: message`, from the text the policy was read from.
    pub fn render(&self, file: &Path, text: &str) -> String {
        let at = match self {
            PolicyError::Invalid { at, .. } | PolicyError::TooManyRules { at, .. } => at.clone(),
            PolicyError::Syntax(_) => None,
        };
        match at {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{column}: {self}", file.display())
            }
            None => format!("{}: {self}", file.display()),
        }
    }
}

/// Why a policy file could not be read into a policy.
#[derive(Debug, Error)]
pub enum ReadPolicyError {
    #[error("reading {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// `rendered` is `error` located in the file (`file:line:column: ...`).
    #[error("{rendered}")]
    Invalid { rendered: String, error: PolicyError },
}
