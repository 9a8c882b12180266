//! `dbctl backup verify`: a restore drill. The backup is restored into a scratch
//! database (`<name>-drill`, on the database's target or `--target`) through the same
//! path as `dbctl restore --as`, checked (rows per table, keys per Redis database, an
//! optional `--query` and its `--expect`ed last line), and removed again; the result
//! and the measured recovery time are recorded in the backup's manifest, where
//! `dbctl backups` shows the last one.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use super::backup::{Found, Lookup, find_backup, restore_into, revalidate};
use crate::backup::{self, Drill, Manifest};
use crate::catalog::EngineKind;
use crate::gitops::Repo;
use crate::output::Report;
use crate::platform::{Admin, Role};
use crate::spec::{BackupPolicy, Spec};

/// Flags of `dbctl backup verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The database whose backup is drilled.
    pub name: String,
    /// `--backup ID` (default: the latest).
    pub backup: Option<String>,
    /// `--store`.
    pub store: Option<String>,
    /// `--target`: where the scratch database runs (default: the database's target).
    pub target: Option<String>,
    /// `--query`: a batch for the engine's client, run as its administrator in the
    /// restored database; it must exit 0.
    pub query: Option<String>,
    /// `--expect`: the query's last line of output must be this (trimmed).
    pub expect: Option<String>,
    /// Seconds to wait for another run's lock.
    pub lock_timeout_s: u64,
}

/// What a drill did.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// The database.
    pub database: String,
    /// Its engine.
    pub engine: EngineKind,
    /// The store.
    pub store: String,
    /// The backup drilled.
    pub backup: String,
    /// The scratch database's name (removed again).
    pub scratch: String,
    /// The result, as recorded in the backup's manifest.
    pub drill: Drill,
}

impl Report for VerifyReport {
    fn human(&self) -> String {
        let d = &self.drill;
        let rows: u64 = d.counts.values().sum();
        let mut text = format!(
            "drill of backup {} (store `{}`) on target `{}`: {}\n",
            self.backup,
            self.store,
            d.target,
            if d.ok { "passed" } else { "FAILED" }
        );
        if let Some(error) = &d.error {
            text.push_str(&format!("  {error}\n"));
        }
        text.push_str(&format!(
            "  restored into scratch `{}` in {:.1} s (the recovery time), then removed it\n",
            self.scratch, d.restore_seconds
        ));
        let (what, unit) = match self.engine {
            EngineKind::Redis => ("databases", "keys"),
            _ => ("tables", "rows"),
        };
        text.push_str(&format!("  {} {what}, {rows} {unit}\n", d.counts.len()));
        if let Some(output) = &d.query_output {
            text.push_str(&format!("  query printed: {}\n", last_line(output)));
        }
        text
    }

    fn exit_code(&self) -> u8 {
        u8::from(!self.drill.ok)
    }
}

/// The scratch database's name: `<name>-drill`, the name cut to fit 63 characters.
pub fn scratch_name(name: &str) -> String {
    format!("{}-drill", &name[..name.len().min(57)])
}

