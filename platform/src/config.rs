//! Service configuration, read once from the environment at start-up.
//!
//! Every variable is validated here so that a typo fails the process at once with a message that
//! names the variable, instead of surfacing later as a confusing runtime error. The names are part
//! of the contract with the operator and the Helm chart; see `docs/configuration.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

mod archive;
mod observability;
pub use archive::ArchiveConfig;
pub use observability::{ObservabilityConfig, SloConfig};

/// Default SQLite file used when `DATABASE_URL` is not set, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tradeplane.db?mode=rwc";

/// Default `REDIS_KEY_PREFIX`.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tradeplane:";

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
    /// `MATCHER_DB_TIMEOUT_MS`: bound on each of the matcher's database calls (connecting, a
    /// batch's statements, its COMMIT); past it the matcher treats the database as unreachable.
    pub matcher_db_timeout: Duration,
    /// `ADVERTISE_ADDR`: `host:port` where other replicas reach this one to forward orders for
    /// the symbols it owns. Default: `$POD_IP` (or `$HOSTNAME`) with `LISTEN_ADDR`'s port when
    /// `LISTEN_ADDR` listens on every address, else `LISTEN_ADDR` itself.
    pub advertise_addr: String,
    /// `SYMBOL_LEASE_SECONDS`: how long a replica's lease on a symbol lasts without renewal —
    /// the bound on how long a killed replica's symbols stay without an owner.
    pub symbol_lease: Duration,
    /// `REDIS_URL`: optional; without it the in-process cache is used.
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX`: the start of every Redis key and channel name (rate limits, revoked
    /// sessions, the market-data channel), so that several platforms can share one Redis.
    pub redis_key_prefix: String,
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
    /// Instruments without their own `approvalNotional` get `APPROVAL_NOTIONAL_DEFAULT`.
    pub instruments: Vec<tradeplane_engine::instrument::Instrument>,
    /// `APPROVAL_TIMEOUT_SECONDS`: how long an order held for approval waits before it expires.
    pub approval_timeout: Duration,
    /// `APPROVAL_SWEEP_INTERVAL_SECONDS`: how often expired holds are released.
    pub approval_sweep_interval: Duration,
    /// `--demo`: seed demo traders and run a market maker (set by the command line).
    pub demo: bool,
    /// `ENABLE_DEBUG_ENDPOINTS`: serves `/debug/sleep` (tests only; never in production).
    pub enable_debug_endpoints: bool,
    /// Rate limits, overload protection, circuit breakers, caching and CORS.
    pub resilience: ResilienceConfig,
    /// `HEADER_READ_TIMEOUT_SECONDS`: a request head must be complete this long after its first
    /// byte, or the connection is closed.
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT_SECONDS`: a connection with no request in flight and no traffic for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// `MAX_HEADER_BYTES`: largest request head (request line and headers); larger is 431.
    pub max_header_bytes: usize,
    /// `MAX_CONNECTIONS`: open HTTP connections in total.
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`: open HTTP connections per peer address; below the total.
    pub max_connections_per_ip: usize,
    /// `PASSWORD_HASH_CONCURRENCY`: password hashes computed at once (each takes ~19 MiB).
    pub password_hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE`: requests that may wait for a hashing slot; more are shed (503).
    pub password_hash_queue: usize,
    /// WebSocket limits.
    pub ws: WsConfig,
    /// Database telemetry and service-level objectives.
    pub observability: ObservabilityConfig,
    /// `MFA_ENCRYPTION_KEY` (and `MFA_ENCRYPTION_KEYS_OLD`): the keys TOTP secrets are
    /// encrypted with; without it MFA is unavailable (503 `mfa_unavailable`).
    pub mfa_keys: Option<std::sync::Arc<crate::mfa::MfaKeyring>>,
    /// `REQUIRE_ADMIN_MFA`: admins without MFA may log in only to enrol.
    pub require_admin_mfa: bool,
    /// `ARCHIVE_*`: point-in-time archiving, when `ARCHIVE_DEST` is set.
    pub archive: Option<ArchiveConfig>,
}

