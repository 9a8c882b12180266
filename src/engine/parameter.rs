//! The engine settings a spec may set under `parameters`, per engine: names, value
//! types and ranges from each engine's documentation, and whether a change takes a
//! reload or a restart.
//!
//! Spec files are reviewed like data, so `parameters` is an allowlist: a setting that
//! runs programs, loads libraries or files, moves listening addresses, sockets, data or
//! log paths, changes authentication, or logs statement text is refused with the reason
//! ([`refusal`]); an unknown name is refused with the closest allowed one. Values are
//! parsed by type and written back in one canonical form ([`validate`]), so no quote,
//! backslash, newline or unit typo reaches a configuration file.
//!
//! Sources: PostgreSQL 15 "Server Configuration" (chapter 20, `pg_settings.context`:
//! `sighup`/`user` reload, `postmaster` restart); MariaDB 10.11 "Server System
//! Variables" (dynamic ones reload via `SET GLOBAL`); Redis 7.0 `redis.conf` and
//! `CONFIG SET` (every setting listed here is runtime-changeable).

use crate::catalog::EngineKind;

/// How a changed setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Apply {
    /// A reload (PostgreSQL `pg_reload_conf()`, MariaDB `SET GLOBAL`, Redis `CONFIG SET`).
    Reload,
    /// Only a server restart.
    Restart,
}

/// The value type of a setting; ranges are inclusive.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// On or off.
    Bool,
    /// A whole number.
    Int(i64, i64),
    /// A decimal number.
    Real(f64, f64),
    /// A size in kB (PostgreSQL needs a unit: `kB`, `MB`, `GB`, `TB`; MariaDB and Redis
    /// take bytes or a `K`/`M`/`G` suffix).
    Memory(u64, u64),
    /// A duration in the setting's base unit (PostgreSQL: a number with `us`, `ms`, `s`,
    /// `min`, `h` or `d`, or a bare number of base units).
    Duration(Unit, i64, i64),
    /// One of these words (compared case-insensitively, written as listed).
    Enum(&'static [&'static str]),
    /// Redis `save`: pairs of seconds and changes (`"3600 1 300 100"`), or `""`.
    SavePoints,
}

/// The base unit of a [`Kind::Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// One allowed setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name as the engine spells it (MariaDB: with `_`).
    pub name: &'static str,
    /// Its value type and range.
    pub kind: Kind,
    /// How a change takes effect.
    pub apply: Apply,
}

const fn s(name: &'static str, kind: Kind, apply: Apply) -> Setting {
    Setting { name, kind, apply }
}

const KB: u64 = 1;
const MB: u64 = 1024;
const GB: u64 = 1024 * 1024;
const TB: u64 = 1024 * 1024 * 1024;
const DAY_S: i64 = 86_400;
const DAY_MS: i64 = 86_400_000;
const INT_MAX: i64 = 2_147_483_647;

use Apply::{Reload, Restart};
use Kind::{Bool, Duration, Enum, Int, Memory, Real};

