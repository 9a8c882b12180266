//! Redis from the distro's packages (`redis-server`, `redis-cli`), with ACL users: the
//! `default` user is disabled, `dbctl_admin` administers, the application user gets
//! every command but `@admin`.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;

use super::{
    Engine, EngineError, Instance, Located, Probe, find_all, make_uri, run_checked, version_series,
};
use crate::catalog::EngineKind;
use crate::transport::{CommandSpec, Transport};

/// Redis.
#[derive(Debug, Clone, Copy)]
pub struct Redis;

/// The ACL user dbctl administers Redis with.
pub const ADMIN_USER: &str = "dbctl_admin";

fn admin_secret(t: &dyn Transport, inst: &Instance) -> Result<SecretString, EngineError> {
    let secret_path = inst.conf_dir.join("admin.secret");
    t.read_file(&secret_path)?
        .map(|b| SecretString::from(String::from_utf8_lossy(&b).trim().to_owned()))
        .ok_or_else(|| EngineError::Command {
            engine: EngineKind::Redis,
            host: t.host().to_owned(),
            message: format!("admin secret `{}` is missing", secret_path.display()),
        })
}

fn client(
    t: &dyn Transport,
    inst: &Instance,
    bin: &BTreeMap<String, String>,
    extra: &[&str],
) -> Result<CommandSpec, EngineError> {
    let secret = admin_secret(t, inst)?;
    let mut args = vec![
        "-s".to_owned(),
        inst.run_dir
            .join("redis.sock")
            .to_string_lossy()
            .into_owned(),
        "--user".into(),
        ADMIN_USER.into(),
        "--no-auth-warning".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Ok(CommandSpec::new(&bin["redis-cli"], args).secret_env("REDISCLI_AUTH", secret))
}

impl Engine for Redis {
    fn kind(&self) -> EngineKind {
        EngineKind::Redis
    }

    fn locate(
        &self,
        t: &dyn Transport,
        version: Option<&str>,
        _known: &[String],
    ) -> Result<Located, EngineError> {
        let wanted = vec![
            (
                "redis-server",
                vec!["/usr/bin/redis-server".to_owned(), "redis-server".into()],
            ),
            (
                "redis-cli",
                vec!["/usr/bin/redis-cli".to_owned(), "redis-cli".into()],
            ),
        ];
        let bin = find_all(
            t,
            self.kind(),
            version.unwrap_or("any"),
            &wanted,
            "redis-server",
        )?;
        let (found, full_version) =
            version_series(t, self.kind(), &bin["redis-server"], version, |out| {
                out.split_whitespace()
                    .find_map(|w| w.strip_prefix("v="))
                    .map(str::to_owned)
            })?;
        Ok(Located {
            version: found,
            full_version,
            bin,
        })
    }

    fn backup_format(&self) -> &'static str {
        "rdb"
    }

    fn admin_user(&self, _t: &dyn Transport) -> String {
        ADMIN_USER.into()
    }

    fn needs_admin_secret(&self) -> bool {
        true
    }

    fn admin_command(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<CommandSpec, EngineError> {
        client(t, inst, bin, &[])
    }

    fn admin_env(
        &self,
        t: &dyn Transport,
        inst: &Instance,
    ) -> Result<Option<(String, SecretString)>, EngineError> {
        Ok(Some(("REDISCLI_AUTH".into(), admin_secret(t, inst)?)))
    }

    fn owner_command(
        &self,
        _t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
        password: &SecretString,
    ) -> Result<CommandSpec, EngineError> {
        use secrecy::ExposeSecret;
        Ok(CommandSpec::new(
            &bin["redis-cli"],
            [
                "-s".to_owned(),
                inst.run_dir
                    .join("redis.sock")
                    .to_string_lossy()
                    .into_owned(),
                "--user".into(),
                inst.user.clone(),
                "-n".into(),
                inst.database.clone(),
                "--no-auth-warning".into(),
            ],
        )
        .secret_env(
            "REDISCLI_AUTH",
            SecretString::from(password.expose_secret().to_owned()),
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
        let mut args = vec!["CONFIG", "GET"];
        args.extend_from_slice(keys);
        let cmd = client(t, inst, bin, &args)?.timeout(Duration::from_secs(10));
        let out = run_checked(t, self.kind(), &cmd, "redis-cli CONFIG GET")?;
        // Name and value on alternate lines.
        let lines: Vec<&str> = out.lines().collect();
        Ok(lines
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some(((*k).to_owned(), (*v).to_owned())),
                _ => None,
            })
            .collect())
    }

    fn probe(
        &self,
        t: &dyn Transport,
        inst: &Instance,
        bin: &BTreeMap<String, String>,
    ) -> Result<Probe, EngineError> {
        let cmd = client(t, inst, bin, &["INFO", "server"])?.timeout(Duration::from_secs(10));
        let out = run_checked(t, self.kind(), &cmd, "connecting with redis-cli")?;
        let version = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .ok_or_else(|| EngineError::Command {
                engine: self.kind(),
                host: t.host().to_owned(),
                message: format!("redis-cli INFO gave no version: {}", out.trim()),
            })?
            .to_owned();
        let memory = client(t, inst, bin, &["INFO", "memory"])?.timeout(Duration::from_secs(10));
        let out = run_checked(t, self.kind(), &memory, "redis-cli INFO memory")?;
        let data_bytes = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("used_memory_dataset:"))
            .and_then(|v| v.parse().ok());
        Ok(Probe {
            version,
            data_bytes,
        })
    }

    fn pid_file(&self, inst: &Instance) -> std::path::PathBuf {
        inst.run_dir.join("redis.pid")
    }

    fn server_program(&self) -> &'static str {
        "redis-server"
    }

    fn uri(&self, user: &str, host: &str, port: u16, database: &str) -> url::Url {
        make_uri("redis", user, host, port, &format!("/{database}"))
    }
}
