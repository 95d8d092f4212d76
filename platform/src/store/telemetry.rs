//! Database statement telemetry: `db_queries_total{operation,outcome}`,
//! `db_query_duration_seconds{operation}`, `db_slow_statements_total{operation}` and the
//! slow-statement WARN log.
//!
//! Every store call is observed under an [`Op`], one of a small fixed set of names (never the SQL
//! text, which would be unbounded label cardinality and could carry literals). One observation
//! covers one statement, or one short transaction of a store call (a user creation and its audit
//! record); the matcher's batch observes each of its statements.
//!
//! The counters are process-wide (a [`std::sync::OnceLock`]) rather than carried by [`Store`]:
//! the store is a plain enum over the two sqlx pools, cloned into every component and into the
//! matcher's own pools, and a statement is a statement whichever clone ran it. [`register`] adds
//! them to a [`prometheus::Registry`]; the slow-statement threshold is set once at start-up by
//! [`set_slow_threshold`] (`DATABASE_SLOW_STATEMENT_MS`).
//!
//! [`Store`]: super::Store

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

/// The operations a statement is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The health checker's `SELECT 1`.
    Ping,
    /// Reads of users, accounts, sessions and refresh tokens.
    UserRead,
    /// Writes of users, accounts, sessions and refresh tokens (with their audit records).
    UserWrite,
    /// Reading the audit log.
    AuditRead,
    /// Appending to the audit log.
    AuditWrite,
    /// Reads of orders, fills, trades, depth and symbol state for the API.
    MarketRead,
    /// Candle and window-statistics reads.
    CandlesRead,
    /// The demo market's bookkeeping.
    Demo,
    /// Symbol leases and the replica registry.
    Lease,
    /// Schema bookkeeping (applied migrations).
    Schema,
    /// The matcher batch's `BEGIN`.
    BatchBegin,
    /// The matcher batch's locking reads (symbols, accounts).
    BatchLock,
    /// The matcher batch's other reads (heads, positions, idempotency keys, ids, books).
    BatchRead,
    /// The matcher batch's writes.
    BatchWrite,
    /// The matcher batch's `COMMIT`.
    BatchCommit,
    /// Resolving a lost COMMIT reply and probing the database after an outage.
    BatchRecovery,
}

impl Op {
    /// Every operation, in label order.
    pub const ALL: [Op; 16] = [
        Op::Ping,
        Op::UserRead,
        Op::UserWrite,
        Op::AuditRead,
        Op::AuditWrite,
        Op::MarketRead,
        Op::CandlesRead,
        Op::Demo,
        Op::Lease,
        Op::Schema,
        Op::BatchBegin,
        Op::BatchLock,
        Op::BatchRead,
        Op::BatchWrite,
        Op::BatchCommit,
        Op::BatchRecovery,
    ];

    /// The `operation` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::UserRead => "user_read",
            Op::UserWrite => "user_write",
            Op::AuditRead => "audit_read",
            Op::AuditWrite => "audit_write",
            Op::MarketRead => "market_read",
            Op::CandlesRead => "candles_read",
            Op::Demo => "demo",
            Op::Lease => "lease",
            Op::Schema => "schema",
            Op::BatchBegin => "batch_begin",
            Op::BatchLock => "batch_lock",
            Op::BatchRead => "batch_read",
            Op::BatchWrite => "batch_write",
            Op::BatchCommit => "batch_commit",
            Op::BatchRecovery => "batch_recovery",
        }
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// How an observed statement ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// The server cancelled it at the statement timeout (or SQLite gave up waiting for a lock).
    Timeout,
    /// Any other failure, including an early return on an error.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Timeout, Outcome::Error];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// Whether `e` is a statement cancelled by the statement timeout: PostgreSQL's
/// `query_canceled` (57014, what `statement_timeout` raises), SQLite's `SQLITE_BUSY` after
/// `busy_timeout` (5, and its extended codes) or `SQLITE_INTERRUPT` (9).
pub fn is_timeout(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let Some(code) = db.code() else { return false };
    match code.as_ref() {
        "57014" => true,
        sqlite => sqlite
            .parse::<i32>()
            .is_ok_and(|c| c & 0xff == 5 || c & 0xff == 9),
    }
}