/// PostgreSQL settings a spec may set.
pub const POSTGRESQL: &[Setting] = &[
    s("max_connections", Int(10, 10_000), Restart),
    s("shared_buffers", Memory(128 * KB, TB), Restart),
    s("effective_cache_size", Memory(8 * KB, 16 * TB), Reload),
    s("work_mem", Memory(64 * KB, 2 * TB), Reload),
    s("maintenance_work_mem", Memory(MB, 2 * TB), Reload),
    s("autovacuum_work_mem", Memory(MB, 2 * TB), Reload),
    s("temp_buffers", Memory(800 * KB, TB), Reload),
    s("wal_buffers", Memory(32 * KB, 2 * GB), Restart),
    s("max_wal_size", Memory(2 * MB, 16 * TB), Reload),
    s("min_wal_size", Memory(2 * MB, 16 * TB), Reload),
    s("wal_keep_size", Memory(0, 16 * TB), Reload),
    s("checkpoint_timeout", Duration(Unit::S, 30, DAY_S), Reload),
    s("checkpoint_completion_target", Real(0.0, 1.0), Reload),
    s("random_page_cost", Real(0.0, 1_000_000.0), Reload),
    s("seq_page_cost", Real(0.0, 1_000_000.0), Reload),
    s("effective_io_concurrency", Int(0, 1000), Reload),
    s("default_statistics_target", Int(1, 10_000), Reload),
    s("statement_timeout", Duration(Unit::Ms, 0, INT_MAX), Reload),
    s("lock_timeout", Duration(Unit::Ms, 0, INT_MAX), Reload),
    s(
        "idle_in_transaction_session_timeout",
        Duration(Unit::Ms, 0, INT_MAX),
        Reload,
    ),
    s(
        "idle_session_timeout",
        Duration(Unit::Ms, 0, INT_MAX),
        Reload,
    ),
    s("deadlock_timeout", Duration(Unit::Ms, 1, INT_MAX), Reload),
    s("max_worker_processes", Int(0, 262_143), Restart),
    s("max_parallel_workers", Int(0, 1024), Reload),
    s("max_parallel_workers_per_gather", Int(0, 1024), Reload),
    s("max_parallel_maintenance_workers", Int(0, 1024), Reload),
    s("max_locks_per_transaction", Int(10, INT_MAX), Restart),
    s("max_prepared_transactions", Int(0, 262_143), Restart),
    s("max_wal_senders", Int(0, 262_143), Restart),
    s("hash_mem_multiplier", Real(1.0, 1000.0), Reload),
    s("autovacuum", Bool, Reload),
    s("autovacuum_max_workers", Int(1, 262_143), Restart),
    s(
        "autovacuum_naptime",
        Duration(Unit::S, 1, INT_MAX / 1000),
        Reload,
    ),
    s("autovacuum_vacuum_scale_factor", Real(0.0, 100.0), Reload),
    s("autovacuum_analyze_scale_factor", Real(0.0, 100.0), Reload),
    s("autovacuum_vacuum_cost_limit", Int(1, 10_000), Reload),
    s(
        "autovacuum_vacuum_cost_delay",
        Duration(Unit::Ms, 0, 100),
        Reload,
    ),
    s(
        "synchronous_commit",
        Enum(&["on", "off", "local", "remote_write", "remote_apply"]),
        Reload,
    ),
    s(
        "wal_level",
        Enum(&["replica", "logical", "minimal"]),
        Restart,
    ),
    s(
        "wal_compression",
        Enum(&["on", "off", "pglz", "lz4", "zstd"]),
        Reload,
    ),
    s("huge_pages", Enum(&["try", "on", "off"]), Restart),
    s("jit", Bool, Reload),
    s(
        "default_transaction_isolation",
        Enum(&["read committed", "repeatable read", "serializable"]),
        Reload,
    ),
    s("track_io_timing", Bool, Reload),
    s("track_activity_query_size", Int(100, 1_048_576), Restart),
    s("log_checkpoints", Bool, Reload),
    s("log_lock_waits", Bool, Reload),
    s("enable_partitionwise_join", Bool, Reload),
    s("enable_partitionwise_aggregate", Bool, Reload),
    s("tcp_keepalives_idle", Duration(Unit::S, 0, INT_MAX), Reload),
];

