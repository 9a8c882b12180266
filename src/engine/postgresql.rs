//! PostgreSQL from the distro's packages (Debian: `/usr/lib/postgresql/<major>/bin`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Engine, EngineError, Instance, Located, Probe, find_all, make_uri, run_checked};
use crate::catalog::EngineKind;
use crate::transport::{CommandSpec, Transport};

/// PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Postgresql;

const BINARIES: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

fn candidates(version: &str, name: &str) -> Vec<String> {
    vec![
        format!("/usr/lib/postgresql/{version}/bin/{name}"),
        format!("/usr/pgsql-{version}/bin/{name}"),
        name.to_owned(),
    ]
}

impl Postgresql {
    fn try_version(t: &dyn Transport, version: &str) -> Result<Located, EngineError> {
        Self::try_candidates(t, version, |name| candidates(version, name))
    }

    fn try_candidates(
        t: &dyn Transport,
        version: &str,
        candidates: impl Fn(&str) -> Vec<String>,
    ) -> Result<Located, EngineError> {
        let wanted: Vec<_> = BINARIES
            .iter()
            .map(|name| (*name, candidates(name)))
            .collect();
        let mut bin = find_all(
            t,
            EngineKind::Postgresql,
            version,
            &wanted,
            &format!("postgresql-{version}"),
        )?;
        // Backups need it (package postgresql-client); without it only backups fail.
        // Backups need pg_basebackup (package postgresql-client), restores of
        // incremental ones pg_combinebackup (17 and later); without them only those fail.
        for name in ["pg_basebackup", "pg_combinebackup"] {
            if let Some(path) = t.find_program(&candidates(name)) {
                bin.insert(name.into(), path.to_string_lossy().into_owned());
            }
        }
        // A binary found through PATH may be another major: ask it.
        let out = run_checked(
            t,
            EngineKind::Postgresql,
            &CommandSpec::new(&bin["postgres"], ["--version"]),
            "`postgres --version`",
        )?;
        // `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
        let full = out
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .map(super::full_version)
            .unwrap_or_default();
        let found = full.split('.').next().unwrap_or_default().to_owned();
        if found != version {
            return Err(EngineError::VersionMismatch {
                engine: EngineKind::Postgresql,
                wanted: version.to_owned(),
                installed: found,
                host: t.host().to_owned(),
            });
        }
        Ok(Located {
            version: version.to_owned(),
            full_version: full,
            bin,
        })
    }
}

/// One statement as the administrator (`psql -A -t -c`, within 10 s): its rows, one a
/// line, unaligned.
fn admin_sql(
    t: &dyn Transport,
    inst: &Instance,
    bin: &BTreeMap<String, String>,
    sql: &str,
) -> Result<String, EngineError> {
    let mut cmd = Postgresql.admin_command(t, inst, bin)?;
    cmd.args.retain(|a| a != "-f" && a != "-");
    cmd.args
        .extend(["-A".into(), "-t".into(), "-c".into(), sql.to_owned()]);
    run_checked(
        t,
        EngineKind::Postgresql,
        &cmd.timeout(Duration::from_secs(10)),
        "psql",
    )
}

impl Engine for Postgresql {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgresql
    }

    fn locate(
        &self,
        t: &dyn Transport,
        version: Option<&str>,
        known: &[String],
    ) -> Result<Located, EngineError> {
        if let Some(version) = version {
            return Self::try_version(t, version);
        }
        let mut first_err = None;
        for version in known.iter().rev() {
            match Self::try_version(t, version) {
                Ok(found) => return Ok(found),
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| EngineError::NotInstalled {
            engine: EngineKind::Postgresql,
            version: "any".into(),
            host: t.host().to_owned(),
            missing: "postgres".into(),
            looked: "/usr/lib/postgresql/*/bin".into(),
            package: "postgresql".into(),
        }))
    }

    fn locate_in(
        &self,
        t: &dyn Transport,
        version: &str,
        dir: &str,
    ) -> Result<Located, EngineError> {
        Self::try_candidates(t, version, |name| vec![format!("{dir}/{name}")])
    }

    fn backup_format(&self) -> &'static str {
        "tar"
    }

    fn backup_binaries(&self) -> &'static [(&'static str, &'static str)] {
        &[("pg_basebackup", "postgresql-client")]
    }

    fn admin_user(&self, _t: &dyn Transport) -> String {
        "postgres".into()
    }

    fn admin_command(
        &self,
        _t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<CommandSpec, EngineError> {
        Ok(CommandSpec::new(
            &bin["psql"],
            [
                "-X".to_owned(),
                "-q".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-h".into(),
                inst.run_dir.to_string_lossy().into_owned(),
                "-p".into(),
                inst.port.to_string(),
                "-U".into(),
                inst.admin_user.clone(),
                "-d".into(),
                "postgres".into(),
                "-f".into(),
                "-".into(),
            ],
        ))
    }

    fn owner_command(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
        _password: &secrecy::SecretString,
    ) -> Result<CommandSpec, EngineError> {
        let mut cmd = self.admin_command(t, inst, bin)?;
        // Connect to the application database and act as its owner from the start.
        if let Some(db) = cmd.args.iter().position(|a| a == "-d") {
            cmd.args[db + 1].clone_from(&inst.database);
        }
        Ok(cmd.secret_env(
            "PGOPTIONS",
            secrecy::SecretString::from(format!("-c role={}", inst.user)),
        ))
    }

    fn pending_restart(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, EngineError> {
        let out = admin_sql(
            t,
            inst,
            bin,
            "select name from pg_settings where pending_restart order by name",
        )?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn running_settings(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
        keys: &[&str],
    ) -> Result<BTreeMap<String, String>, EngineError> {
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        // Allowlisted names ([a-z_.]), safe inside literals; `current_setting` answers
        // as SHOW does (with the setting's unit).
        let names: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
        let out = admin_sql(
            t,
            inst,
            bin,
            &format!(
                "select n || '=' || current_setting(n) from unnest(array[{}]) as n",
                names.join(", ")
            ),
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    fn probe(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<Probe, EngineError> {
        // `database` is a validated identifier ([a-z0-9_]), safe inside a literal.
        let sql = format!(
            "select current_setting('server_version'), coalesce((select pg_database_size(datname) from pg_database where datname = '{}'), 0)",
            inst.database
        );
        let cmd = CommandSpec::new(
            &bin["psql"],
            [
                "-X".to_owned(),
                "-A".into(),
                "-t".into(),
                "-F".into(),
                "|".into(),
                "-h".into(),
                inst.run_dir.to_string_lossy().into_owned(),
                "-p".into(),
                inst.port.to_string(),
                "-U".into(),
                inst.admin_user.clone(),
                "-d".into(),
                "postgres".into(),
                "-c".into(),
                sql,
            ],
        )
        .timeout(Duration::from_secs(10));
        let out = run_checked(t, self.kind(), &cmd, "connecting with psql")?;
        let line = out.trim();
        let (version, size) = line.split_once('|').unwrap_or((line, ""));
        Ok(Probe {
            version: version
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned(),
            data_bytes: size.trim().parse().ok(),
        })
    }

    fn pid_file(&self, inst: &Instance) -> std::path::PathBuf {
        inst.data_dir.join("postmaster.pid")
    }

    fn server_program(&self) -> &'static str {
        "postgres"
    }

    fn uri(&self, user: &str, host: &str, port: u16, database: &str) -> url::Url {
        make_uri("postgresql", user, host, port, &format!("/{database}"))
    }
}