/// The limits of the `/api/v1/ws` market-data stream.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// `WS_MAX_CONNECTIONS_PER_IP`: open WebSockets per client IP.
    pub max_connections_per_ip: usize,
    /// `WS_MAX_SUBSCRIPTIONS`: symbols one connection may be subscribed to.
    pub max_subscriptions: usize,
    /// `WS_MAX_MESSAGE_BYTES`: largest client message; larger closes with 1009.
    pub max_message_bytes: usize,
}

/// The knobs of [`crate::resilience`], grouped so that tests can tweak one without the rest.
///
/// Rates are requests per period with a burst: a client may send `burst` requests at once and
/// then one every `period / rate`.
#[derive(Debug, Clone)]
pub struct ResilienceConfig {
    /// `RATE_LIMIT_PER_SECOND`: sustained API requests per second per client IP and per account.
    pub rate_per_second: u32,
    /// `RATE_LIMIT_BURST`: requests a client may send at once on top of the sustained rate.
    pub rate_burst: u32,
    /// `LOGIN_RATE_LIMIT_PER_MINUTE`: login and registration attempts per minute per client IP,
    /// and login attempts per minute per username.
    pub login_per_minute: u32,
    /// `FAILED_LOGIN_LIMIT_PER_HOUR`: failed logins per account per hour before the account's
    /// logins are refused (`login_locked`) until the hour has refilled.
    pub failed_logins_per_hour: u32,
    /// `FORWARDED_FOR_HOPS`: 0 ignores `X-Forwarded-For` (the peer address is the client);
    /// N takes the N-th address from the right (N trusted proxies in front).
    pub forwarded_for_hops: usize,
    /// `MAX_CONCURRENT_REQUESTS`: API requests served at once; beyond it requests are shed with
    /// a fast 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// `CANCEL_RESERVED_REQUESTS`: extra concurrency only order cancels may use, so cancels are
    /// shed strictly after new orders.
    pub cancel_reserved_requests: usize,
    /// `REQUEST_BODY_TIMEOUT_SECONDS`: how long a client may take to send its request body.
    pub request_body_timeout: Duration,
    /// `BREAKER_FAILURE_THRESHOLD`: consecutive failures that open a dependency's breaker.
    pub breaker_failure_threshold: u32,
    /// `BREAKER_OPEN_SECONDS`: how long an open breaker fails fast before letting a probe through.
    pub breaker_open: Duration,
    /// `MARKET_CACHE_TTL_MS`: lifetime of a cached market-data read (both levels).
    pub market_cache_ttl: Duration,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed to call the API from a browser,
    /// or `*`; empty disables CORS (same-origin only).
    pub cors_allowed_origins: Vec<String>,
    /// `QUOTA_REQUESTS_PER_DAY`: authenticated API requests per account per UTC day; 0 is
    /// unlimited.
    pub quota_requests_per_day: u64,
    /// `QUOTA_ORDERS_PER_DAY`: order submissions per account per UTC day; 0 is unlimited.
    pub quota_orders_per_day: u64,
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

