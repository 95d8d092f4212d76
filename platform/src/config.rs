//! Service configuration, read once from the environment at start-up.
//!
//! Every variable is validated here so that a typo fails the process at once with a message that
//! names the variable, instead of surfacing later as a confusing runtime error. The names are part
//! of the contract with the operator and the Helm chart; see the README's configuration table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Default SQLite file used when `DATABASE_URL` is not set, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tradeplane.db?mode=rwc";

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// Log output format, from `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for terminals.
    Text,
}

/// The validated configuration of one platform process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`: where the API, health endpoints and `/metrics` are served.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`: `postgres://…` or `sqlite://…`.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: upper bound of the connection pool.
    pub database_max_connections: u32,
    /// `DATABASE_CONNECT_TIMEOUT_SECONDS`: how long acquiring a connection may take.
    pub database_connect_timeout: Duration,
    /// `REDIS_URL`: optional; without it the in-process cache is used.
    pub redis_url: Option<String>,
    /// `JWT_SECRET`: key for signing access tokens.
    pub jwt_secret: String,
    /// Whether `JWT_SECRET` was left unset and a random per-process secret is in use.
    pub jwt_secret_generated: bool,
    /// `LOG_FORMAT`: `json` or `text`.
    pub log_format: LogFormat,
    /// `DRAIN_TIMEOUT_SECONDS`: how long a graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// `REQUEST_TIMEOUT_SECONDS`: upper bound for one request.
    pub request_timeout: Duration,
    /// `MAX_BODY_BYTES`: largest accepted request body.
    pub max_body_bytes: usize,
    /// `HEALTH_CHECK_INTERVAL_SECONDS`: how often dependencies are checked in the background.
    pub health_check_interval: Duration,
    /// `READY_DB_FAILURE_SECONDS`: how long the database must fail before readiness drops.
    pub ready_db_failure_grace: Duration,
    /// `ADMIN_USERNAME` and `ADMIN_PASSWORD`: when the password is set, an admin with that name
    /// is created at start-up if it does not exist yet.
    pub admin: Option<(String, String)>,
    /// `INSTRUMENTS`: the tradable instruments (JSON array); built-in defaults when unset.
    pub instruments: Vec<tradeplane_engine::instrument::Instrument>,
    /// `--demo`: seed demo traders and run a market maker (set by the command line).
    pub demo: bool,
    /// `ENABLE_DEBUG_ENDPOINTS`: serves `/debug/sleep` (tests only; never in production).
    pub enable_debug_endpoints: bool,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the configuration from the given variables (the testable core of [`Config::from_env`]).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let listen_addr = match get("LISTEN_ADDR") {
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
            Some(v) => v.parse().map_err(|e| ConfigError {
                var: "LISTEN_ADDR",
                reason: format!("{v:?} is not a socket address such as 0.0.0.0:8080 ({e})"),
            })?,
        };

        let database_url = get("DATABASE_URL")
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(ConfigError {
                var: "DATABASE_URL",
                reason: "must start with postgres://, postgresql:// or sqlite:".into(),
            });
        }

        let redis_url = get("REDIS_URL").map(str::to_owned);
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError {
                var: "REDIS_URL",
                reason: "must start with redis:// or rediss://".into(),
            });
        }

        let (jwt_secret, jwt_secret_generated) = match get("JWT_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(ConfigError {
                    var: "JWT_SECRET",
                    reason: format!("must be at least 32 bytes long, got {}", s.len()),
                });
            }
            Some(s) => (s.to_owned(), false),
            None => (uuid::Uuid::new_v4().simple().to_string().repeat(2), true),
        };

        let log_format = match get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    reason: format!("{other:?} is neither \"json\" nor \"text\""),
                });
            }
        };

        let secs = |var: &'static str,
                    default: u64,
                    min: u64,
                    max: u64|
         -> Result<Duration, ConfigError> {
            number(get(var), var, default, min, max).map(Duration::from_secs)
        };

        let admin = match get("ADMIN_PASSWORD") {
            None => None,
            Some(p) if p.chars().count() < 12 => {
                return Err(ConfigError {
                    var: "ADMIN_PASSWORD",
                    reason: "must be at least 12 characters".into(),
                });
            }
            Some(p) => Some((
                get("ADMIN_USERNAME").unwrap_or("admin").to_owned(),
                p.to_owned(),
            )),
        };

        let instruments = match get("INSTRUMENTS") {
            None => tradeplane_engine::instrument::default_instruments(),
            Some(json) => {
                tradeplane_engine::instrument::parse_instruments(json).map_err(|e| ConfigError {
                    var: "INSTRUMENTS",
                    reason: e.to_string(),
                })?
            }
        };

        Ok(Config {
            demo: false,
            instruments,
            admin,
            listen_addr,
            database_url,
            database_max_connections: number(
                get("DATABASE_MAX_CONNECTIONS"),
                "DATABASE_MAX_CONNECTIONS",
                10,
                1,
                1000,
            )? as u32,
            database_connect_timeout: secs("DATABASE_CONNECT_TIMEOUT_SECONDS", 5, 1, 300)?,
            redis_url,
            jwt_secret,
            jwt_secret_generated,
            log_format,
            drain_timeout: secs("DRAIN_TIMEOUT_SECONDS", 20, 0, 3600)?,
            request_timeout: secs("REQUEST_TIMEOUT_SECONDS", 30, 1, 3600)?,
            max_body_bytes: number(
                get("MAX_BODY_BYTES"),
                "MAX_BODY_BYTES",
                64 * 1024,
                1024,
                64 * 1024 * 1024,
            )? as usize,
            health_check_interval: secs("HEALTH_CHECK_INTERVAL_SECONDS", 2, 1, 60)?,
            ready_db_failure_grace: secs("READY_DB_FAILURE_SECONDS", 30, 0, 3600)?,
            enable_debug_endpoints: boolean(
                get("ENABLE_DEBUG_ENDPOINTS"),
                "ENABLE_DEBUG_ENDPOINTS",
            )?,
        })
    }
}