/// MariaDB settings a spec may set (names with `_`; `-` is accepted and normalised).
pub const MARIADB: &[Setting] = &[
    s("max_connections", Int(10, 100_000), Reload),
    s("innodb_buffer_pool_size", Memory(2 * MB, 64 * TB), Reload),
    s("innodb_log_file_size", Memory(MB, 512 * GB), Restart),
    s(
        "innodb_flush_log_at_trx_commit",
        Enum(&["0", "1", "2"]),
        Reload,
    ),
    s(
        "innodb_flush_method",
        Enum(&["fsync", "O_DSYNC", "O_DIRECT", "O_DIRECT_NO_FSYNC"]),
        Restart,
    ),
    s("innodb_io_capacity", Int(100, 10_000_000), Reload),
    s("innodb_file_per_table", Bool, Reload),
    s("innodb_lock_wait_timeout", Int(1, 1_073_741_824), Reload),
    s("max_allowed_packet", Memory(KB, GB), Reload),
    s("wait_timeout", Int(1, 31_536_000), Reload),
    s("interactive_timeout", Int(1, 31_536_000), Reload),
    s("tmp_table_size", Memory(KB, 16 * TB), Reload),
    s("max_heap_table_size", Memory(16 * KB, 16 * TB), Reload),
    s("sort_buffer_size", Memory(32 * KB, 4 * GB), Reload),
    s("join_buffer_size", Memory(KB, 4 * GB), Reload),
    s("read_buffer_size", Memory(8 * KB, 2 * GB), Reload),
    s("table_open_cache", Int(1, 1_048_576), Reload),
    s("table_definition_cache", Int(400, 2_097_152), Reload),
    s("thread_cache_size", Int(0, 16_384), Reload),
    s("max_connect_errors", Int(1, INT_MAX), Reload),
    s(
        "character_set_server",
        Enum(&["utf8mb4", "utf8mb3", "latin1", "ascii"]),
        Reload,
    ),
    s(
        "collation_server",
        Enum(&[
            "utf8mb4_unicode_ci",
            "utf8mb4_general_ci",
            "utf8mb4_bin",
            "utf8mb4_unicode_520_ci",
            "utf8mb3_general_ci",
            "latin1_swedish_ci",
        ]),
        Reload,
    ),
    s(
        "transaction_isolation",
        Enum(&[
            "READ-UNCOMMITTED",
            "READ-COMMITTED",
            "REPEATABLE-READ",
            "SERIALIZABLE",
        ]),
        // The `transaction-isolation` option; its system variable is `tx_isolation`
        // before 11.1, so dbctl restarts rather than `SET GLOBAL` a name 10.11 lacks.
        Restart,
    ),
    s("query_cache_type", Enum(&["OFF", "ON", "DEMAND"]), Reload),
    s("query_cache_size", Memory(0, 4 * GB), Reload),
];

/// Redis settings a spec may set.
pub const REDIS: &[Setting] = &[
    s("maxmemory", Memory(0, 16 * TB), Reload),
    s(
        "maxmemory-policy",
        Enum(&[
            "noeviction",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ]),
        Reload,
    ),
    s("timeout", Int(0, INT_MAX), Reload),
    s("tcp-keepalive", Int(0, INT_MAX), Reload),
    s("appendonly", Bool, Reload),
    s("appendfsync", Enum(&["always", "everysec", "no"]), Reload),
    s("save", Kind::SavePoints, Reload),
    s("hz", Int(1, 500), Reload),
    s("maxclients", Int(1, 1_000_000), Reload),
];

/// The settings of `engine` a spec may set.
pub fn settings(engine: EngineKind) -> &'static [Setting] {
    match engine {
        EngineKind::Postgresql => POSTGRESQL,
        EngineKind::Mariadb => MARIADB,
        EngineKind::Redis => REDIS,
        EngineKind::Mongodb => &[],
    }
}

/// The entries of `parameters` that `engine` changes at run time (what a reload sets).
pub fn reloadable(
    engine: EngineKind,
    parameters: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    parameters
        .iter()
        .filter(|(k, _)| setting(engine, k).is_some_and(|s| s.apply == Apply::Reload))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The name as `engine` spells it: MariaDB treats `-` and `_` alike.
pub fn canonical_name(engine: EngineKind, key: &str) -> String {
    match engine {
        EngineKind::Mariadb => key.replace('-', "_"),
        _ => key.to_owned(),
    }
}

/// The allowed setting `key` of `engine`, if any.
pub fn setting(engine: EngineKind, key: &str) -> Option<&'static Setting> {
    let key = canonical_name(engine, key);
    settings(engine).iter().find(|s| s.name == key)
}

