//! Output: human text, JSON or Markdown, chosen once per run. Data goes to stdout;
//! progress and status lines go to stderr and are silent in JSON mode and with
//! `--quiet`.

use std::io::{IsTerminal, Write};

/// The output format (`--output`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
    /// Markdown on stdout, for a CI job's summary or a merge request's comment
    /// (progress on stderr as for people).
    Markdown,
}

/// A command's result, printable every way.
pub trait Report: erased::Serialize {
    /// The human rendering (ends with a newline, or is empty).
    fn human(&self) -> String;
    /// The Markdown rendering: the human text as a fenced block, unless the report
    /// has a richer one (`plan`'s tables).
    fn markdown(&self) -> String {
        let text = self.human();
        if text.is_empty() {
            text
        } else {
            format!("```\n{text}```\n")
        }
    }
    /// The process exit code for this result (0 unless the report says otherwise).
    fn exit_code(&self) -> u8 {
        0
    }
}

mod erased {
    /// Object-safe serialisation through `serde_json::Value`.
    pub trait Serialize {
        /// The JSON value of `self`.
        fn to_json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Serialize for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Where progress and results go.
#[derive(Debug, Clone)]
pub struct Printer {
    /// The chosen format.
    pub format: Format,
    quiet: bool,
    verbose: bool,
    tty: bool,
    /// The transfer bar being drawn, if any: status lines print above it.
    bar: std::sync::Arc<std::sync::Mutex<Option<indicatif::ProgressBar>>>,
    /// The databases' lines ([`Printer::line`]); status lines print above them.
    lines: std::sync::Arc<indicatif::MultiProgress>,
    /// `--events` (with `-o json`): progress as JSON Lines on stdout, one object a line
    /// (`{"event": "status" | "step" | "progress" | "done" | "output" | "result" |
    /// "error", …}`), the report last as the `result` event.
    events: bool,
}

/// A transfer's byte counter (see [`Printer::transfer`]): a bar with bytes, rate and
/// elapsed time on a terminal, nothing elsewhere. Cleared when dropped.
pub struct Transfer {
    bar: indicatif::ProgressBar,
    slot: std::sync::Arc<std::sync::Mutex<Option<indicatif::ProgressBar>>>,
}

impl Transfer {
    /// A callback setting the bytes moved so far (for the backup pipeline's counters).
    pub fn counter(&self) -> Box<dyn Fn(u64) + Send + Sync> {
        let bar = self.bar.clone();
        Box::new(move |bytes| bar.set_position(bytes))
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Ok(mut slot) = self.slot.lock() {
            *slot = None;
        }
    }
}

/// One database's line on a terminal (see [`Printer::line`]): a spinner with its
/// current step, replaced by the outcome when it ends; elsewhere plain status lines.
pub struct Line {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    printer: Printer,
}

impl Line {
    /// The current step (`[2/7] Start the server`).
    pub fn set(&self, message: &str) {
        if self.printer.events {
            self.printer.emit(&serde_json::json!({
                "event": "progress", "database": self.label, "message": message,
            }));
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => self.printer.status(&format!("{}: {message}", self.label)),
        }
    }

    /// The outcome; the line stays on screen with it.
    pub fn finish(&self, message: &str) {
        if self.printer.events {
            self.printer.emit(&serde_json::json!({
                "event": "done", "database": self.label, "message": message,
            }));
            return;
        }
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_owned()),
            None => self.printer.status(&format!("{}: {message}", self.label)),
        }
    }
}

