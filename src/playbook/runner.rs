//! Executes a [`Playbook`] on a host through a [`Transport`]: renders each step's
//! arguments, runs it, and reports progress. Secrets in command output are redacted
//! before they reach an error message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minijinja::Value;
use secrecy::{ExposeSecret, SecretString};

use super::{Action, Playbook, RunAs, Step, parse_mode};
use crate::engine::{Engine, Instance};
use crate::render::Renderer;
use crate::retry::{Check, Policy, Polled};
use crate::transport::{CommandSpec, Transport};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It changed something.
    Changed,
    /// Nothing to do (marker present, server already running, …).
    Unchanged,
}

/// A failed step, naming the playbook and the step.
#[derive(Debug, thiserror::Error)]
#[error("step {index}/{total} `{step}` of {origin} failed: {message}")]
pub struct StepError {
    /// 1-based step number.
    pub index: usize,
    /// Number of steps.
    pub total: usize,
    /// The step's name.
    pub step: String,
    /// The playbook's origin.
    pub origin: String,
    /// What went wrong (secrets redacted).
    pub message: String,
}

/// Everything a playbook run needs.
pub struct Runner<'a> {
    /// The host.
    pub transport: &'a dyn Transport,
    /// Templates.
    pub renderer: &'a Renderer,
    /// The engine (probe, admin client).
    pub engine: &'a dyn Engine,
    /// The server instance.
    pub instance: &'a Instance,
    /// Engine binaries (`bin` in templates).
    pub bin: &'a BTreeMap<String, String>,
    /// The template context.
    pub ctx: Value,
    /// Secret values to redact from any message.
    pub secrets: Vec<SecretString>,
    /// Progress callback: step number, total, name.
    pub progress: &'a dyn Fn(usize, usize, &str),
    /// Receives each output line of the commands steps run, as it arrives
    /// (`--verbose`); secrets are redacted first.
    pub output: Option<&'a dyn Fn(&str)>,
    /// `--timeout`: replaces each `wait_ready` step's `timeout_s` when set.
    pub wait_timeout: Option<Duration>,
    /// Where a `send` step's standard output goes (a backup being taken).
    pub send: Option<std::cell::RefCell<&'a mut dyn std::io::Write>>,
    /// What a `receive` step reads (a backup being restored): each of these in turn,
    /// the full backup first, the step's template rendered with `part` (0, 1, …).
    pub receive: Vec<crate::platform::BackupFeed<'a>>,
}

