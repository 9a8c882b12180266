//! `dbctl completions SHELL` and `dbctl man`: shell completions (`clap_complete`) and
//! man pages (`clap_mangen`) generated from the CLI definition itself, so they cannot
//! describe flags dbctl does not have. The repo keeps generated copies in
//! `completions/` and `docs/man/`; a test fails when they drift from the CLI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::Cli;

/// `dbctl completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// Writes the completion script to stdout.
    ///
    /// # Errors
    /// Writing to stdout fails.
    pub fn run(&self) -> Result<()> {
        // clap_complete panics on a broken pipe: generate into a buffer first.
        let mut buffer = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "dbctl", &mut buffer);
        std::io::stdout()
            .lock()
            .write_all(&buffer)
            .context("writing the completion script to stdout")
    }
}

/// `dbctl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write a page for dbctl and one for each command (`dbctl-create.1`, …) into
    /// this directory instead of printing dbctl(1).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl ManArgs {
    /// Prints dbctl(1), or writes every page into `--out`.
    ///
    /// # Errors
    /// The directory cannot be made or written; stdout fails.
    pub fn run(&self) -> Result<()> {
        if let Some(dir) = &self.out {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            return clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into `{}`", dir.display()));
        }
        let mut buffer = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut buffer)?;
        std::io::stdout()
            .lock()
            .write_all(&buffer)
            .context("writing the man page to stdout")
    }
}