/// Why a known setting of `engine` may not be set from a spec, if it is one of those.
pub fn refusal(engine: EngineKind, key: &str) -> Option<&'static str> {
    const RUNS: &str = "it makes the server run a program";
    const LOADS: &str = "it makes the server load code or files";
    const LISTENS: &str = "it changes where the server listens; the target's `listen` and the spec's `allowed_cidrs` govern that";
    const PATHS: &str = "it moves data, configuration or sockets, which dbctl manages";
    const AUTH: &str = "it changes authentication, which dbctl manages";
    const LOGS: &str =
        "it logs statement text or moves logs, which could put credentials in a log file";
    const SAFETY: &str = "it can corrupt data or bypass the server's safety checks";
    let key = canonical_name(engine, key);
    let key = key.as_str();
    let reason = match engine {
        EngineKind::Postgresql => match key {
            "archive_command"
            | "restore_command"
            | "archive_cleanup_command"
            | "recovery_end_command"
            | "ssl_passphrase_command"
            | "archive_library" => RUNS,
            "shared_preload_libraries"
            | "local_preload_libraries"
            | "session_preload_libraries"
            | "dynamic_library_path"
            | "jit_provider"
            | "include"
            | "include_dir"
            | "include_if_exists" => LOADS,
            "listen_addresses" | "port" => LISTENS,
            "unix_socket_directories"
            | "unix_socket_group"
            | "unix_socket_permissions"
            | "data_directory"
            | "config_file"
            | "hba_file"
            | "ident_file"
            | "external_pid_file"
            | "stats_temp_directory" => PATHS,
            "password_encryption"
            | "krb_server_keyfile"
            | "db_user_namespace"
            | "authentication_timeout"
            | "ssl"
            | "ssl_cert_file"
            | "ssl_key_file"
            | "ssl_ca_file"
            | "ssl_crl_file"
            | "ssl_crl_dir" => AUTH,
            "fsync"
            | "full_page_writes"
            | "zero_damaged_pages"
            | "ignore_system_indexes"
            | "allow_system_table_mods"
            | "data_sync_retry"
            | "ignore_checksum_failure"
            | "ignore_invalid_pages" => SAFETY,
            k if k.starts_with("log_")
                || k == "logging_collector"
                || k == "debug_print_parse"
                || k.starts_with("debug_")
                || k == "syslog_facility"
                || k == "event_source" =>
            {
                LOGS
            }
            _ => return None,
        },
        EngineKind::Mariadb => match key {
            "init_file" | "init_connect" | "init_slave" | "init_rpl_role" => RUNS,
            "plugin_load" | "plugin_load_add" | "plugin_dir" | "plugin_maturity"
            | "local_infile" | "secure_file_priv" | "secure_timestamp" => LOADS,
            "bind_address" | "port" | "skip_networking" | "extra_port" => LISTENS,
            "datadir"
            | "socket"
            | "pid_file"
            | "tmpdir"
            | "innodb_data_home_dir"
            | "innodb_log_group_home_dir"
            | "innodb_undo_directory"
            | "basedir"
            | "character_sets_dir"
            | "lc_messages_dir"
            | "user" => PATHS,
            "skip_grant_tables"
            | "old_passwords"
            | "default_authentication_plugin"
            | "secure_auth"
            | "ssl"
            | "ssl_cert"
            | "ssl_key"
            | "ssl_ca"
            | "disconnect_on_expired_password" => AUTH,
            "innodb_force_recovery"
            | "innodb_doublewrite"
            | "sync_frm"
            | "innodb_checksum_algorithm" => SAFETY,
            k if k.starts_with("log_")
                || k.starts_with("general_log")
                || k.starts_with("slow_query_log")
                || k.starts_with("binlog")
                || k == "sql_log_off"
                || k == "sql_log_bin"
                || k == "server_audit_logging"
                || k.starts_with("server_audit") =>
            {
                LOGS
            }
            _ => return None,
        },
        EngineKind::Redis => match key {
            "rename-command"
            | "enable-debug-command"
            | "enable-module-command"
            | "enable-protected-configs" => RUNS,
            "loadmodule" | "include" => LOADS,
            "bind" | "port" | "protected-mode" | "bind-source-addr" | "replicaof" | "slaveof" => {
                LISTENS
            }
            "dir" | "dbfilename" | "appendfilename" | "appenddirname" | "unixsocket"
            | "unixsocketperm" | "pidfile" | "daemonize" | "supervised" => PATHS,
            "requirepass" | "masterauth" | "masteruser" | "aclfile" | "acl-pubsub-default" => AUTH,
            k if k == "logfile"
                || k.starts_with("syslog")
                || k.starts_with("slowlog")
                || k.starts_with("latency") =>
            {
                LOGS
            }
            k if k.starts_with("tls-") => AUTH,
            _ => return None,
        },
        EngineKind::Mongodb => return None,
    };
    Some(reason)
}

