//! A circuit breaker: closed → open after consecutive failures → half-open after a cool-down →
//! closed again after a successful probe (or open again after a failed one).
//!
//! Written here rather than taken from a crate because it has to be fed from two places that no
//! generic wrapper sees: request outcomes (the [`DbOutcome`] marker an error response carries)
//! and the health checker's background pings, which close a breaker without any user traffic.
//! The state is exported as `circuit_breaker_state{dependency}` and in `/health`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast until the cool-down has passed.
    Open,
    /// The cool-down has passed: one probe call at a time goes through.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// What a request that went through the database breaker saw; inserted into the response's
/// extensions by [`crate::error::ApiError`] (failure) or by handlers that answered without the
/// database (untouched), read by the breaker middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOutcome {
    /// The database was unreachable or timed out.
    Failed,
    /// The answer did not touch the database (e.g. served from the cache): says nothing.
    Untouched,
}

/// Permission to make one call; report its outcome with [`Breaker::success`] or
/// [`Breaker::failure`]. Dropping it without a report frees a half-open probe slot.
#[derive(Debug)]
pub struct Permit {
    breaker: Breaker,
    probe: bool,
    reported: bool,
}

impl Permit {
    /// Reports that the call succeeded.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.success();
    }

    /// Reports that the call failed because of the dependency.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.failure();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.lock().probing = false;
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

/// A named circuit breaker; cheap to clone (clones share state).
#[derive(Debug, Clone)]
pub struct Breaker {
    name: &'static str,
    threshold: u32,
    open_for: Duration,
    inner: Arc<Mutex<Inner>>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures and stays open for
    /// `open_for` before letting a probe through.
    pub fn new(name: &'static str, threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            name,
            threshold: threshold.max(1),
            open_for,
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                probing: false,
            })),
        }
    }

    /// The dependency's name (`postgres`, `redis`), used as the metric label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-update of plain counters: the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an open breaker whose cool-down has passed reports half-open).
    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open
                if inner
                    .opened_at
                    .is_some_and(|t| t.elapsed() >= self.open_for) =>
            {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// Asks to make a call: `Some` when it may go ahead, `None` to fail fast.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut inner = self.lock();
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::Open => {
                if inner
                    .opened_at
                    .is_some_and(|t| t.elapsed() >= self.open_for)
                {
                    inner.state = BreakerState::HalfOpen;
                    tracing::info!(dependency = self.name, "circuit breaker half-open: probing");
                    inner.probing = true;
                    true
                } else {
                    return None;
                }
            }
            BreakerState::HalfOpen => {
                if inner.probing {
                    return None;
                }
                inner.probing = true;
                true
            }
        };
        Some(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    /// How long until an open breaker lets a probe through (zero when not open).
    pub fn retry_after(&self) -> Duration {
        let inner = self.lock();
        match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(t)) => self.open_for.saturating_sub(t.elapsed()),
            _ => Duration::ZERO,
        }
    }

    /// Records a success: closes the breaker from any state (a background health ping that
    /// succeeds is as good a probe as a request).
    pub fn success(&self) {
        let mut inner = self.lock();
        if inner.state != BreakerState::Closed {
            tracing::info!(
                dependency = self.name,
                "circuit breaker closed: dependency answers again"
            );
        }
        inner.state = BreakerState::Closed;
        inner.failures = 0;
        inner.opened_at = None;
        inner.probing = false;
    }

    /// Records a failure: opens the breaker after `threshold` consecutive failures, or at once
    /// when a half-open probe fails.
    pub fn failure(&self) {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        let open = match inner.state {
            BreakerState::Closed => inner.failures >= self.threshold,
            BreakerState::HalfOpen => true,
            // Already open: restart the cool-down only for a failed probe (handled above).
            BreakerState::Open => false,
        };
        if open {
            if inner.state != BreakerState::Open {
                tracing::warn!(
                    dependency = self.name,
                    failures = inner.failures,
                    open_for = ?self.open_for,
                    "circuit breaker open: failing fast"
                );
            }
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
        }
        inner.probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let b = Breaker::new("t", 3, Duration::from_secs(60));
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none(), "open fails fast");
        assert!(b.retry_after() > Duration::from_secs(59));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let b = Breaker::new("t", 1, Duration::from_millis(20));
        b.failure();
        assert!(b.try_acquire().is_none());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("one probe after the cool-down");
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        assert!(b.try_acquire().is_none());
        std::thread::sleep(Duration::from_millis(30));
        b.try_acquire().expect("probe").success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn a_dropped_probe_frees_the_slot() {
        let b = Breaker::new("t", 1, Duration::from_millis(1));
        b.failure();
        std::thread::sleep(Duration::from_millis(5));
        drop(b.try_acquire().expect("probe"));
        assert!(b.try_acquire().is_some(), "slot freed");
    }

    #[test]
    fn background_success_closes_an_open_breaker() {
        let b = Breaker::new("t", 1, Duration::from_secs(60));
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(BreakerState::HalfOpen.gauge(), 2);
    }
}