/// Parses an optional whole number within `min..=max`, naming `var` on failure.
fn number(
    value: Option<&str>,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let n: u64 = v.parse().map_err(|_| ConfigError {
        var,
        reason: format!("{v:?} is not a whole number"),
    })?;
    if !(min..=max).contains(&n) {
        return Err(ConfigError {
            var,
            reason: format!("{n} is outside {min}..={max}"),
        });
    }
    Ok(n)
}

/// Parses an optional boolean (`true/false/1/0/yes/no`), naming `var` on failure.
fn boolean(value: Option<&str>, var: &'static str) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError {
            var,
            reason: format!("{other:?} is not a boolean (true/false)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_on_embedded_sqlite() {
        let c = Config::from_vars(vars(&[])).expect("defaults are valid");
        assert_eq!(c.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.redis_url.is_none());
        assert!(c.jwt_secret_generated);
        assert!(c.jwt_secret.len() >= 32);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.drain_timeout, Duration::from_secs(20));
        assert!(!c.enable_debug_endpoints);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("LISTEN_ADDR", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "127.0.0.1:6379"),
            ("JWT_SECRET", "short"),
            ("LOG_FORMAT", "xml"),
            ("DRAIN_TIMEOUT_SECONDS", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("MAX_BODY_BYTES", "12"),
            ("ENABLE_DEBUG_ENDPOINTS", "maybe"),
            ("ADMIN_PASSWORD", "short"),
            ("INSTRUMENTS", "[{\"symbol\": 5}]"),
        ];
        for (var, value) in cases {
            let err = Config::from_vars(vars(&[(var, value)])).expect_err(var);
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn explicit_values_are_used() {
        let c = Config::from_vars(vars(&[
            ("LISTEN_ADDR", "127.0.0.1:9000"),
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("LOG_FORMAT", "JSON"),
            ("DRAIN_TIMEOUT_SECONDS", "5"),
        ]))
        .expect("valid");
        assert_eq!(c.listen_addr.port(), 9000);
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert!(!c.jwt_secret_generated);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
    }
}