/// Checks `key: value` for `engine` and returns the canonical name and value to write
/// into the server configuration.
///
/// # Errors
/// A message naming what is wrong and what is allowed: a refused setting with its
/// reason, an unknown name with the closest allowed one, or a value outside its type
/// or range.
pub fn validate(engine: EngineKind, key: &str, value: &str) -> Result<(String, String), String> {
    if let Some(reason) = refusal(engine, key) {
        return Err(format!(
            "`{}` may not be set from a spec: {reason}",
            key.escape_debug()
        ));
    }
    let Some(setting) = setting(engine, key) else {
        let allowed: Vec<&str> = settings(engine).iter().map(|s| s.name).collect();
        if allowed.is_empty() {
            return Err(format!("{engine} takes no `parameters` in this version"));
        }
        let closest = allowed
            .iter()
            .map(|name| (strsim::jaro_winkler(key, name), *name))
            .filter(|(score, _)| *score > 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| format!("; did you mean `{name}`?"))
            .unwrap_or_default();
        return Err(format!(
            "`{}` is not a {engine} setting dbctl allows{closest} allowed: {}",
            key.escape_debug(),
            allowed.join(", ")
        ));
    };
    let value = canonical_value(engine, setting, value.trim()).map_err(|wanted| {
        format!(
            "`{}` is not a valid value of `{}`: {wanted}",
            value.escape_debug(),
            setting.name
        )
    })?;
    Ok((setting.name.to_owned(), value))
}

fn canonical_value(engine: EngineKind, setting: &Setting, value: &str) -> Result<String, String> {
    let bool_words = |on: &str, off: &str| match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(on.to_owned()),
        "off" | "false" | "no" | "0" => Ok(off.to_owned()),
        _ => Err("allowed: on, off (or true/false, yes/no, 1/0)".to_owned()),
    };
    match setting.kind {
        Bool => match engine {
            EngineKind::Redis => bool_words("yes", "no"),
            EngineKind::Mariadb => bool_words("ON", "OFF"),
            _ => bool_words("on", "off"),
        },
        Int(min, max) => {
            let n: i64 = value
                .parse()
                .map_err(|_| format!("a whole number from {min} to {max}"))?;
            in_range(n, min, max).map(|n| n.to_string())
        }
        Real(min, max) => {
            let n: f64 = value
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| format!("a number from {min} to {max}"))?;
            if n < min || n > max {
                return Err(format!("a number from {min} to {max}"));
            }
            Ok(n.to_string())
        }
        Memory(min_kb, max_kb) => memory(engine, value, min_kb, max_kb),
        Duration(unit, min, max) => duration(value, unit, min, max),
        Enum(words) => words
            .iter()
            .find(|w| w.eq_ignore_ascii_case(value))
            .map(|w| (*w).to_owned())
            .ok_or_else(|| format!("allowed: {}", words.join(", "))),
        Kind::SavePoints => {
            let numbers: Vec<&str> = value.split_whitespace().collect();
            let ok =
                numbers.len().is_multiple_of(2) && numbers.iter().all(|n| n.parse::<u32>().is_ok());
            if ok {
                Ok(numbers.join(" "))
            } else {
                Err(
                    "pairs of whole numbers, seconds then changes (`3600 1 300 100`), or empty"
                        .into(),
                )
            }
        }
    }
}

fn in_range(n: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("a whole number from {min} to {max}"))
    }
}

/// Splits `128MB` into (128, "MB").
fn number_and_unit(value: &str) -> Option<(u64, &str)> {
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number = value[..digits].parse().ok()?;
    Some((number, value[digits..].trim()))
}

fn memory(engine: EngineKind, value: &str, min_kb: u64, max_kb: u64) -> Result<String, String> {
    memory_kb(engine, value, min_kb, max_kb).map(|(text, _)| text)
}