/// Runs `dbctl backup verify`: restores the backup into the scratch database, checks
/// it, removes it, and records the drill in the backup's manifest. A failed restore or
/// check is a report with `ok: false` (exit 1), recorded like a pass.
///
/// # Errors
/// An unknown database, store or backup; a scratch database left by an interrupted
/// drill; a backup this target cannot restore (engine, version); the store failing.
pub fn verify(session: &Session, opts: &VerifyOptions) -> Result<VerifyReport> {
    let repo = session.repo()?;
    let Found {
        source,
        store_name,
        store,
        manifest,
    } = find_backup(
        session,
        &repo,
        &Lookup {
            name: &opts.name,
            store: opts.store.as_deref(),
            target: opts.target.as_deref(),
            backup: opts.backup.as_deref(),
            to_time: None,
        },
    )?;
    let manifest = &manifest;
    let scratch = scratch_spec(&repo, &source, opts.target.as_deref())?;
    backup::check_compatible(manifest, scratch.engine, &scratch.version)?;
    // A target that cannot restore is an error, not a failed drill of the backup.
    let platform = session.platform(&repo, &scratch)?;
    super::backup::check_platform(platform.as_ref(), &scratch, "backup verify")?;
    if repo.read_text(&Repo::spec_rel(&scratch.name))?.is_some() {
        bail!(
            "`{}` exists: a drill's scratch database has that name (an interrupted drill leaves it behind); remove it with `dbctl delete {} --yes --skip-final-backup`",
            Repo::spec_rel(&scratch.name).display(),
            scratch.name
        );
    }
    // What the target needs for the scratch database (binaries, room, a free VIP) is
    // checked first: a target that cannot hold it is an error, not a failed drill.
    let noop = |_: usize, _: usize, _: &str| {};
    platform
        .preflight(&crate::platform::Request {
            spec: &scratch,
            changes: &[crate::change::Change::create(&scratch)],
            password: None,
            login: None,
            progress: &noop,
            output: None,
            restore: None,
        })
        .with_context(|| {
            format!(
                "a restore drill of `{}` needs a scratch database `{}` on target `{}`; drill on another target with `--target`",
                opts.name, scratch.name, scratch.target
            )
        })?;
    let at = jiff::Timestamp::now();
    let mut drill = Drill {
        at,
        target: scratch.target.clone(),
        ok: false,
        restore_seconds: 0.0,
        counts: BTreeMap::new(),
        query: opts.query.clone(),
        query_output: None,
        error: None,
    };
    let outcome = restore_into(
        session,
        &repo,
        &store,
        manifest,
        &scratch,
        None,
        opts.lock_timeout_s,
    )
    .and_then(|(_, seconds)| {
        drill.restore_seconds = seconds;
        check(session, &repo, &scratch, opts, &mut drill)
    });
    drill.ok = outcome.is_ok();
    if let Err(err) = &outcome {
        drill.error = Some(format!("{err:#}"));
    }
    // The scratch database goes whatever happened (a restore that failed early removed
    // it already, spec file and all).
    if repo.read_text(&Repo::spec_rel(&scratch.name))?.is_some() {
        super::delete::delete(
            session,
            &super::delete::DeleteOptions {
                name: scratch.name.clone(),
                yes: true,
                no_commit: true,
                skip_final_backup: true,
                lock_timeout_s: opts.lock_timeout_s,
                ..Default::default()
            },
        )
        .with_context(|| {
            format!(
                "the drill {} but removing its scratch database `{}` failed; remove it with `dbctl delete {} --yes --skip-final-backup`",
                if drill.ok { "passed" } else { "failed" },
                scratch.name,
                scratch.name
            )
        })?;
    }
    record(&store, manifest, &drill)?;
    Ok(VerifyReport {
        database: opts.name.clone(),
        engine: scratch.engine,
        store: store_name,
        backup: manifest.id.clone(),
        scratch: scratch.name,
        drill,
    })
}

/// The scratch database: the source's settings under [`scratch_name`], on `target`,
/// without deletion protection and without WAL archiving (a drill archives nothing).
fn scratch_spec(repo: &Repo, source: &Spec, target: Option<&str>) -> Result<Spec> {
    let mut spec = source.clone();
    spec.name = scratch_name(&source.name);
    if let Some(target) = target {
        target.clone_into(&mut spec.target);
    }
    spec.deletion_protection = false;
    spec.backup = Some(BackupPolicy {
        store: None,
        retention: None,
        archive_wal: Some(false),
        schedule: None,
    });
    revalidate(repo, &spec)
}

/// Counts what the restored data holds and runs `--query`.
fn check(
    session: &Session,
    repo: &Repo,
    scratch: &Spec,
    opts: &VerifyOptions,
    drill: &mut Drill,
) -> Result<()> {
    let platform = session.platform(repo, scratch)?;
    let admin = platform.admin(scratch)?;
    drill.counts = counts(admin.as_ref(), scratch)?;
    if let Some(query) = &opts.query {
        let batch = format!("{}{query}\n", use_database(scratch));
        let (code, stderr, output) = run(admin.as_ref(), &batch)?;
        let mut kept = output.clone();
        kept.truncate(kept.floor_char_boundary(1000));
        drill.query_output = Some(kept);
        if code != 0 {
            bail!(
                "`--query` exited {code}: {}",
                stderr.lines().last().unwrap_or_default()
            );
        }
        if let Some(expect) = &opts.expect
            && last_line(&output) != expect.trim()
        {
            bail!(
                "`--query` printed `{}` last, not the `--expect`ed `{}`",
                last_line(&output),
                expect.trim()
            );
        }
    }
    Ok(())
}

/// The client's commands that put a batch in the spec's database (`database` is a
/// validated identifier, or a Redis database index).
fn use_database(spec: &Spec) -> String {
    match spec.engine {
        EngineKind::Postgresql => format!(
            "\\connect {}\n\\pset tuples_only on\n\\pset format unaligned\n",
            spec.database
        ),
        EngineKind::Mariadb => format!("USE `{}`;\n", spec.database),
        EngineKind::Redis => format!("SELECT {}\n", spec.database),
        EngineKind::Mongodb => String::new(),
    }
}

