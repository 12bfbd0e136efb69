//! The server's configuration: addresses, database and limits, from four
//! layers with a fixed precedence, **flags > environment > file > defaults**.
//!
//! - Defaults: [`Config::default`] (REST `127.0.0.1:8080`, gRPC
//!   `127.0.0.1:50051`, `tcplab.db` in the working directory, [`Limits::default`]).
//! - File: TOML, from `--config FILE` or `TCPLAB_CONFIG`; without either,
//!   `tcplab.toml` in the working directory if there is one. Every key is
//!   optional; unknown keys are refused (a typo should not be silently
//!   ignored). A relative `db` is relative to the working directory, as on
//!   the command line. See `tcplab.example.toml`.
//! - Environment and flags: `TCPLAB_HTTP`, `--http`, ... (clap reads both, a
//!   flag winning over its variable); the binary hands what was set to
//!   [`resolve`] as [`Overrides`].
//!
//! `tcplab config print` prints the [`Config`] that results, as TOML that
//! is itself a valid config file.
//!
//! Access tokens are deliberately not part of the file: secrets stay in the
//! environment or on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::service::Limits;

/// The file looked for in the working directory when no `--config` is given.
pub const DEFAULT_FILE: &str = "tcplab.toml";

/// The effective configuration of `tcplab serve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// REST API and dashboard address.
    pub http: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// SQLite database file.
    pub db: PathBuf,
    /// Limits on sessions, hosts, connections, buffers, runs and bodies.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 50051)),
            db: PathBuf::from("tcplab.db"),
            limits: Limits::default(),
        }
    }
}

/// What flags and environment variables set (`None`: not set). Limits are
/// given by name, as [`Limits`]' fields (and the file's `[limits]` keys)
/// spell them, so a limit added to [`Limits`] needs no change here.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--http` / `TCPLAB_HTTP`.
    pub http: Option<SocketAddr>,
    /// `--grpc` / `TCPLAB_GRPC`.
    pub grpc: Option<SocketAddr>,
    /// `--db` / `TCPLAB_DB`, as given (a path or an SQLite URL, see [`database_path`]).
    pub db: Option<String>,
    /// Limit name to value, e.g. `("max_sessions", 10)`.
    pub limits: Vec<(&'static str, u64)>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a configuration (a message naming the key and line).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// `db` is neither a path nor an SQLite URL tcplab can use.
    #[error("db {given:?}: {message}")]
    Db {
        /// What was given.
        given: String,
        /// Why it cannot be used, and what would do.
        message: String,
    },
    /// A flag or environment variable names a limit that does not exist (a bug of the binary).
    #[error("unknown limit {0}")]
    UnknownLimit(String),
}

/// The file's shape: every key optional, nothing unknown.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    db: Option<String>,
    #[serde(default)]
    limits: toml::Table,
}

/// The database file named by `given`: a path (`data/tcplab.db`), or the
/// sqlx URL form people copy from sqlx's docs (`sqlite://data/tcplab.db`,
/// `sqlite:data/tcplab.db?mode=rwc`). tcplab always creates a missing file
/// (`mode=rwc`), so the only query it takes is that; anything it would
/// silently ignore (`mode=ro`, `:memory:`, another database) is refused.
///
/// # Errors
/// [`ConfigError::Db`], saying what would do instead.
pub fn database_path(given: &str) -> Result<PathBuf, ConfigError> {
    let refuse = |message: &str| ConfigError::Db { given: given.to_string(), message: message.to_string() };
    let scheme_is_sqlite = given.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite:"));
    let Some(rest) = scheme_is_sqlite.then(|| &given[7..]) else {
        if let Some((scheme, _)) = given.split_once("://") {
            return Err(refuse(&format!(
                "tcplab keeps its history in SQLite; a {scheme}:// database is not supported (give a file path or sqlite://PATH)"
            )));
        }
        if given.is_empty() {
            return Err(refuse("empty: give a file path, e.g. tcplab.db"));
        }
        if given == ":memory:" {
            return Err(refuse(
                "tcplab keeps every session's history in a file that outlives the server; give a file path",
            ));
        }
        return Ok(PathBuf::from(given));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair {
            "mode=rwc" => {}
            _ => {
                return Err(refuse(&format!(
                    "{pair}: tcplab opens its database read-write and creates it when missing; the only query it takes is mode=rwc"
                )));
            }
        }
    }
    if path.is_empty() || path == ":memory:" {
        return Err(refuse(
            "tcplab keeps every session's history in a file that outlives the server; give a file path, e.g. sqlite://tcplab.db",
        ));
    }
    Ok(PathBuf::from(path))
}