impl Runner<'_> {
    /// Runs every step in order; stops at the first failure.
    ///
    /// # Errors
    /// [`StepError`] for the failing step.
    pub fn run(&self, playbook: &Playbook) -> Result<Vec<Outcome>, StepError> {
        let total = playbook.steps.len();
        let mut outcomes = Vec::with_capacity(total);
        for (i, step) in playbook.steps.iter().enumerate() {
            (self.progress)(i + 1, total, &step.name);
            let outcome = self.step(step).map_err(|message| StepError {
                index: i + 1,
                total,
                step: step.name.clone(),
                origin: playbook.origin.clone(),
                message: self.redact(&message),
            })?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            let value = secret.expose_secret();
            if !value.is_empty() {
                out = out.replace(value, "********");
            }
        }
        out
    }

    fn render(&self, text: &str, what: &str) -> Result<String, String> {
        self.render_in(&self.ctx, text, what)
    }

    fn render_in(&self, ctx: &Value, text: &str, what: &str) -> Result<String, String> {
        self.renderer
            .render_str(text, ctx, what)
            .map_err(|e| e.to_string())
    }

    fn render_all(&self, items: &[String], what: &str) -> Result<Vec<String>, String> {
        self.render_all_in(&self.ctx, items, what)
    }

    fn render_all_in(
        &self,
        ctx: &Value,
        items: &[String],
        what: &str,
    ) -> Result<Vec<String>, String> {
        items.iter().map(|s| self.render_in(ctx, s, what)).collect()
    }

    fn user(&self, run_as: RunAs) -> Option<&str> {
        match run_as {
            RunAs::Service => self.instance.service_user.as_deref(),
            RunAs::Invoker => None,
        }
    }

    fn step(&self, step: &Step) -> Result<Outcome, String> {
        if let Some(when) = &step.when {
            let holds = self
                .renderer
                .eval(when, &self.ctx)
                .map_err(|e| format!("`when: {when}`: {e}"))?;
            if !holds {
                return Ok(Outcome::Unchanged);
            }
        }
        let Some(items) = &step.loop_items else {
            return self.act(&step.action);
        };
        if matches!(step.action, Action::Send(_)) {
            return Err("a `send` step cannot `loop`: a backup is one stream".into());
        }
        let rendered = self.render(items, "loop")?;
        let items: Vec<serde_json::Value> = serde_json::from_str(&rendered)
            .map_err(|e| format!("`loop` rendered `{rendered}`, not a JSON array: {e}"))?;
        let mut outcome = Outcome::Unchanged;
        for item in items {
            let each = Runner {
                transport: self.transport,
                renderer: self.renderer,
                engine: self.engine,
                instance: self.instance,
                bin: self.bin,
                ctx: minijinja::context! { item => Value::from(minijinja::value::Serde(&item)), ..self.ctx.clone() },
                secrets: self.secrets.clone(),
                progress: self.progress,
                output: self.output,
                wait_timeout: self.wait_timeout,
                send: None,
                receive: self.receive.clone(),
            };
            if each.act(&step.action)? == Outcome::Changed {
                outcome = Outcome::Changed;
            }
        }
        Ok(outcome)
    }

    /// Does one step's action (its `when` held), with this runner's context.
    fn act(&self, action: &Action) -> Result<Outcome, String> {
        let t = self.transport;
        match action {
            Action::Dirs(d) => {
                let mode = parse_mode(&d.mode).unwrap_or(0o700);
                for path in self.render_all(&d.paths, "dirs.paths")? {
                    t.make_dir(Path::new(&path), mode, self.user(d.owner))
                        .map_err(|e| display_chain(&e))?;
                }
                Ok(Outcome::Changed)
            }
            Action::Template(tpl) => {
                let src = self.render(&tpl.src, "template.src")?;
                let dest = self.render(&tpl.dest, "template.dest")?;
                let text = self
                    .renderer
                    .render(&src, &self.ctx)
                    .map_err(|e| e.to_string())?;
                let mode = parse_mode(&tpl.mode).unwrap_or(0o600);
                let current = t.read_file(Path::new(&dest)).ok().flatten();
                if current.as_deref() == Some(text.as_bytes()) {
                    return Ok(Outcome::Unchanged);
                }
                t.write_file(
                    Path::new(&dest),
                    text.as_bytes(),
                    mode,
                    self.user(tpl.owner),
                )
                .map_err(|e| display_chain(&e))?;
                Ok(Outcome::Changed)
            }
            Action::Run(run) => {
                let marker = run
                    .once
                    .as_deref()
                    .map(|m| self.render(m, "run.once"))
                    .transpose()?;
                if let Some(marker) = &marker
                    && t.exists(Path::new(marker))
                {
                    return Ok(Outcome::Unchanged);
                }
                if let Some(fresh) = &run.fresh {
                    let fresh = self.render(fresh, "run.fresh")?;
                    t.remove_all(Path::new(&fresh))
                        .map_err(|e| display_chain(&e))?;
                }
                let mut cmd = self.command(&run.argv, run.run_as, run.timeout_s)?;
                if let Some(args) = &run.args {
                    let rendered = self.render(args, "run.args")?;
                    let more: Vec<String> = serde_json::from_str(&rendered).map_err(|e| {
                        format!(
                            "`run.args` rendered `{rendered}`, not a JSON array of strings: {e}"
                        )
                    })?;
                    cmd.args.extend(more);
                }
                if run.admin_auth {
                    cmd = self.with_admin_env(cmd)?;
                }
                if let Some(cwd) = &run.cwd {
                    cmd = cmd.cwd(Path::new(&self.render(cwd, "run.cwd")?));
                }
                self.run_checked(&cmd)?;
                if let Some(marker) = &marker {
                    t.write_file(Path::new(marker), b"", 0o600, None)
                        .map_err(|e| display_chain(&e))?;
                }
                Ok(Outcome::Changed)
            }
            Action::Send(send) => {
                let cmd = self.stream_command(send)?;
                let sink = self
                    .send
                    .as_ref()
                    .ok_or("`send` steps run only in backups")?;
                let mut sink = sink.borrow_mut();
                let (code, stderr) = t
                    .run_piped(&cmd, &mut std::io::empty(), &mut **sink)
                    .map_err(|e| display_chain(&e))?;
                if code != 0 {
                    return Err(format!(
                        "`{}` exited with {code}: {}",
                        cmd.display(),
                        stderr.trim()
                    ));
                }
                // What the backup tool logged (positions, warnings) goes to the output.
                if let Some(output) = self.output {
                    stderr.lines().for_each(output);
                }
                Ok(Outcome::Changed)
            }
            Action::Receive(receive) => {
                if self.receive.is_empty() {
                    return Err("`receive` steps run only in restores".into());
                }
                let write_back = receive
                    .write_back
                    .as_ref()
                    .map(|dir| self.render(dir, "receive.write_back"))
                    .transpose()?;
                for (part, feed) in self.receive.iter().enumerate() {
                    let ctx = minijinja::context! { part => part, ..self.ctx.clone() };
                    let cmd = self.stream_command_in(&ctx, receive)?;
                    let received = || {
                        feed(&mut |input| {
                            let mut out = Vec::new();
                            let (code, stderr) = t.run_piped(&cmd, input, &mut out)?;
                            if code != 0 {
                                anyhow::bail!(
                                    "`{}` exited with {code}: {}",
                                    cmd.display(),
                                    stderr.trim()
                                );
                            }
                            Ok(())
                        })
                    };
                    match &write_back {
                        Some(dir) => writing_back(t, Path::new(dir), received),
                        None => received(),
                    }
                    .map_err(|e| format!("{e:#}"))?;
                }
                Ok(Outcome::Changed)
            }
            Action::Start(start) => {
                let pidfile = self.render(&start.pidfile, "start.pidfile")?;
                if let Some(pid) = read_pid(t, Path::new(&pidfile))
                    && t.process_alive(pid)
                {
                    if self.is_our_server(pid) {
                        return Ok(Outcome::Unchanged);
                    }
                    // A pid file naming some other process (stale after a reboot, or
                    // planted): never trusted; removed so the server can start.
                    t.remove_all(Path::new(&pidfile))
                        .map_err(|e| display_chain(&e))?;
                }
                let cmd = self.command(&start.argv, start.run_as, start.timeout_s)?;
                if start.detach {
                    let log = start
                        .log
                        .as_deref()
                        .map(|l| self.render(l, "start.log"))
                        .transpose()?
                        .ok_or("a detached `start` needs `log`")?;
                    t.spawn_detached(&cmd, Path::new(&log))
                        .map_err(|e| display_chain(&e))?;
                } else {
                    self.run_checked(&cmd)?;
                }
                Ok(Outcome::Changed)
            }
            Action::WaitReady(wait) => {
                let timeout = self
                    .wait_timeout
                    .unwrap_or(Duration::from_secs(wait.timeout_s));
                // Checked soon after the start (a server that has just started
                // often answers within tens of milliseconds), then less often.
                let polled = Policy::until(Some(timeout), Duration::from_millis(20))
                    .growing_to(Duration::from_millis(200))
                    .poll(
                        "the server to accept connections",
                        || -> Result<_, String> {
                            Ok(match self.engine.probe(t, self.instance, self.bin) {
                                Ok(_) => Check::Ready(()),
                                Err(err) => Check::Pending(display_chain(&err)),
                            })
                        },
                    )?;
                match polled {
                    Polled::Ready(()) => Ok(Outcome::Unchanged),
                    Polled::TimedOut(err) => Err(format!(
                        "the server did not accept connections within {} s (see logs in `{}`; `--timeout SECONDS` waits longer): {err}",
                        timeout.as_secs(),
                        self.instance.log_dir.display(),
                    )),
                }
            }
            Action::Admin(admin) => {
                let script_name = self.render(&admin.script, "admin.script")?;
                let script = self
                    .renderer
                    .render(&script_name, &self.ctx)
                    .map_err(|e| e.to_string())?;
                let cmd = self
                    .engine
                    .admin_command(t, self.instance, self.bin)
                    .map_err(|e| display_chain(&e))?
                    .stdin(SecretString::from(script))
                    .timeout(Duration::from_secs(admin.timeout_s));
                Policy::steady(admin.retries as usize + 1, Duration::from_secs(1))
                    .retry("the admin script", || self.run_checked(&cmd), |_| true)
                    .map(|()| Outcome::Changed)
            }
            Action::Stop(stop) => {
                let pidfile = self.render(&stop.pidfile, "stop.pidfile")?;
                // Only this instance's own server is ever signalled.
                let Some(pid) = read_pid(t, Path::new(&pidfile))
                    .filter(|p| t.process_alive(*p) && self.is_our_server(*p))
                else {
                    return Ok(Outcome::Unchanged);
                };
                t.signal(pid, &stop.signal).map_err(|e| display_chain(&e))?;
                let stopped = Policy::until(
                    Some(Duration::from_secs(stop.timeout_s)),
                    Duration::from_millis(20),
                )
                .growing_to(Duration::from_millis(100))
                .poll("the server to stop", || -> Result<_, String> {
                    Ok(if t.process_alive(pid) {
                        Check::Pending(())
                    } else {
                        Check::Ready(())
                    })
                })?;
                if stopped == Polled::TimedOut(()) {
                    t.signal(pid, "SIGKILL").map_err(|e| display_chain(&e))?;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Ok(Outcome::Changed)
            }
            Action::Artifact(artifact) => Err(format!(
                "`artifact` step ({}) is applied by its cloud platform, not on a host",
                artifact.template
            )),
            Action::Remove(remove) => {
                for path in self.render_all(&remove.paths, "remove.paths")? {
                    let path = Path::new(&path);
                    if remove.background && t.exists(path) {
                        self.remove_in_background(path)?;
                    } else {
                        t.remove_all(path).map_err(|e| display_chain(&e))?;
                    }
                }
                Ok(Outcome::Changed)
            }
        }
    }

    /// A `remove` step's `background`: `path` renamed to `<path>.removing` (after what
    /// an earlier one left there is removed), then `rm -rf --one-file-system` on it,
    /// detached, its output in the instance's `log/remove.log`. Where the rename or
    /// the start fails, it is removed before the step ends.
    fn remove_in_background(&self, path: &Path) -> Result<(), String> {
        let t = self.transport;
        let mut aside = path.as_os_str().to_owned();
        aside.push(".removing");
        let aside = PathBuf::from(aside);
        let moved = t.remove_all(&aside).is_ok()
            && t.run(&CommandSpec::new(
                "mv",
                [
                    "-T".to_owned(),
                    "--".to_owned(),
                    path.to_string_lossy().into_owned(),
                    aside.to_string_lossy().into_owned(),
                ],
            ))
            .is_ok_and(|out| out.success());
        if !moved {
            return t.remove_all(path).map_err(|e| display_chain(&e));
        }
        let rm = CommandSpec::new(
            "rm",
            [
                "-rf".to_owned(),
                "--one-file-system".to_owned(),
                "--".to_owned(),
                aside.to_string_lossy().into_owned(),
            ],
        );
        match t.spawn_detached(&rm, &self.instance.log_dir.join("remove.log")) {
            Ok(_) => Ok(()),
            Err(_) => t.remove_all(&aside).map_err(|e| display_chain(&e)),
        }
    }

    /// Whether `pid` is this instance's server: the engine's server binary (when it was
    /// located; a delete after the package was removed checks the directory alone)
    /// running in the instance's data directory.
    fn is_our_server(&self, pid: u32) -> bool {
        let exe = self.bin.get(self.engine.server_program()).map(Path::new);
        self.transport
            .process_matches(pid, exe, &self.instance.data_dir)
    }

    fn command(
        &self,
        argv: &[String],
        run_as: RunAs,
        timeout_s: u64,
    ) -> Result<CommandSpec, String> {
        self.command_in(&self.ctx, argv, run_as, timeout_s)
    }

    fn command_in(
        &self,
        ctx: &Value,
        argv: &[String],
        run_as: RunAs,
        timeout_s: u64,
    ) -> Result<CommandSpec, String> {
        let mut argv = self.render_all_in(ctx, argv, "argv")?.into_iter();
        let program = argv.next().ok_or("`argv` is empty")?;
        let mut cmd = CommandSpec::new(program, argv)
            .run_as(self.user(run_as))
            .timeout(Duration::from_secs(timeout_s));
        cmd = cmd.cwd(&self.instance.dir);
        Ok(cmd)
    }

    fn stream_command(&self, step: &super::StreamAction) -> Result<CommandSpec, String> {
        self.stream_command_in(&self.ctx, step)
    }

    fn stream_command_in(
        &self,
        ctx: &Value,
        step: &super::StreamAction,
    ) -> Result<CommandSpec, String> {
        let cmd = self.command_in(ctx, &step.argv, step.run_as, step.timeout_s)?;
        if step.admin_auth {
            self.with_admin_env(cmd)
        } else {
            Ok(cmd)
        }
    }

    fn with_admin_env(&self, cmd: CommandSpec) -> Result<CommandSpec, String> {
        Ok(
            match self
                .engine
                .admin_env(self.transport, self.instance)
                .map_err(|e| display_chain(&e))?
            {
                Some((key, value)) => cmd.secret_env(&key, value),
                None => cmd,
            },
        )
    }

    fn run_checked(&self, cmd: &CommandSpec) -> Result<(), String> {
        let out = match self.output {
            Some(sink) => self
                .transport
                .run_streaming(cmd, &mut |_, line| sink(&self.redact(line))),
            None => self.transport.run(cmd),
        }
        .map_err(|e| display_chain(&e))?;
        if out.success() {
            Ok(())
        } else {
            let detail = if out.stderr.trim().is_empty() {
                out.stdout.trim().to_owned()
            } else {
                out.stderr.trim().to_owned()
            };
            Err(format!(
                "`{}` exited with {}: {detail}",
                cmd.display(),
                out.code
            ))
        }
    }
}

