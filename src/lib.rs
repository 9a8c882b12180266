//! dbctl turns a GitOps repository into running, backed-up databases.
//!
//! Module map (see `docs/architecture.md` for how a `create` flows through it):
//! - [`cli`]: clap definitions, one file per subcommand, flags → options structs.
//! - [`ops`]: one operation per file (`create`, `delete`, `status`, …).
//! - [`spec`]: raw serde types, validated `Spec`/`Config`, errors with file and key.
//! - [`catalog`]: engines (versions, ports, images) and plans from `etc/`.
//! - [`assets`]: built-in templates/playbooks/catalog with GitOps repo overrides.
//! - [`render`]: the minijinja environment.
//! - [`playbook`]: playbook model and step runner.
//! - [`platform`]: `Platform` trait and drivers (`local`).
//! - [`engine`]: `Engine` trait: binaries, probes, admin clients per engine.
//! - [`transport`]: `Transport` trait: run commands and manage files on a machine.
//! - [`gitops`]: repo layout, git commits, locks, connection files.
//! - [`secret`]: passwords and age encryption.
//! - [`output`]: human/JSON output and progress.

pub mod assets;
pub mod backup;
pub mod catalog;
pub mod change;
pub mod cli;
pub mod engine;
pub mod gitops;
pub mod ops;
pub mod output;
pub mod platform;
pub mod playbook;
pub mod render;
pub mod retry;
pub mod safefs;
pub mod secret;
pub mod spec;
pub mod transport;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Runs dbctl with `args` (program name first) and returns the exit code: 0 ok,
/// 1 error (including bad flags), 2 changes pending (`plan --detailed-exitcode`).
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match cli::Cli::try_parse_from(&args) {
        Ok(cli) => ExitCode::from(cli.run()),
        Err(err) if err.use_stderr() && wants_json(&args) => {
            // Usage errors too come out as JSON when JSON was asked for.
            let message = err.kind().to_string();
            let detail = err.render().to_string();
            println!(
                "{}",
                serde_json::json!({ "reason": "error", "kind": "usage", "error": message, "detail": detail.trim() })
            );
            ExitCode::from(1)
        }
        Err(err) => {
            let _ = err.print();
            if err.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Whether the command line asks for `-o json` / `--output json` (read before parsing
/// succeeds, to print a usage error as JSON).
fn wants_json(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.windows(2)
        .any(|w| matches!(w[0], "-o" | "--output") && w[1] == "json")
        || args
            .iter()
            .any(|a| matches!(*a, "--output=json" | "-ojson" | "-o=json"))
}
