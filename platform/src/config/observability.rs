//! The observability part of the configuration: database telemetry and service-level objectives.
//!
//! Tracing is configured by the standard `OTEL_*` variables, read by the OpenTelemetry SDK
//! itself (see [`crate::telemetry`]), so it has no fields here.

use std::time::Duration;

use super::{ConfigError, number};

/// Database telemetry and the objectives the SLO view measures against.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservabilityConfig {
    /// `DATABASE_SLOW_STATEMENT_MS` (default 200): statements slower than this are logged at
    /// WARN and counted in `db_slow_statements_total`.
    pub db_slow_statement: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_SECONDS` (default 30; 0 leaves the server's setting): the
    /// server cancels longer statements. The backup and restore commands and migrations are
    /// exempt.
    pub db_statement_timeout: Option<Duration>,
    /// The objectives.
    pub slo: SloConfig,
    /// `AUDIT_LARGE_ORDER_NOTIONAL` (whole cash units, default 1000000): orders, approvals and
    /// deposits worth this much score as large in the audit trail (docs/security.md), which
    /// makes them high risk.
    pub audit_large_order_notional: u64,
}

/// Service-level objectives (see `GET /api/v1/admin/slo` and the chart's recording rules).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloConfig {
    /// `SLO_AVAILABILITY_TARGET` (percent, default 99.9): the share of requests that must not
    /// fail with a 5xx.
    pub availability_target: f64,
    /// `SLO_LATENCY_THRESHOLD_MS` (default 200): a request is fast when served within this.
    pub latency_threshold: Duration,
    /// `SLO_LATENCY_TARGET` (percent, default 99): the share of requests that must be fast.
    pub latency_target: f64,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            availability_target: 99.9,
            latency_threshold: Duration::from_millis(200),
            latency_target: 99.0,
        }
    }
}

/// Parses a percentage objective strictly between 0 and 100 (100 leaves no error budget).
fn percent(value: Option<&str>, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 && p < 100.0 => Ok(p),
        _ => Err(ConfigError {
            var,
            reason: format!("{v:?} is not a percentage above 0 and below 100 (e.g. 99.9)"),
        }),
    }
}

impl ObservabilityConfig {
    /// Reads the variables through `get` (trimmed, empty as unset).
    pub(super) fn read<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<ObservabilityConfig, ConfigError> {
        let timeout = number(
            get("DATABASE_STATEMENT_TIMEOUT_SECONDS"),
            "DATABASE_STATEMENT_TIMEOUT_SECONDS",
            30,
            0,
            86_400,
        )?;
        let defaults = SloConfig::default();
        Ok(ObservabilityConfig {
            audit_large_order_notional: number(
                get("AUDIT_LARGE_ORDER_NOTIONAL"),
                "AUDIT_LARGE_ORDER_NOTIONAL",
                crate::audit::runtime::DEFAULT_LARGE_ORDER_NOTIONAL as u64,
                1,
                92_233_720_368,
            )?,
            db_slow_statement: Duration::from_millis(number(
                get("DATABASE_SLOW_STATEMENT_MS"),
                "DATABASE_SLOW_STATEMENT_MS",
                200,
                1,
                3_600_000,
            )?),
            db_statement_timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
            slo: SloConfig {
                availability_target: percent(
                    get("SLO_AVAILABILITY_TARGET"),
                    "SLO_AVAILABILITY_TARGET",
                    defaults.availability_target,
                )?,
                latency_threshold: Duration::from_millis(number(
                    get("SLO_LATENCY_THRESHOLD_MS"),
                    "SLO_LATENCY_THRESHOLD_MS",
                    200,
                    1,
                    600_000,
                )?),
                latency_target: percent(
                    get("SLO_LATENCY_TARGET"),
                    "SLO_LATENCY_TARGET",
                    defaults.latency_target,
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<ObservabilityConfig, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        ObservabilityConfig::read(|k| map.get(k).copied())
    }

    #[test]
    fn defaults_and_explicit_values() {
        let d = read(&[]).expect("defaults");
        assert_eq!(d.db_slow_statement, Duration::from_millis(200));
        assert_eq!(d.db_statement_timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.slo, SloConfig::default());
        assert_eq!(d.audit_large_order_notional, 1_000_000);
        let c = read(&[
            ("AUDIT_LARGE_ORDER_NOTIONAL", "250000"),
            ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "0"),
            ("DATABASE_SLOW_STATEMENT_MS", "50"),
            ("SLO_AVAILABILITY_TARGET", "99.95"),
            ("SLO_LATENCY_THRESHOLD_MS", "300"),
            ("SLO_LATENCY_TARGET", "95"),
        ])
        .expect("valid");
        assert_eq!(c.db_statement_timeout, None);
        assert_eq!(c.db_slow_statement, Duration::from_millis(50));
        assert_eq!(c.slo.availability_target, 99.95);
        assert_eq!(c.slo.latency_threshold, Duration::from_millis(300));
        assert_eq!(c.slo.latency_target, 95.0);
        assert_eq!(c.audit_large_order_notional, 250_000);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("AUDIT_LARGE_ORDER_NOTIONAL", "0"),
            ("AUDIT_LARGE_ORDER_NOTIONAL", "1.5"),
            ("SLO_AVAILABILITY_TARGET", "100"),
            ("SLO_AVAILABILITY_TARGET", "abc"),
            ("SLO_LATENCY_TARGET", "0"),
            ("SLO_LATENCY_THRESHOLD_MS", "0"),
            ("DATABASE_SLOW_STATEMENT_MS", "0"),
            ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "-1"),
        ] {
            assert_eq!(read(&[(var, value)]).expect_err(var).var, var);
        }
    }
}