        let advertise_addr = match get("ADVERTISE_ADDR") {
            Some(v) => {
                let valid = v.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                        && host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
                });
                if !valid {
                    return Err(ConfigError {
                        var: "ADVERTISE_ADDR",
                        reason: format!("{v:?} is not host:port (e.g. 10.0.0.7:8080)"),
                    });
                }
                v.to_owned()
            }
            None if listen_addr.ip().is_unspecified() => {
                let host = get("POD_IP").or(get("HOSTNAME")).unwrap_or("127.0.0.1");
                format!("{host}:{}", listen_addr.port())
            }
            None => listen_addr.to_string(),
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

        let redis_key_prefix = get("REDIS_KEY_PREFIX")
            .unwrap_or(DEFAULT_REDIS_KEY_PREFIX)
            .to_owned();
        if !(1..=128).contains(&redis_key_prefix.len())
            || !redis_key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._/-".contains(&b))
        {
            return Err(ConfigError {
                var: "REDIS_KEY_PREFIX",
                reason: "must be 1 to 128 characters of letters, digits and : . _ / -".into(),
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

        let mut instruments = match get("INSTRUMENTS") {
            None => tradeplane_engine::instrument::default_instruments(),
            Some(json) => {
                tradeplane_engine::instrument::parse_instruments(json).map_err(|e| ConfigError {
                    var: "INSTRUMENTS",
                    reason: e.to_string(),
                })?
            }
        };
        if let Some(default) = approval_notional_default(get("APPROVAL_NOTIONAL_DEFAULT"))? {
            for i in instruments
                .iter_mut()
                .filter(|i| i.approval_notional.is_none())
            {
                i.approval_notional = Some(default);
            }
        }

        let rate_per_second = number(
            get("RATE_LIMIT_PER_SECOND"),
            "RATE_LIMIT_PER_SECOND",
            50,
            1,
            1_000_000,
        )? as u32;
        let cors_allowed_origins: Vec<String> = get("CORS_ALLOWED_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &cors_allowed_origins {
            let ok = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok());
            if !ok {
                return Err(ConfigError {
                    var: "CORS_ALLOWED_ORIGINS",
                    reason: format!(
                        "{origin:?} is not `*` or an origin such as https://app.example.com"
                    ),
                });
            }
        }
        if cors_allowed_origins.len() > 1 && cors_allowed_origins.iter().any(|o| o == "*") {
            return Err(ConfigError {
                var: "CORS_ALLOWED_ORIGINS",
                reason: "`*` cannot be combined with explicit origins".into(),
            });
        }
        let resilience = ResilienceConfig {
            rate_per_second,
            rate_burst: number(
                get("RATE_LIMIT_BURST"),
                "RATE_LIMIT_BURST",
                100,
                1,
                1_000_000,
            )? as u32,
            login_per_minute: number(
                get("LOGIN_RATE_LIMIT_PER_MINUTE"),
                "LOGIN_RATE_LIMIT_PER_MINUTE",
                10,
                1,
                100_000,
            )? as u32,
            failed_logins_per_hour: number(
                get("FAILED_LOGIN_LIMIT_PER_HOUR"),
                "FAILED_LOGIN_LIMIT_PER_HOUR",
                20,
                1,
                100_000,
            )? as u32,
            forwarded_for_hops: number(get("FORWARDED_FOR_HOPS"), "FORWARDED_FOR_HOPS", 0, 0, 10)?
                as usize,
            max_concurrent_requests: number(
                get("MAX_CONCURRENT_REQUESTS"),
                "MAX_CONCURRENT_REQUESTS",
                512,
                1,
                1_000_000,
            )? as usize,
            cancel_reserved_requests: number(
                get("CANCEL_RESERVED_REQUESTS"),
                "CANCEL_RESERVED_REQUESTS",
                64,
                0,
                1_000_000,
            )? as usize,
            request_body_timeout: secs("REQUEST_BODY_TIMEOUT_SECONDS", 10, 1, 3600)?,
            breaker_failure_threshold: number(
                get("BREAKER_FAILURE_THRESHOLD"),
                "BREAKER_FAILURE_THRESHOLD",
                5,
                1,
                1000,
            )? as u32,
            breaker_open: secs("BREAKER_OPEN_SECONDS", 5, 1, 3600)?,
            market_cache_ttl: Duration::from_millis(number(
                get("MARKET_CACHE_TTL_MS"),
                "MARKET_CACHE_TTL_MS",
                1000,
                0,
                3_600_000,
            )?),
            cors_allowed_origins,
            quota_requests_per_day: number(
                get("QUOTA_REQUESTS_PER_DAY"),
                "QUOTA_REQUESTS_PER_DAY",
                0,
                0,
                1_000_000_000,
            )?,
            quota_orders_per_day: number(
                get("QUOTA_ORDERS_PER_DAY"),
                "QUOTA_ORDERS_PER_DAY",
                0,
                0,
                1_000_000_000,
            )?,
        };

        let mfa_keys = match (get("MFA_ENCRYPTION_KEY"), get("MFA_ENCRYPTION_KEYS_OLD")) {
            (Some(current), old) => Some(std::sync::Arc::new(
                crate::mfa::MfaKeyring::parse(current, old)
                    .map_err(|(var, reason)| ConfigError { var, reason })?,
            )),
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "MFA_ENCRYPTION_KEYS_OLD",
                    reason: "old keys need a current MFA_ENCRYPTION_KEY".into(),
                });
            }
            (None, None) => None,
        };

        let max_connections = number(
            get("MAX_CONNECTIONS"),
            "MAX_CONNECTIONS",
            4096,
            2,
            1_000_000,
        )? as usize;
        let max_connections_per_ip = number(
            get("MAX_CONNECTIONS_PER_IP"),
            "MAX_CONNECTIONS_PER_IP",
            256,
            1,
            1_000_000,
        )? as usize;
        if max_connections_per_ip >= max_connections {
            return Err(ConfigError {
                var: "MAX_CONNECTIONS_PER_IP",
                reason: format!(
                    "{max_connections_per_ip} must be below MAX_CONNECTIONS ({max_connections}), so that one client cannot take every connection"
                ),
            });
        }
        // One hash per core, at most 4 (4 × 19 MiB): the container's CPU quota, not the node's
        // cores, is what `available_parallelism` reports under cgroups.
        let cores = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        let ws = WsConfig {
            max_connections_per_ip: number(
                get("WS_MAX_CONNECTIONS_PER_IP"),
                "WS_MAX_CONNECTIONS_PER_IP",
                32,
                1,
                1_000_000,
            )? as usize,
            max_subscriptions: number(
                get("WS_MAX_SUBSCRIPTIONS"),
                "WS_MAX_SUBSCRIPTIONS",
                50,
                1,
                10_000,
            )? as usize,
            max_message_bytes: number(
                get("WS_MAX_MESSAGE_BYTES"),
                "WS_MAX_MESSAGE_BYTES",
                4096,
                256,
                1024 * 1024,
            )? as usize,
        };

        let archive = ArchiveConfig::read(
            get,
            vars.iter().map(|(k, v)| (k.clone(), v.clone())),
            &database_url,
        )?;
        Ok(Config {
            archive,
            ws,
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECONDS", 10, 1, 300)?,
            idle_timeout: secs("IDLE_TIMEOUT_SECONDS", 60, 1, 3600)?,
            max_header_bytes: number(
                get("MAX_HEADER_BYTES"),
                "MAX_HEADER_BYTES",
                16 * 1024,
                1024,
                1024 * 1024,
            )? as usize,
            max_connections,
            max_connections_per_ip,
            password_hash_concurrency: number(
                get("PASSWORD_HASH_CONCURRENCY"),
                "PASSWORD_HASH_CONCURRENCY",
                cores as u64,
                1,
                1024,
            )? as usize,
            password_hash_queue: number(
                get("PASSWORD_HASH_QUEUE"),
                "PASSWORD_HASH_QUEUE",
                16,
                0,
                100_000,
            )? as usize,
            resilience,
            observability: ObservabilityConfig::read(get)?,
            demo: false,
            instruments,
            approval_timeout: secs("APPROVAL_TIMEOUT_SECONDS", 3600, 1, 30 * 86_400)?,
            approval_sweep_interval: secs("APPROVAL_SWEEP_INTERVAL_SECONDS", 10, 1, 3600)?,
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
            advertise_addr,
            symbol_lease: secs("SYMBOL_LEASE_SECONDS", 3, 1, 60)?,
            matcher_db_timeout: Duration::from_millis(number(
                get("MATCHER_DB_TIMEOUT_MS"),
                "MATCHER_DB_TIMEOUT_MS",
                2000,
                100,
                60_000,
            )?),
            redis_url,
            redis_key_prefix,
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
            mfa_keys,
            require_admin_mfa: boolean(get("REQUIRE_ADMIN_MFA"), "REQUIRE_ADMIN_MFA")?,
        })
    }
}

