//! Errors of specs and `etc/dbctl.yml`, each naming the file, line and key.

use std::fmt;
use std::path::PathBuf;

/// Where a bad value came from: a file position or a command-line flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file, with the 1-based line and column when known.
    File {
        /// The file (relative to the GitOps repo where possible).
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: u64,
        /// 1-based column, 0 when unknown.
        column: u64,
    },
    /// A command-line flag such as `--size`.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, line, column } if *line > 0 => {
                write!(f, "`{}` line {line} column {column}", path.display())
            }
            Self::File { path, .. } => write!(f, "`{}`", path.display()),
            Self::Flag(flag) => write!(f, "`{flag}`"),
        }
    }
}

/// A spec or configuration error.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape (unknown key, wrong type, missing key).
    /// `message` holds the parser's line, column and a snippet.
    #[error("invalid `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value has the right type but breaks a rule.
    #[error("{source_at}: invalid `{key}`: {message}")]
    Invalid {
        /// Where it came from.
        source_at: Source,
        /// The key, dotted for nested keys (`targets.local.platform`).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}
