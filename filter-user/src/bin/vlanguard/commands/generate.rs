//! `vlanguard generate` (hidden; `cargo xtask package` runs it): man pages
//! and shell completions from the clap definitions, so they never drift
//! from --help.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::args::Cli;

pub fn generate(man: Option<PathBuf>, completions: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if let Some(dir) = man {
        std::fs::create_dir_all(&dir)?;
        clap_mangen::generate_to(Cli::command(), &dir)
            .with_context(|| format!("writing man pages to {}", dir.display()))?;
    }
    if let Some(dir) = completions {
        std::fs::create_dir_all(&dir)?;
        for shell in
            [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish]
        {
            clap_complete::generate_to(shell, &mut Cli::command(), "vlanguard", &dir)
                .with_context(|| format!("writing completions to {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
