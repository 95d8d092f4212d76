//! The process-wide parts of audit scoring: the large-order threshold and the high-risk counter.
//!
//! Like the database telemetry ([`crate::store::telemetry`]) they are process-wide rather than
//! carried by [`crate::store::Store`]: events are scored where their rows are built, in the
//! store, which is a plain enum over the sqlx pools cloned into every component and the
//! matcher. [`set_large_order_notional`] is called once at start-up
//! (`AUDIT_LARGE_ORDER_NOTIONAL`); [`register`] adds the counter to the `/metrics` registry.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{IntCounter, IntCounterVec, Opts};
use tradeplane_engine::num::{Cash, SCALE};

use super::{HIGH_RISK, KINDS};

/// Default of `AUDIT_LARGE_ORDER_NOTIONAL`: 1 000 000 in cash units.
pub const DEFAULT_LARGE_ORDER_NOTIONAL: i64 = 1_000_000;

static LARGE_RAW: AtomicI64 = AtomicI64::new(DEFAULT_LARGE_ORDER_NOTIONAL * SCALE);

/// Sets the value at which orders, approvals and deposits score as large, for the process.
pub fn set_large_order_notional(threshold: Cash) {
    let raw = i64::try_from(threshold.raw()).unwrap_or(i64::MAX);
    LARGE_RAW.store(raw, Ordering::Relaxed);
}

/// The current large-order threshold.
pub fn large_order_notional() -> Cash {
    Cash::from_raw(i128::from(LARGE_RAW.load(Ordering::Relaxed)))
}

/// The label of kinds missing from the table, so the series stay bounded.
const OTHER: &str = "other";

struct Counter {
    vec: IntCounterVec,
    // One handle per kind of the table, resolved once; the last is `other`.
    by_kind: Vec<IntCounter>,
}

static COUNTER: OnceLock<Counter> = OnceLock::new();

fn counter() -> &'static Counter {
    COUNTER.get_or_init(|| {
        // The name and label are constants: creating this cannot fail.
        let vec = IntCounterVec::new(
            Opts::new(
                "audit_high_risk_events_total",
                "Audit events recorded with a risk score of 70 or more, by action.",
            ),
            &["action"],
        )
        .expect("valid metric");
        let by_kind = KINDS
            .iter()
            .map(|r| r.kind)
            .chain([OTHER])
            .map(|k| vec.with_label_values(&[k]))
            .collect();
        Counter { vec, by_kind }
    })
}

/// Adds the counter to `registry` (a series per kind of the table exists from the start, at 0).
pub fn register(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(counter().vec.clone()))
}

/// Counts a recorded event if its score is high.
pub fn observe(action: &str, score: u8) {
    if score < HIGH_RISK {
        return;
    }
    let c = counter();
    let i = KINDS
        .iter()
        .position(|r| r.kind == action)
        .unwrap_or(KINDS.len());
    c.by_kind[i].inc();
}

/// The high-risk events of `action` counted so far (for tests).
pub fn high_risk_count(action: &str) -> u64 {
    let label = if KINDS.iter().any(|r| r.kind == action) {
        action
    } else {
        OTHER
    };
    counter().vec.with_label_values(&[label]).get()
}