/// `APPROVAL_NOTIONAL_DEFAULT`: a non-negative decimal; unset or 0 means no approval.
fn approval_notional_default(
    value: Option<&str>,
) -> Result<Option<tradeplane_engine::num::Cash>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let cash: tradeplane_engine::num::Cash = v.parse().map_err(|_| ConfigError {
        var: "APPROVAL_NOTIONAL_DEFAULT",
        reason: format!("{v:?} is not a decimal amount such as 100000 or 2500.50"),
    })?;
    if cash.raw() < 0 {
        return Err(ConfigError {
            var: "APPROVAL_NOTIONAL_DEFAULT",
            reason: "must not be negative".into(),
        });
    }
    Ok(cash.is_positive().then_some(cash))
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
            ("REDIS_KEY_PREFIX", "has space:"),
            ("JWT_SECRET", "short"),
            ("LOG_FORMAT", "xml"),
            ("DRAIN_TIMEOUT_SECONDS", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("MAX_BODY_BYTES", "12"),
            ("ENABLE_DEBUG_ENDPOINTS", "maybe"),
            ("ADMIN_PASSWORD", "short"),
            ("INSTRUMENTS", "[{\"symbol\": 5}]"),
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("RATE_LIMIT_BURST", "many"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "0"),
            ("FAILED_LOGIN_LIMIT_PER_HOUR", "-3"),
            ("FORWARDED_FOR_HOPS", "99"),
            ("MAX_CONCURRENT_REQUESTS", "0"),
            ("CANCEL_RESERVED_REQUESTS", "x"),
            ("REQUEST_BODY_TIMEOUT_SECONDS", "0"),
            ("BREAKER_FAILURE_THRESHOLD", "0"),
            ("BREAKER_OPEN_SECONDS", "0"),
            ("MARKET_CACHE_TTL_MS", "soon"),
            ("CORS_ALLOWED_ORIGINS", "example.com"),
            ("CORS_ALLOWED_ORIGINS", "*,https://a.example"),
            ("HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("IDLE_TIMEOUT_SECONDS", "never"),
            ("MAX_HEADER_BYTES", "100"),
            ("MAX_CONNECTIONS", "1"),
            ("MAX_CONNECTIONS_PER_IP", "0"),
            ("MAX_CONNECTIONS_PER_IP", "4096"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("PASSWORD_HASH_QUEUE", "-1"),
            ("WS_MAX_CONNECTIONS_PER_IP", "0"),
            ("WS_MAX_SUBSCRIPTIONS", "0"),
            ("WS_MAX_MESSAGE_BYTES", "10"),
            ("MFA_ENCRYPTION_KEY", "not-32-bytes"),
            (
                "MFA_ENCRYPTION_KEYS_OLD",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("REQUIRE_ADMIN_MFA", "sometimes"),
            ("QUOTA_REQUESTS_PER_DAY", "-1"),
            ("QUOTA_ORDERS_PER_DAY", "lots"),
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
        assert_eq!(c.redis_key_prefix, DEFAULT_REDIS_KEY_PREFIX);
        assert!(!c.jwt_secret_generated);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn connection_limits_have_safe_defaults() {
        let c = Config::from_vars(vars(&[])).expect("defaults");
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_header_bytes, 16 * 1024);
        assert!(c.max_connections_per_ip < c.max_connections);
        assert!(c.password_hash_concurrency >= 1);
        let c = Config::from_vars(vars(&[
            ("MAX_CONNECTIONS", "10"),
            ("MAX_CONNECTIONS_PER_IP", "9"),
            ("PASSWORD_HASH_CONCURRENCY", "1"),
            ("PASSWORD_HASH_QUEUE", "0"),
            ("WS_MAX_SUBSCRIPTIONS", "3"),
        ]))
        .expect("valid");
        assert_eq!((c.max_connections, c.max_connections_per_ip), (10, 9));
        assert_eq!((c.password_hash_concurrency, c.password_hash_queue), (1, 0));
        assert_eq!(c.ws.max_subscriptions, 3);
    }

    #[test]
    fn resilience_defaults_follow_the_contract() {
        let r = Config::from_vars(vars(&[])).expect("defaults").resilience;
        assert_eq!(r.rate_per_second, 50);
        assert_eq!(r.rate_burst, 100);
        assert_eq!(r.login_per_minute, 10);
        assert_eq!(r.failed_logins_per_hour, 20);
        assert_eq!(r.forwarded_for_hops, 0);
        assert!(r.cors_allowed_origins.is_empty(), "CORS is off by default");
        assert!(
            r.cancel_reserved_requests > 0,
            "cancels have a reserve by default"
        );
    }

    #[test]
    fn resilience_values_are_read() {
        let r = Config::from_vars(vars(&[
            ("RATE_LIMIT_PER_SECOND", "7"),
            ("RATE_LIMIT_BURST", "9"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "3"),
            ("FAILED_LOGIN_LIMIT_PER_HOUR", "4"),
            ("MAX_CONCURRENT_REQUESTS", "2"),
            ("CANCEL_RESERVED_REQUESTS", "0"),
            ("MARKET_CACHE_TTL_MS", "0"),
            (
                "CORS_ALLOWED_ORIGINS",
                " https://a.example/ , http://localhost:3000",
            ),
        ]))
        .expect("valid")
        .resilience;
        assert_eq!((r.rate_per_second, r.rate_burst), (7, 9));
        assert_eq!((r.login_per_minute, r.failed_logins_per_hour), (3, 4));
        assert_eq!(
            (r.max_concurrent_requests, r.cancel_reserved_requests),
            (2, 0)
        );
        assert_eq!(r.market_cache_ttl, Duration::ZERO);
        assert_eq!(
            r.cors_allowed_origins,
            vec!["https://a.example", "http://localhost:3000"]
        );
    }

    #[test]
    fn approval_thresholds_default_and_per_instrument() {
        let c = Config::from_vars(vars(&[])).expect("defaults");
        assert!(c.instruments.iter().all(|i| i.approval_notional.is_none()));
        assert_eq!(c.approval_timeout, Duration::from_secs(3600));
        assert_eq!(c.approval_sweep_interval, Duration::from_secs(10));
        let json = r#"[{"symbol":"A","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"10",
            "maxNotional":"1000","approvalNotional":"50"},
            {"symbol":"B","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"10","maxNotional":"1000"},
            {"symbol":"C","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"10","maxNotional":"1000",
            "approvalNotional":"0"}]"#;
        let c = Config::from_vars(vars(&[
            ("INSTRUMENTS", json),
            ("APPROVAL_NOTIONAL_DEFAULT", "250.5"),
            ("APPROVAL_TIMEOUT_SECONDS", "60"),
            ("APPROVAL_SWEEP_INTERVAL_SECONDS", "2"),
        ]))
        .expect("valid");
        let limits: Vec<String> = c
            .instruments
            .iter()
            .map(|i| {
                i.approval_notional
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            limits,
            ["50", "250.5", "0"],
            "its own, the default, explicitly none"
        );
        assert_eq!(c.approval_timeout, Duration::from_secs(60));
        assert_eq!(c.approval_sweep_interval, Duration::from_secs(2));
        let c = Config::from_vars(vars(&[("APPROVAL_NOTIONAL_DEFAULT", "0")])).expect("valid");
        assert!(c.instruments.iter().all(|i| i.approval_notional.is_none()));
        for (var, bad) in [
            ("APPROVAL_NOTIONAL_DEFAULT", "-1"),
            ("APPROVAL_NOTIONAL_DEFAULT", "lots"),
            ("APPROVAL_TIMEOUT_SECONDS", "0"),
            ("APPROVAL_SWEEP_INTERVAL_SECONDS", "7200"),
        ] {
            let e = Config::from_vars(vars(&[(var, bad)])).expect_err(bad);
            assert_eq!(e.var, var);
        }
    }
}