/// How often [`writing_back`] writes the filesystem back while a stream arrives.
const WRITE_BACK_EVERY: Duration = Duration::from_millis(500);

/// Runs `receive` while a thread writes the filesystem holding `dir` back to disk every
/// [`WRITE_BACK_EVERY`]: the kernel would otherwise hold the received data in the page
/// cache (up to `vm.dirty_background_ratio` of memory) until the server's start asks
/// for it to be on disk, all at once and after the stream has ended. A write-back that
/// fails only costs that overlap; it is logged, never an error.
fn writing_back<T>(t: &dyn Transport, dir: &Path, receive: impl FnOnce() -> T) -> T {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(WRITE_BACK_EVERY)
            {
                if let Err(err) = t.sync_fs(dir) {
                    tracing::debug!(dir = %dir.display(), "write-back failed: {}", display_chain(&err));
                    return;
                }
            }
        });
        let received = receive();
        drop(stop);
        received
    })
}

/// Reads the first line of a pid file as a pid.
pub fn read_pid(t: &dyn Transport, path: &Path) -> Option<u32> {
    let bytes = t.read_file(path).ok().flatten()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// An error and its causes on one line.
pub fn display_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Steps against a recording transport double: no server, no root.
#[cfg(test)]
mod double_tests {
    use std::time::Instant;

    use super::*;
    use crate::assets::Assets;
    use crate::catalog::EngineKind;
    use crate::engine::double_tests::{bin, instance};
    use crate::transport::recording::Recording;

    /// A runner of `engine`'s instance `inst` on the double `t`, with nothing else set.
    fn runner<'a>(
        t: &'a Recording,
        renderer: &'a Renderer,
        engine: &'a dyn Engine,
        inst: &'a Instance,
        bin: &'a BTreeMap<String, String>,
    ) -> Runner<'a> {
        Runner {
            transport: t,
            renderer,
            engine,
            instance: inst,
            bin,
            ctx: Value::from(()),
            secrets: Vec::new(),
            progress: &|_, _, _| {},
            output: None,
            wait_timeout: None,
            send: None,
            receive: Vec::new(),
        }
    }

    const WAIT: &str = "description: wait\nsteps:\n  - name: Wait for the server\n    wait_ready:\n      timeout_s: 60\n";

    #[test]
    fn timeout_replaces_the_playbooks_readiness_wait() {
        let t = Recording::new();
        // The server never answers: every probe fails.
        t.answer("INFO", 1, "");
        let inst = instance(EngineKind::Redis);
        let bin = bin(&["redis-cli"]);
        t.put(&inst.conf_dir.join("admin.secret"), b"s3cret\n");
        let assets = Assets::new(None);
        let renderer = Renderer::new(&assets);
        let runner = Runner {
            wait_timeout: Some(Duration::from_secs(1)),
            ..runner(&t, &renderer, &crate::engine::Redis, &inst, &bin)
        };
        let playbook = Playbook::parse(WAIT, "test").unwrap();
        let started = Instant::now();
        let err = runner.run(&playbook).unwrap_err();
        let took = started.elapsed();
        assert!(
            err.message.contains("within 1 s") && err.message.contains("--timeout"),
            "{}",
            err.message
        );
        assert!(took < Duration::from_secs(10), "waited {took:?}, not 1 s");
        assert!(
            t.commands().iter().filter(|c| c.contains("INFO")).count() >= 2,
            "the probe is polled: {:?}",
            t.commands()
        );
    }

    #[test]
    fn a_receive_with_write_back_writes_the_directory_back_while_the_stream_arrives() {
        const RECEIVE: &str = "description: restore\nsteps:\n  - name: Unpack\n    receive:\n      argv: [\"tar\", \"--extract\"]\n      write_back: \"{{ dir }}/restore\"\n";
        let t = Recording::new();
        t.answer("tar --extract", 0, "")
            .answer("sync --file-system", 0, "");
        let inst = instance(EngineKind::Postgresql);
        let bin = bin(&["psql"]);
        let assets = Assets::new(None);
        let renderer = Renderer::new(&assets);
        // A stream that takes a while to arrive; the sync seen meanwhile counts.
        let seen_during = std::sync::Mutex::new(0);
        let feed =
            |consume: &mut dyn FnMut(&mut (dyn std::io::Read + Send)) -> anyhow::Result<()>| {
                std::thread::sleep(WRITE_BACK_EVERY * 4);
                *seen_during.lock().unwrap() = t
                    .commands()
                    .iter()
                    .filter(|c| c.as_str() == "sync --file-system /srv/x/restore")
                    .count();
                consume(&mut std::io::empty())
            };
        let runner = Runner {
            ctx: minijinja::context! { dir => "/srv/x" },
            receive: vec![&feed],
            ..runner(&t, &renderer, &crate::engine::Postgresql, &inst, &bin)
        };
        runner
            .run(&Playbook::parse(RECEIVE, "test").unwrap())
            .unwrap();
        assert!(
            *seen_during.lock().unwrap() >= 2,
            "written back while the stream arrived: {:?}",
            t.commands()
        );
        // And not after it ended.
        let after = t.commands().len();
        std::thread::sleep(WRITE_BACK_EVERY * 2);
        assert_eq!(t.commands().len(), after, "{:?}", t.commands());
    }
}