/// [`memory`] with the size in kB.
fn memory_kb(
    engine: EngineKind,
    value: &str,
    min_kb: u64,
    max_kb: u64,
) -> Result<(String, u64), String> {
    let (units, wanted): (&[(&str, u64, &str)], &str) = match engine {
        // PostgreSQL's units are case-sensitive; a bare number means the setting's own
        // unit (8 kB pages for some), so a unit is required.
        EngineKind::Postgresql => (
            &[
                ("kb", 1, "kB"),
                ("mb", MB, "MB"),
                ("gb", GB, "GB"),
                ("tb", TB, "TB"),
            ],
            "a whole number with a unit: kB, MB, GB or TB (`256MB`)",
        ),
        EngineKind::Mariadb => (
            &[
                ("", 0, ""),
                ("k", 1, "K"),
                ("m", MB, "M"),
                ("g", GB, "G"),
                ("t", TB, "T"),
            ],
            "bytes, or a whole number with K, M, G or T (`256M`)",
        ),
        _ => (
            &[
                ("", 0, ""),
                ("kb", 1, "kb"),
                ("mb", MB, "mb"),
                ("gb", GB, "gb"),
            ],
            "bytes, or a whole number with kb, mb or gb (`256mb`)",
        ),
    };
    let (number, unit) = number_and_unit(value).ok_or_else(|| wanted.to_owned())?;
    let lower = unit.to_ascii_lowercase();
    let (_, factor, spelled) = units
        .iter()
        .find(|(u, _, _)| *u == lower)
        .ok_or_else(|| wanted.to_owned())?;
    // Factor 0 means bytes.
    let kb = if *factor == 0 {
        number / 1024
    } else {
        number
            .checked_mul(*factor)
            .ok_or_else(|| wanted.to_owned())?
    };
    if kb < min_kb || kb > max_kb {
        return Err(format!(
            "{wanted}, from {} to {}",
            human_kb(min_kb),
            human_kb(max_kb)
        ));
    }
    Ok((format!("{number}{spelled}"), kb))
}

fn human_kb(kb: u64) -> String {
    for (factor, unit) in [(TB, "TB"), (GB, "GB"), (MB, "MB")] {
        if kb >= factor && kb.is_multiple_of(factor) {
            return format!("{} {unit}", kb / factor);
        }
    }
    format!("{kb} kB")
}

fn duration(value: &str, unit: Unit, min: i64, max: i64) -> Result<String, String> {
    duration_base(value, unit, min, max).map(|(text, _)| text)
}

/// [`duration`] with the value in the setting's base unit.
fn duration_base(value: &str, unit: Unit, min: i64, max: i64) -> Result<(String, i64), String> {
    let base = if unit == Unit::Ms { "ms" } else { "s" };
    let wanted = format!(
        "a whole number of {base}, or with a unit: us, ms, s, min, h, d; from {min} to {max} {base}"
    );
    let (number, suffix) = number_and_unit(value).ok_or_else(|| wanted.clone())?;
    let per_unit_ms: Option<i64> = match suffix {
        "" => None,
        "us" => Some(0),
        "ms" => Some(1),
        "s" => Some(1000),
        "min" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(DAY_MS),
        _ => return Err(wanted),
    };
    let number = i64::try_from(number).map_err(|_| wanted.clone())?;
    let in_base = match (per_unit_ms, unit) {
        (None, _) => number,
        (Some(0), Unit::Ms) => number / 1000,
        (Some(0), Unit::S) => number / 1_000_000,
        (Some(ms), Unit::Ms) => number.checked_mul(ms).ok_or_else(|| wanted.clone())?,
        (Some(ms), Unit::S) => number.checked_mul(ms).ok_or_else(|| wanted.clone())? / 1000,
    };
    if in_base < min || in_base > max {
        return Err(wanted);
    }
    Ok((format!("{number}{suffix}"), in_base))
}

/// Whether `running` (as the server reports a setting: `SHOW`, `@@GLOBAL`, `CONFIG
/// GET`) is the value `wanted` (a spec's canonical value): sizes and durations compare
/// by quantity (`262144kB` is `256MB`; MariaDB and Redis report bytes), numbers by
/// value, words as [`validate`] writes them. A value that does not parse is not the
/// same.
pub fn same_value(engine: EngineKind, key: &str, running: &str, wanted: &str) -> bool {
    let Some(setting) = setting(engine, key) else {
        return running == wanted;
    };
    let (running, wanted) = (running.trim(), wanted.trim());
    match setting.kind {
        Memory(..) => {
            let kb = |v| memory_kb(engine, v, 0, u64::MAX).map(|(_, kb)| kb);
            matches!((kb(running), kb(wanted)), (Ok(a), Ok(b)) if a == b)
        }
        Duration(unit, ..) => {
            let base = |v| duration_base(v, unit, i64::MIN, i64::MAX).map(|(_, n)| n);
            matches!((base(running), base(wanted)), (Ok(a), Ok(b)) if a == b)
        }
        Real(..) => matches!(
            (running.parse::<f64>(), wanted.parse::<f64>()),
            (Ok(a), Ok(b)) if (a - b).abs() < 1e-9
        ),
        _ => matches!(
            (
                canonical_value(engine, setting, running),
                canonical_value(engine, setting, wanted)
            ),
            (Ok(a), Ok(b)) if a == b
        ),
    }
}

