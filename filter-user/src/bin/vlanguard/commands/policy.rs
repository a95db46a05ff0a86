//! `vlanguard policy`: validate a file here; diff, apply, show, suggest
//! and merge through the daemon.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use filter_user::{compile, control::Request, read_policy};

use super::ask;
use crate::{args::PolicyCommand, text};

pub fn policy(socket: &Path, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { file } => {
            let resolved = read_policy(&file)?;
            text::validated(&file, &compile(&resolved));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Diff { file, json } => {
            let text = read_text(file.clone())?;
            ask(socket, &Request::PolicyDiff { text, file: absolute(file) }, json)
        }
        PolicyCommand::Apply { file, json } => {
            let text = read_text(file.clone())?;
            ask(socket, &Request::PolicyApply { text, file: absolute(file) }, json)
        }
        PolicyCommand::Show => ask(socket, &Request::PolicyShow, false),
        PolicyCommand::Suggest { device, since, json } => ask(
            socket,
            &Request::PolicySuggest { device, since_secs: since.map(|d| d.as_secs()) },
            json,
        ),
        PolicyCommand::Merge { file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            ask(socket, &Request::PolicyMerge { text, file: absolute(Some(file)) }, json)
        }
    }
}

/// The file's absolute path, for the daemon's error messages
/// (`file:line:column`): its working directory is not the operator's.
fn absolute(file: Option<PathBuf>) -> Option<PathBuf> {
    file.map(|f| std::path::absolute(&f).unwrap_or(f))
}

/// The file's text, read here and sent along: the daemon (in its own
/// directory and sandbox) need not see the operator's files.
fn read_text(file: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    file.map(|f| std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display())))
        .transpose()
}
