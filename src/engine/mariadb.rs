//! MariaDB from the distro's packages (`mariadbd`, `mariadb-install-db`, `mariadb`).
//!
//! The administrator logs in over the Unix socket with `unix_socket` authentication, as
//! `mariadb-install-db` sets up: OS user `root` is MariaDB `root`; a non-root invoker
//! gets an account of its own name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    Engine, EngineError, Instance, Located, Probe, find_all, make_uri, run_checked, version_series,
};
use crate::catalog::EngineKind;
use crate::transport::{CommandSpec, Transport};

/// MariaDB.
#[derive(Debug, Clone, Copy)]
pub struct Mariadb;

fn socket(inst: &Instance) -> String {
    inst.run_dir
        .join("mysqld.sock")
        .to_string_lossy()
        .into_owned()
}

/// The administrator's client running one statement (`-e`), tab-separated rows
/// without a header, within 10 s.
fn admin_query(inst: &Instance, bin: &BTreeMap<String, String>, sql: String) -> CommandSpec {
    CommandSpec::new(
        &bin["mariadb"],
        [
            "--no-defaults".to_owned(),
            format!("--socket={}", socket(inst)),
            format!("--user={}", inst.admin_user),
            "--batch".into(),
            "--skip-column-names".into(),
            "-e".into(),
            sql,
        ],
    )
    .timeout(Duration::from_secs(10))
}

impl Engine for Mariadb {
    fn kind(&self) -> EngineKind {
        EngineKind::Mariadb
    }

    fn locate(
        &self,
        t: &dyn Transport,
        version: Option<&str>,
        _known: &[String],
    ) -> Result<Located, EngineError> {
        let wanted = vec![
            (
                "mariadbd",
                vec![
                    "/usr/sbin/mariadbd".to_owned(),
                    "mariadbd".into(),
                    "/usr/sbin/mysqld".into(),
                ],
            ),
            (
                "mariadb-install-db",
                vec![
                    "/usr/bin/mariadb-install-db".to_owned(),
                    "mariadb-install-db".into(),
                    "mysql_install_db".into(),
                ],
            ),
            (
                "mariadb",
                vec!["/usr/bin/mariadb".to_owned(), "mariadb".into()],
            ),
        ];
        let mut bin = find_all(
            t,
            self.kind(),
            version.unwrap_or("any"),
            &wanted,
            "mariadb-server",
        )?;
        // Backups need these (package mariadb-backup); without them only backups fail.
        for name in ["mariadb-backup", "mbstream"] {
            if let Some(path) = t.find_program(&[format!("/usr/bin/{name}"), name.to_owned()]) {
                bin.insert(name.to_owned(), path.to_string_lossy().into_owned());
            }
        }
        let (found, full_version) =
            version_series(t, self.kind(), &bin["mariadbd"], version, |out| {
                out.split_whitespace()
                    .skip_while(|w| *w != "Ver")
                    .nth(1)
                    .map(str::to_owned)
            })?;
        Ok(Located {
            version: found,
            full_version,
            bin,
        })
    }

    fn backup_format(&self) -> &'static str {
        "xbstream"
    }

    /// mariadb-backup logs `MySQL binlog position: filename '…', position '…', GTID of
    /// the last change '0-1-42'` when the server writes a binary log.
    fn backup_position(&self, log: &str) -> Option<String> {
        log.lines().rev().find_map(|line| {
            let rest = line.split("GTID of the last change '").nth(1)?;
            let gtid = rest.split('\'').next()?;
            (!gtid.is_empty()).then(|| gtid.to_owned())
        })
    }

    fn backup_checkpoint(&self, log: &str) -> Option<String> {
        log.lines().rev().find_map(|line| {
            let rest = line
                .split("The latest check point (for incremental): '")
                .nth(1)?;
            let lsn = rest.split('\'').next()?;
            (!lsn.is_empty() && lsn.bytes().all(|b| b.is_ascii_digit())).then(|| lsn.to_owned())
        })
    }

    fn backup_binaries(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("mariadb-backup", "mariadb-backup"),
            ("mbstream", "mariadb-backup"),
        ]
    }

    fn admin_user(&self, t: &dyn Transport) -> String {
        t.user().to_owned()
    }

    fn admin_command(
        &self,
        _t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<CommandSpec, EngineError> {
        Ok(CommandSpec::new(
            &bin["mariadb"],
            [
                "--no-defaults".to_owned(),
                format!("--socket={}", socket(inst)),
                format!("--user={}", inst.admin_user),
                "--batch".into(),
            ],
        ))
    }

    fn owner_command(
        &self,
        _t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
        password: &secrecy::SecretString,
    ) -> Result<CommandSpec, EngineError> {
        use secrecy::ExposeSecret;
        Ok(CommandSpec::new(
            &bin["mariadb"],
            [
                "--no-defaults".to_owned(),
                "--protocol=tcp".into(),
                "--host=127.0.0.1".into(),
                format!("--port={}", inst.port),
                format!("--user={}", inst.user),
                format!("--database={}", inst.database),
                "--batch".into(),
            ],
        )
        .secret_env(
            "MYSQL_PWD",
            secrecy::SecretString::from(password.expose_secret().to_owned()),
        ))
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
        // Allowlisted names ([a-z_]), safe as system variable names and in literals.
        let sql = keys
            .iter()
            .map(|k| format!("select '{k}', @@GLOBAL.{k}"))
            .collect::<Vec<_>>()
            .join(" union all ");
        let cmd = admin_query(inst, bin, sql);
        let out = run_checked(t, self.kind(), &cmd, "the mariadb client")?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
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
            "select version(), coalesce(sum(data_length + index_length), 0) from information_schema.tables where table_schema = '{}'",
            inst.database
        );
        let cmd = admin_query(inst, bin, sql);
        let out = run_checked(t, self.kind(), &cmd, "connecting with the mariadb client")?;
        let mut fields = out.trim().split('\t');
        let version = fields.next().unwrap_or_default();
        Ok(Probe {
            version: version.split('-').next().unwrap_or_default().to_owned(),
            data_bytes: fields.next().and_then(|s| s.trim().parse().ok()),
        })
    }

    fn pid_file(&self, inst: &Instance) -> std::path::PathBuf {
        inst.run_dir.join("mariadbd.pid")
    }

    fn server_program(&self) -> &'static str {
        "mariadbd"
    }

    fn uri(&self, user: &str, host: &str, port: u16, database: &str) -> url::Url {
        make_uri("mysql", user, host, port, &format!("/{database}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_position_is_the_gtid_mariadb_backup_logs() {
        let log = "[00] 2026-12-07 01:02:03 Backup created in directory '/x'\n\
                   [00] 2026-12-07 01:02:03 MySQL binlog position: filename 'binlog.000002', position '1234', GTID of the last change '0-1-42'\n\
                   [00] 2026-12-07 01:02:03 completed OK!\n";
        assert_eq!(Mariadb.backup_position(log).as_deref(), Some("0-1-42"));
        // No binary log, no position.
        assert_eq!(Mariadb.backup_position("[00] completed OK!\n"), None);
        assert_eq!(
            Mariadb.backup_position("GTID of the last change ''\n"),
            None
        );
    }
}