/// The config file to read: `explicit` (from `--config` or `TCPLAB_CONFIG`),
/// else `tcplab.toml` in `cwd` if it exists, else none.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let implicit = cwd.join(DEFAULT_FILE);
            implicit.is_file().then_some(implicit)
        }
    }
}

/// Reads `path` and [`resolve`]s it with `overrides`.
///
/// # Errors
/// An unreadable or invalid file.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let file = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
            Some((p, text))
        }
        None => None,
    };
    resolve(file.as_ref().map(|(p, t)| (*p, t.as_str())), overrides)
}

/// Layers defaults, the file's text (if any) and `overrides`.
///
/// # Errors
/// [`ConfigError::Parse`] naming the bad key; [`ConfigError::UnknownLimit`].
pub fn resolve(file: Option<(&Path, &str)>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    if let Some((path, text)) = file {
        let parse = |message: String| ConfigError::Parse { path: path.to_path_buf(), message };
        let parsed: FileConfig = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        config.http = parsed.http.unwrap_or(config.http);
        config.grpc = parsed.grpc.unwrap_or(config.grpc);
        if let Some(db) = parsed.db {
            config.db = database_path(&db)?;
        }
        let mut limits = limits_table(&config.limits);
        for (key, value) in parsed.limits {
            if !limits.contains_key(&key) {
                let known: Vec<&String> = limits.keys().collect();
                return Err(parse(format!("unknown key limits.{key} (known: {known:?})")));
            }
            // Each key on its own, so an error names it.
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            Limits::deserialize(toml::Value::Table(one)).map_err(|e| parse(format!("limits.{key}: {e}")))?;
            limits.insert(key, value);
        }
        config.limits = Limits::deserialize(toml::Value::Table(limits)).map_err(|e| parse(format!("limits: {e}")))?;
    }
    config.http = overrides.http.unwrap_or(config.http);
    config.grpc = overrides.grpc.unwrap_or(config.grpc);
    if let Some(db) = &overrides.db {
        config.db = database_path(db)?;
    }
    if !overrides.limits.is_empty() {
        let mut limits = limits_table(&config.limits);
        for (key, value) in &overrides.limits {
            if !limits.contains_key(*key) {
                return Err(ConfigError::UnknownLimit((*key).to_string()));
            }
            let value = i64::try_from(*value).map_err(|_| ConfigError::UnknownLimit(format!("{key} = {value}")))?;
            limits.insert((*key).to_string(), toml::Value::Integer(value));
        }
        config.limits = Limits::deserialize(toml::Value::Table(limits))
            .map_err(|e| ConfigError::UnknownLimit(format!("limits: {e}")))?;
    }
    Ok(config)
}