struct Telemetry {
    queries: IntCounterVec,
    duration: HistogramVec,
    slow: IntCounterVec,
    // Label handles resolved once: an observation costs no hash lookup.
    by_op: Vec<([IntCounter; 3], Histogram, IntCounter)>,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
static SLOW_MS: AtomicU64 = AtomicU64::new(DEFAULT_SLOW_MS);

/// Default of `DATABASE_SLOW_STATEMENT_MS`.
pub const DEFAULT_SLOW_MS: u64 = 200;

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn telemetry() -> &'static Telemetry {
    TELEMETRY.get_or_init(|| {
        // The names and labels are constants: creating these cannot fail.
        let queries = IntCounterVec::new(
            Opts::new(
                "db_queries_total",
                "Database statements by operation and outcome (ok, timeout, error).",
            ),
            &["operation", "outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "db_query_duration_seconds",
                "Database statement latency in seconds, by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid metric");
        let slow = IntCounterVec::new(
            Opts::new(
                "db_slow_statements_total",
                "Database statements slower than DATABASE_SLOW_STATEMENT_MS, by operation.",
            ),
            &["operation"],
        )
        .expect("valid metric");
        let by_op = Op::ALL
            .iter()
            .map(|op| {
                let name = op.as_str();
                (
                    Outcome::ALL.map(|o| queries.with_label_values(&[name, o.as_str()])),
                    duration.with_label_values(&[name]),
                    slow.with_label_values(&[name]),
                )
            })
            .collect();
        Telemetry {
            queries,
            duration,
            slow,
            by_op,
        }
    })
}

/// Adds the database metrics to `registry` (every operation's series exist from the start, at 0).
pub fn register(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    let t = telemetry();
    registry.register(Box::new(t.queries.clone()))?;
    registry.register(Box::new(t.duration.clone()))?;
    registry.register(Box::new(t.slow.clone()))?;
    Ok(())
}

/// Sets the slow-statement threshold (`DATABASE_SLOW_STATEMENT_MS`) for the whole process.
pub fn set_slow_threshold(threshold: Duration) {
    SLOW_MS.store(
        u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The statements of `op` counted so far with `outcome` (for tests and the SLO view).
pub fn count(op: Op, outcome: Outcome) -> u64 {
    let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
    telemetry().by_op[op.index()].0[i].get()
}

/// The slow statements of `op` counted so far.
pub fn slow_count(op: Op) -> u64 {
    telemetry().by_op[op.index()].2.get()
}

/// One statement being timed. Dropped without [`Observation::finish`] (an early `?` return or a
/// cancelled future) it counts as an error.
#[must_use]
pub struct Observation {
    op: Op,
    start: Instant,
    done: bool,
    // The statement's trace span, a child of the current one (disabled without tracing).
    span: tracing::Span,
}

impl Observation {
    /// Starts timing a statement of `op`.
    pub fn start(op: Op) -> Observation {
        let span = crate::telemetry::otel::span_if_enabled!(
            "db.statement",
            otel.name = op.as_str(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.operation.name = op.as_str(),
            db.outcome = tracing::field::Empty,
        );
        Observation {
            op,
            start: Instant::now(),
            done: false,
            span,
        }
    }

    /// Records the statement's result and hands it back.
    pub fn finish<R: Observed>(mut self, result: R) -> R {
        self.done = true;
        self.record(result.outcome());
        result
    }

    /// Records a statement that completed (its errors returned early through `?`, which the
    /// drop counts).
    pub fn succeed(mut self) {
        self.done = true;
        self.record(Outcome::Ok);
    }

    fn record(&self, outcome: Outcome) {
        let elapsed = self.start.elapsed();
        let (counters, histogram, slow) = &telemetry().by_op[self.op.index()];
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        counters[i].inc();
        histogram.observe(elapsed.as_secs_f64());
        self.span.record("db.outcome", outcome.as_str());
        if outcome != Outcome::Ok {
            self.span.record("otel.status_code", "ERROR");
        }
        let threshold = SLOW_MS.load(Ordering::Relaxed);
        if elapsed.as_millis() >= u128::from(threshold) {
            slow.inc();
            tracing::warn!(
                operation = self.op.as_str(),
                duration_ms = elapsed.as_millis() as u64,
                threshold_ms = threshold,
                outcome = outcome.as_str(),
                "slow database statement"
            );
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.done {
            self.record(Outcome::Error);
        }
    }
}

/// A store call's result, classified for the `outcome` label.
pub trait Observed {
    /// How the call ended.
    fn outcome(&self) -> Outcome;
}

impl<T> Observed for Result<T, sqlx::Error> {
    fn outcome(&self) -> Outcome {
        match self {
            Ok(_) => Outcome::Ok,
            Err(e) if is_timeout(e) => Outcome::Timeout,
            Err(_) => Outcome::Error,
        }
    }
}

impl<T> Observed for Result<T, super::matching::MatchError> {
    fn outcome(&self) -> Outcome {
        match self {
            Ok(_) => Outcome::Ok,
            Err(super::matching::MatchError::Db(e)) if is_timeout(e) => Outcome::Timeout,
            Err(_) => Outcome::Error,
        }
    }
}

impl<T> Observed for Result<T, super::DepositError> {
    fn outcome(&self) -> Outcome {
        match self {
            Ok(_) => Outcome::Ok,
            Err(super::DepositError::Db(e)) if is_timeout(e) => Outcome::Timeout,
            // Overflow and NotPositive are refusals the statement made, not failures of it.
            Err(super::DepositError::Db(_)) => Outcome::Error,
            Err(_) => Outcome::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_return_counts_as_an_error_and_a_result_by_its_kind() {
        let before_ok = count(Op::Demo, Outcome::Ok);
        let before_err = count(Op::Demo, Outcome::Error);
        let ok: Result<(), sqlx::Error> = Ok(());
        assert!(Observation::start(Op::Demo).finish(ok).is_ok());
        drop(Observation::start(Op::Demo));
        let err: Result<(), sqlx::Error> = Err(sqlx::Error::RowNotFound);
        assert!(Observation::start(Op::Demo).finish(err).is_err());
        assert!(count(Op::Demo, Outcome::Ok) > before_ok);
        assert!(count(Op::Demo, Outcome::Error) >= before_err + 2);
    }

    #[test]
    fn every_operation_has_a_distinct_label() {
        let mut names: Vec<_> = Op::ALL.iter().map(|o| o.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }
}