impl Printer {
    /// A printer for `format`; `quiet` silences progress; `verbose` shows the output
    /// of the commands steps run.
    pub fn new(format: Format, quiet: bool, verbose: bool) -> Self {
        Self {
            format,
            quiet,
            verbose,
            events: false,
            tty: std::io::stderr().is_terminal(),
            bar: std::sync::Arc::default(),
            lines: std::sync::Arc::new(indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr_with_hz(8),
            )),
        }
    }

    /// The same printer streaming JSON Lines events on stdout (`--events`; JSON output
    /// only).
    #[must_use]
    pub fn with_events(mut self) -> Self {
        self.events = self.format == Format::Json;
        self
    }

    /// One event, a line of compact JSON on stdout.
    fn emit(&self, event: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
    }

    /// Whether progress is drawn (a terminal, text output, not `--quiet`).
    fn draws(&self) -> bool {
        self.tty && !self.quiet && self.format != Format::Json
    }

    /// A line for `label` (a database) among the run's others: on a terminal a
    /// spinner showing its step, one line a database however many run at once
    /// (indicatif's `MultiProgress`); elsewhere `label: step` status lines.
    pub fn line(&self, label: &str) -> Line {
        let bar = self.draws().then(|| {
            let bar = self.lines.add(indicatif::ProgressBar::new_spinner());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg}")
            {
                bar.set_style(style);
            }
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Line {
            label: label.to_owned(),
            bar,
            printer: self.clone(),
        }
    }

    /// Starts a byte counter for `message` (`total`: the bytes expected, when known),
    /// drawn on stderr only on a terminal in human mode without `--quiet`.
    pub fn transfer(&self, message: &str, total: Option<u64>) -> Transfer {
        let shown = self.tty && !self.quiet && self.format != Format::Json;
        let target = if shown {
            indicatif::ProgressDrawTarget::stderr_with_hz(4)
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let template = if total.is_some() {
            "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed}"
        } else {
            "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
        };
        let bar = indicatif::ProgressBar::with_draw_target(total, target);
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar.clone());
        }
        Transfer {
            bar,
            slot: self.bar.clone(),
        }
    }

    /// True with `--verbose` (and not `--quiet` or JSON).
    pub fn verbose(&self) -> bool {
        self.verbose && !self.quiet && (self.format != Format::Json || self.events)
    }

    /// One output line of a command a step runs, indented under its step (stderr).
    pub fn output(&self, line: &str) {
        if self.events && self.verbose {
            self.emit(&serde_json::json!({"event": "output", "line": line}));
        } else if self.verbose() {
            self.status(&format!("      | {line}"));
        }
    }

    /// A status line on stderr (not in JSON mode; an event with `--events`).
    pub fn status(&self, line: &str) {
        if self.events {
            self.emit(&serde_json::json!({"event": "status", "message": line}));
            return;
        }
        if self.format != Format::Json && !self.quiet {
            match self.bar.lock().ok().and_then(|b| b.clone()) {
                Some(bar) if !bar.is_hidden() => bar.println(line),
                _ if self.draws() => {
                    let _ = self.lines.println(line);
                }
                _ => {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
        }
    }

    /// A playbook step on stderr: `[2/7] Initialise the data directory`.
    pub fn step(&self, index: usize, total: usize, name: &str) {
        if self.events {
            self.emit(&serde_json::json!({
                "event": "step", "index": index, "total": total, "name": name,
            }));
        } else if self.tty {
            self.status(&format!("\x1b[1m[{index}/{total}]\x1b[0m {name}"));
        } else {
            self.status(&format!("[{index}/{total}] {name}"));
        }
    }

    /// Prints a result to stdout in the chosen format.
    pub fn report(&self, report: &dyn Report) {
        if self.events {
            self.emit(&serde_json::json!({"event": "result", "report": report.to_json()}));
            return;
        }
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Human => {
                let _ = out.write_all(report.human().as_bytes());
            }
            Format::Json => {
                let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
                let _ = writeln!(out, "{text}");
            }
            Format::Markdown => {
                let _ = out.write_all(report.markdown().as_bytes());
            }
        }
    }

    /// Prints an error: `error: …` on stderr, or `{"error": …}` on stdout in JSON mode.
    pub fn error(&self, err: &anyhow::Error) {
        let message = err
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        match self.format {
            Format::Human | Format::Markdown => {
                let _ = writeln!(std::io::stderr(), "error: {message}");
            }
            Format::Json if self.events => {
                self.emit(&serde_json::json!({ "event": "error", "error": message }));
            }
            Format::Json => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    serde_json::json!({ "reason": "error", "error": message })
                );
            }
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A Markdown (GitHub-flavoured) table with a header row (comfy-table's preset; cells
/// with `|` or newlines are escaped by the caller's choice of text).
pub fn markdown_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    styled_table(comfy_table::presets::ASCII_MARKDOWN, header, rows)
}

/// A table with a header row, for terminals (comfy-table, no borders).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    styled_table(comfy_table::presets::NOTHING, header, rows)
}

fn styled_table(
    preset: comfy_table::TableStyle,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> String {
    let mut table = comfy_table::Table::new();
    table.load_style(preset).set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    let mut text = table.to_string();
    text.push('\n');
    text
}