/// Rows per table (`schema.table`, exact `count(*)`), or keys per Redis database.
fn counts(admin: &dyn Admin, spec: &Spec) -> Result<BTreeMap<String, u64>> {
    let parse = |output: &str, separator: char| -> BTreeMap<String, u64> {
        output
            .lines()
            .filter_map(|line| {
                let (table, count) = line.trim_end().rsplit_once(separator)?;
                Some((table.to_owned(), count.trim().parse().ok()?))
            })
            .collect()
    };
    match spec.engine {
        EngineKind::Postgresql => {
            // One `count(*)` per ordinary table or partition, through `\gexec`.
            let batch = format!(
                "{}select format('select %L, count(*) from %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' order by 1 \\gexec\n",
                use_database(spec)
            );
            Ok(parse(&checked(admin, &batch, "counting rows")?, '|'))
        }
        EngineKind::Mariadb => {
            // The counting statement, made by the server (one `UNION ALL` of them)…
            let make = "SET SESSION group_concat_max_len = 16777216;\nSELECT GROUP_CONCAT(CONCAT('SELECT ', QUOTE(CONCAT(table_schema, '.', table_name)), ' AS t, COUNT(*) AS n FROM `', REPLACE(table_schema, '`', '``'), '`.`', REPLACE(table_name, '`', '``'), '`') SEPARATOR ' UNION ALL ') AS q FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys');\n";
            let made = checked(admin, make, "listing tables")?;
            let statement = made.lines().nth(1).unwrap_or("NULL").trim();
            if statement == "NULL" || statement.is_empty() {
                return Ok(BTreeMap::new());
            }
            // …then run.
            let output = checked(admin, &format!("{statement};\n"), "counting rows")?;
            Ok(parse(&output, '\t'))
        }
        EngineKind::Redis => {
            let output = checked(admin, "INFO keyspace\n", "counting keys")?;
            Ok(output
                .lines()
                .filter_map(|line| {
                    let (db, rest) = line.trim().split_once(':')?;
                    let keys = rest.split(',').next()?.strip_prefix("keys=")?;
                    Some((db.to_owned(), keys.parse().ok()?))
                })
                .collect())
        }
        EngineKind::Mongodb => Ok(BTreeMap::new()),
    }
}

/// Runs a batch as the administrator: exit code, standard error and output.
fn run(admin: &dyn Admin, batch: &str) -> Result<(i32, String, String)> {
    let mut out = Vec::new();
    let (code, stderr) = admin.run(
        &mut std::io::Cursor::new(batch.as_bytes().to_vec()),
        &mut out,
        Role::Admin,
    )?;
    Ok((code, stderr, String::from_utf8_lossy(&out).into_owned()))
}

/// [`run`], failing unless the client exits 0.
fn checked(admin: &dyn Admin, batch: &str, what: &str) -> Result<String> {
    let (code, stderr, output) = run(admin, batch)?;
    if code != 0 {
        bail!(
            "{what} in the restored data failed (exit {code}): {}",
            stderr.lines().last().unwrap_or_default()
        );
    }
    Ok(output)
}

fn last_line(output: &str) -> &str {
    output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
}

/// Appends `drill` to the backup's manifest in the store (read again first, so two
/// drills of one backup both land).
///
/// # Errors
/// The store fails, or the backup is gone.
fn record(store: &backup::Store, manifest: &Manifest, drill: &Drill) -> Result<()> {
    let path = format!("{}{}", manifest.dir(), backup::MANIFEST_OBJECT);
    let bytes = store.get(&path)?.with_context(|| {
        format!(
            "backup `{}` left store `{}` during the drill (expired?); the drill is not recorded",
            manifest.id, store.name
        )
    })?;
    let mut current: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest `{path}` in store `{}`", store.name))?;
    current.drills.push(drill.clone());
    store.put(&path, serde_json::to_vec_pretty(&current)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_name_is_a_valid_name_even_for_the_longest_names() {
        assert_eq!(scratch_name("orders"), "orders-drill");
        let long = format!("a{}", "b".repeat(62));
        let scratch = scratch_name(&long);
        assert!(crate::spec::check_name(&scratch).is_ok(), "{scratch}");
        assert!(scratch.ends_with("-drill"));
    }

    #[test]
    fn expect_compares_the_last_line_the_client_printed() {
        // MariaDB's batch mode prints a header first; redis-cli an `OK` for `SELECT`.
        assert_eq!(last_line("count(*)\n30\n\n"), "30");
        assert_eq!(last_line("OK\r\n1\r\n"), "1");
        assert_eq!(last_line(""), "");
    }
}
