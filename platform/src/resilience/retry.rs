//! Retries for idempotent reads: jittered exponential backoff (backon) under a retry budget.
//!
//! Only reads that change nothing are retried (market data), and only on errors that say a
//! dependency was momentarily unavailable. The budget (tower's `TpsBudget`) lets retries add at
//! most a fixed share of the recent request volume, so during a real outage retries stop instead
//! of multiplying the load on a struggling database.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use prometheus::IntCounterVec;
use tower::retry::budget::{Budget, TpsBudget};

use crate::error::ApiError;

/// Share of the request volume that retries may add.
pub const DEFAULT_RATIO: f32 = 0.1;
/// Retries per second allowed whatever the volume (so a blip after idling is covered).
pub const DEFAULT_MIN_PER_SECOND: u32 = 1;
/// How long a first attempt's deposit counts.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// The retry budget: tower's `TpsBudget` (first attempts deposit, each retry withdraws; deposits
/// expire after the window), with a counter of what it decided.
pub struct RetryBudget {
    budget: TpsBudget,
    counter: Option<IntCounterVec>,
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget").finish_non_exhaustive()
    }
}

impl RetryBudget {
    /// A budget where retries add at most `ratio` of the attempts of the last `window`, plus
    /// `min_per_second` whatever the volume. `counter` (labels: `outcome` = `retried` |
    /// `budget_exhausted`) counts what happened.
    pub fn new(
        window: Duration,
        min_per_second: u32,
        ratio: f32,
        counter: Option<IntCounterVec>,
    ) -> RetryBudget {
        RetryBudget {
            budget: TpsBudget::new(window, min_per_second, ratio),
            counter,
        }
    }

    /// The default budget: 10 % of the last 10 s of requests, plus one retry a second.
    pub fn standard(counter: Option<IntCounterVec>) -> RetryBudget {
        RetryBudget::new(
            DEFAULT_WINDOW,
            DEFAULT_MIN_PER_SECOND,
            DEFAULT_RATIO,
            counter,
        )
    }

    fn earn(&self) {
        self.budget.deposit();
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_spend(&self) -> bool {
        let ok = self.budget.withdraw();
        if let Some(c) = &self.counter {
            c.with_label_values(&[if ok { "retried" } else { "budget_exhausted" }])
                .inc();
        }
        ok
    }
}

/// Whether an error is worth retrying: the dependency was unavailable, nothing was decided.
fn transient(e: &ApiError) -> bool {
    matches!(e, ApiError::Unavailable(_))
}

/// Runs an idempotent read, retrying transient failures (at most twice, 20-200 ms apart with
/// jitter) while the budget allows.
pub async fn idempotent<T, F, Fut>(budget: &RetryBudget, op: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    budget.earn();
    op.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(200))
            .with_max_times(2)
            .with_jitter(),
    )
    .sleep(tokio::time::sleep)
    .when(|e| transient(e) && budget.try_spend())
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn flaky(
        calls: &AtomicU32,
        failures: u32,
        error: fn() -> ApiError,
    ) -> Result<u32, ApiError> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n < failures { Err(error()) } else { Ok(n) }
    }

    fn unavailable() -> ApiError {
        ApiError::Unavailable("blip".into())
    }

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let budget = RetryBudget::standard(None);
        let calls = AtomicU32::new(0);
        let r = idempotent(&budget, || flaky(&calls, 2, unavailable)).await;
        assert_eq!(r.expect("third attempt succeeds"), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_and_persistent_failures_are_not_retried_forever() {
        let budget = RetryBudget::standard(None);
        let calls = AtomicU32::new(0);
        let r = idempotent(&budget, || {
            flaky(&calls, 1, || ApiError::NotFound("x".into()))
        })
        .await;
        assert!(matches!(r, Err(ApiError::NotFound(_))));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a 404 is an answer, not a blip"
        );

        let calls = AtomicU32::new(0);
        let r = idempotent(&budget, || flaky(&calls, 100, unavailable)).await;
        assert!(matches!(r, Err(ApiError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "at most two retries");
    }

    #[tokio::test]
    async fn the_budget_caps_retries_to_a_share_of_the_traffic() {
        // No per-second floor: retries come only from what first attempts earned (10% of them).
        let budget = RetryBudget::new(DEFAULT_WINDOW, 0, 0.1, None);
        let calls = AtomicU32::new(0);
        let mut requests = 0;
        for _ in 0..100 {
            requests += 1;
            let _ = idempotent(&budget, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        Err::<u32, _>(unavailable())
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        }
        let attempts = calls.load(Ordering::SeqCst);
        let retries = attempts - requests;
        assert!(
            retries <= 10,
            "100 requests earned at most 10 retries, got {retries}"
        );
        assert!(retries >= 5, "the earned budget is used, got {retries}");
    }
}