/// `limits` as a TOML table (every field, by name).
fn limits_table(limits: &Limits) -> toml::Table {
    match toml::Value::try_from(limits) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

impl Config {
    /// The configuration as TOML, with a header naming where it came from:
    /// what `tcplab config print` shows, and a valid config file itself.
    pub fn to_toml(&self, source: Option<&Path>) -> String {
        let from = source.map_or_else(|| "no config file".to_string(), |p| format!("config file {}", p.display()));
        let body = toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        format!("# tcplab's effective configuration (flags > environment > file > defaults); {from}\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
http = "127.0.0.1:1111"
grpc = "127.0.0.1:2222"

[limits]
max_sessions = 5
max_hosts = 7
"#;

    fn path() -> &'static Path {
        Path::new("test.toml")
    }

    #[test]
    fn defaults_alone() {
        let c = resolve(None, &Overrides::default()).expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.grpc.to_string(), "127.0.0.1:50051");
        assert_eq!(c.db, PathBuf::from("tcplab.db"));
    }

    #[test]
    fn flags_and_env_beat_the_file_which_beats_the_defaults() {
        let overrides = Overrides {
            grpc: Some("127.0.0.1:3333".parse().expect("addr")),
            db: Some("/data/x.db".into()),
            limits: vec![("max_hosts", 9)],
            ..Overrides::default()
        };
        let c = resolve(Some((path(), FILE)), &overrides).expect("config");
        assert_eq!(c.http.to_string(), "127.0.0.1:1111", "file over default");
        assert_eq!(c.grpc.to_string(), "127.0.0.1:3333", "override over file");
        assert_eq!(c.db, PathBuf::from("/data/x.db"), "override over default");
        assert_eq!(c.limits.max_sessions, 5, "file over default");
        assert_eq!(c.limits.max_hosts, 9, "override over file");
        assert_eq!(c.limits.run_max_ms, Limits::default().run_max_ms, "default kept");
    }

    #[test]
    fn db_takes_a_path_or_the_sqlx_url_forms_and_refuses_what_it_would_ignore() {
        let ok = |given: &str| database_path(given).unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(ok("data/x.db"), PathBuf::from("data/x.db"));
        assert_eq!(ok("sqlite://data/x.db"), PathBuf::from("data/x.db"));
        assert_eq!(ok("sqlite:///abs/x.db"), PathBuf::from("/abs/x.db"));
        assert_eq!(ok("sqlite:data/x.db?mode=rwc"), PathBuf::from("data/x.db"));
        let refused = |given: &str| database_path(given).expect_err(given).to_string();
        assert!(refused("sqlite:x.db?mode=ro").contains("mode=ro"), "{}", refused("sqlite:x.db?mode=ro"));
        assert!(refused("sqlite::memory:").contains("file"));
        assert!(refused("postgres://localhost/x").contains("postgres:// database is not supported"));
        assert!(refused("").contains("empty"));
        assert!(refused(":memory:").contains("file"));
        assert_eq!(ok("データ.db"), PathBuf::from("データ.db"));
        assert_eq!(ok("SQLite://data/x.db"), PathBuf::from("data/x.db"));
        // The file's `db` and the flag's are read the same way.
        let c = resolve(Some((path(), "db = \"sqlite://from/file.db\"")), &Overrides::default()).expect("config");
        assert_eq!(c.db, PathBuf::from("from/file.db"));
    }

    #[test]
    fn bad_files_name_the_key() {
        let err = |text: &str| resolve(Some((path(), text)), &Overrides::default()).expect_err("refused").to_string();
        assert!(err("htp = \"127.0.0.1:1\"").contains("htp"), "{}", err("htp = \"127.0.0.1:1\""));
        assert!(err("[limits]\nmax_sesions = 3").contains("limits.max_sesions"));
        assert!(err("[limits]\nmax_hosts = \"many\"").contains("limits.max_hosts"));
        assert!(err("http = \"not an address\"").contains("http"));
        assert!(err("http = ").contains("test.toml"));
    }

    #[test]
    fn printed_config_is_a_config_file_that_gives_itself_back() {
        let c = resolve(Some((path(), FILE)), &Overrides::default()).expect("config");
        let text = c.to_toml(Some(path()));
        assert!(text.starts_with("# tcplab's effective configuration"), "{text}");
        assert!(text.contains("[limits]"), "{text}");
        let again = resolve(Some((path(), &text)), &Overrides::default()).expect("the printed file parses");
        assert_eq!(again, c);
    }

    #[test]
    fn the_working_directory_file_is_used_only_without_an_explicit_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(locate(None, dir.path()), None);
        std::fs::write(dir.path().join(DEFAULT_FILE), "").expect("write");
        assert_eq!(locate(None, dir.path()), Some(dir.path().join(DEFAULT_FILE)));
        assert_eq!(locate(Some(Path::new("/etc/x.toml")), dir.path()), Some(PathBuf::from("/etc/x.toml")));
    }

    #[test]
    fn the_example_file_parses_and_documents_the_defaults() {
        let text = include_str!("../tcplab.example.toml");
        let c = resolve(Some((Path::new("tcplab.example.toml"), text)), &Overrides::default()).expect("example");
        assert_eq!(c, Config::default(), "the example shows every default");
        let printed: toml::Table = toml::from_str(&Config::default().to_toml(None)).expect("printed");
        let example: toml::Table = toml::from_str(text).expect("example");
        let keys = |t: &toml::Table| -> Vec<String> {
            let mut k: Vec<String> = t.keys().cloned().collect();
            if let Some(toml::Value::Table(l)) = t.get("limits") {
                k.extend(l.keys().map(|n| format!("limits.{n}")));
            }
            k.sort();
            k
        };
        assert_eq!(keys(&example), keys(&printed), "the example names every key");
    }

    #[test]
    fn overrides_must_name_real_limits() {
        let o = Overrides { limits: vec![("max_nothing", 1)], ..Overrides::default() };
        assert!(matches!(resolve(None, &o), Err(ConfigError::UnknownLimit(_))));
    }
}