#[cfg(test)]
mod drift_tests {
    use super::*;

    #[test]
    fn running_values_compare_by_quantity_not_spelling() {
        let pg = EngineKind::Postgresql;
        assert!(same_value(pg, "work_mem", "64MB", "65536kB"));
        assert!(!same_value(pg, "work_mem", "8MB", "64MB"));
        assert!(same_value(pg, "max_connections", "150", "150"));
        assert!(same_value(pg, "statement_timeout", "1min", "60s"));
        let maria = EngineKind::Mariadb;
        assert!(same_value(
            maria,
            "innodb_buffer_pool_size",
            "268435456",
            "256M"
        ));
        assert!(same_value(maria, "innodb_file_per_table", "1", "ON"));
        let redis = EngineKind::Redis;
        assert!(same_value(
            redis,
            "maxmemory-policy",
            "allkeys-lru",
            "allkeys-lru"
        ));
        assert!(!same_value(
            redis,
            "maxmemory-policy",
            "noeviction",
            "allkeys-lru"
        ));
        assert!(same_value(redis, "maxmemory", "104857600", "100mb"));
        assert!(!same_value(redis, "maxmemory", "garbage", "100mb"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_settings_are_refused_with_a_reason() {
        for (engine, key) in [
            (EngineKind::Postgresql, "archive_command"),
            (EngineKind::Postgresql, "shared_preload_libraries"),
            (EngineKind::Postgresql, "listen_addresses"),
            (EngineKind::Postgresql, "log_statement"),
            (EngineKind::Postgresql, "hba_file"),
            (EngineKind::Mariadb, "init-file"),
            (EngineKind::Mariadb, "general_log"),
            (EngineKind::Mariadb, "plugin_load_add"),
            (EngineKind::Redis, "dir"),
            (EngineKind::Redis, "rename-command"),
            (EngineKind::Redis, "requirepass"),
        ] {
            let err = validate(engine, key, "x").unwrap_err();
            assert!(
                err.contains("may not be set from a spec"),
                "{engine} {key}: {err}"
            );
        }
    }

    #[test]
    fn values_are_typed_and_written_canonically() {
        let pg = EngineKind::Postgresql;
        assert_eq!(validate(pg, "work_mem", "64mb").unwrap().1, "64MB");
        assert_eq!(validate(pg, "max_connections", "200").unwrap().1, "200");
        assert_eq!(validate(pg, "statement_timeout", "30s").unwrap().1, "30s");
        assert_eq!(validate(pg, "jit", "OFF").unwrap().1, "off");
        for bad in ["64", "64M B", "64MB\\", "1e3MB", "64 MiB", "-1MB", "64MB'"] {
            assert!(validate(pg, "work_mem", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate(pg, "max_connections", "5").is_err());
        assert!(validate(pg, "checkpoint_completion_target", "NaN").is_err());
        let my = EngineKind::Mariadb;
        assert_eq!(
            validate(my, "innodb-buffer-pool-size", "256m").unwrap(),
            ("innodb_buffer_pool_size".into(), "256M".into())
        );
        let redis = EngineKind::Redis;
        assert_eq!(validate(redis, "appendonly", "on").unwrap().1, "yes");
        assert_eq!(
            validate(redis, "save", " 900 1  300 10").unwrap().1,
            "900 1 300 10"
        );
        assert!(validate(redis, "save", "900").is_err());
    }

    #[test]
    fn an_unknown_name_suggests_the_closest() {
        let err = validate(EngineKind::Postgresql, "max_conections", "100").unwrap_err();
        assert!(err.contains("did you mean `max_connections`"), "{err}");
    }
}
