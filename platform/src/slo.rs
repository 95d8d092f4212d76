//! This replica's view of the service-level objectives, for `GET /api/v1/admin/slo`.
//!
//! The SLIs are read from the same in-process counters Prometheus scrapes
//! (`http_request_duration_seconds`, whose buckets include the latency threshold), with the
//! chart's exclusions (health probes and `/metrics` are not API traffic). A sampler records the
//! totals every [`SAMPLE_EVERY`]; a window's SLI is the difference between now and the sample
//! taken a window ago (or the oldest one, for a younger process: the report says how many
//! seconds a window really covers). The fleet-wide view, over 30 days, is Prometheus's: see the
//! recording rules in the chart and `docs/operating.md`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::HistogramVec;
use prometheus::core::Collector;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::SloConfig;
use crate::resilience::breaker::{Breaker, BreakerState};

/// How often the totals are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The longest window kept (1 hour).
const KEEP: Duration = Duration::from_secs(3600);

/// Cumulative request totals at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// API requests answered.
    pub requests: u64,
    /// Of which with a 5xx status.
    pub errors: u64,
    /// Of which within the latency threshold.
    pub fast: u64,
}

/// The tracker: objectives, the histogram it reads, and the samples.
pub struct Slo {
    config: SloConfig,
    histogram: HistogramVec,
    started: Instant,
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

/// An SLI over one window.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WindowReport {
    /// `5m`, `1h` or `since_start`.
    pub window: &'static str,
    /// Seconds the window really covers (less than its length while the process is younger).
    pub seconds: u64,
    /// API requests answered in it.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Of which slower than the latency threshold.
    pub slow: u64,
    /// Percent of requests that were not 5xx; null without requests.
    pub availability: Option<f64>,
    /// Percent of requests within the latency threshold; null without requests.
    pub latency: Option<f64>,
    /// Error-budget burn rate of availability: the 5xx ratio over the budget (1 spends the
    /// budget exactly over the SLO period; 14.4 spends 2% of 30 days in 1 hour).
    pub availability_burn_rate: Option<f64>,
    /// The same for latency: the slow ratio over the latency budget.
    pub latency_burn_rate: Option<f64>,
}

/// The objectives as configured.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Objectives {
    /// `SLO_AVAILABILITY_TARGET`, percent.
    pub availability_target: f64,
    /// `SLO_LATENCY_THRESHOLD_MS`.
    pub latency_threshold_ms: u64,
    /// `SLO_LATENCY_TARGET`, percent.
    pub latency_target: f64,
}

/// Remaining error budget since this process started, as a fraction of the budget (1: none
/// spent; 0: all spent; negative: overspent).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Budget {
    /// Availability budget left; null without requests.
    pub availability: Option<f64>,
    /// Latency budget left; null without requests.
    pub latency: Option<f64>,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BreakerReport {
    /// `database` or `redis`.
    pub name: &'static str,
    /// `closed`, `open` or `half_open`.
    #[schema(value_type = String)]
    pub state: BreakerState,
}

/// The body of `GET /api/v1/admin/slo`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({
    "scope": "replica",
    "replica": "tradeplane-7c9d8-x2k4q",
    "note": "One replica's view, from its own counters since it started; the fleet-wide SLIs and the 30-day error budget are Prometheus's.",
    "uptime_seconds": 7200,
    "objectives": {"availability_target": 99.9, "latency_threshold_ms": 200, "latency_target": 99.0},
    "windows": [
        {"window": "5m", "seconds": 300, "requests": 1500, "errors": 0, "slow": 3, "availability": 100.0, "latency": 99.8, "availability_burn_rate": 0.0, "latency_burn_rate": 0.2},
        {"window": "1h", "seconds": 3600, "requests": 18000, "errors": 9, "slow": 90, "availability": 99.95, "latency": 99.5, "availability_burn_rate": 0.5, "latency_burn_rate": 0.5},
        {"window": "since_start", "seconds": 7200, "requests": 36000, "errors": 9, "slow": 150, "availability": 99.975, "latency": 99.583, "availability_burn_rate": 0.25, "latency_burn_rate": 0.417}
    ],
    "remaining_budget": {"availability": 0.75, "latency": 0.583},
    "breakers": [{"name": "database", "state": "closed"}, {"name": "redis", "state": "closed"}]
}))]
pub struct SloReport {
    /// Always `replica`: these figures are this process's alone.
    pub scope: &'static str,
    /// This replica (its pod name, `HOSTNAME`, when set).
    pub replica: String,
    /// Where the fleet-wide view is.
    pub note: &'static str,
    /// Seconds since this process started.
    pub uptime_seconds: u64,
    /// The objectives.
    pub objectives: Objectives,
    /// The SLIs over the last 5 minutes, the last hour and since start.
    pub windows: Vec<WindowReport>,
    /// Error budget left since start.
    pub remaining_budget: Budget,
    /// The circuit breakers.
    pub breakers: Vec<BreakerReport>,
}

/// Whether a route template counts as API traffic (the chart's `excludedRoutes` default).
fn counted(route: &str) -> bool {
    !(route.starts_with("/health") || route == "/metrics")
}

impl Slo {
    /// A tracker reading `histogram` (`http_request_duration_seconds`, labelled method, route,
    /// status), which must have a bucket at the latency threshold.
    pub fn new(config: SloConfig, histogram: HistogramVec) -> Arc<Slo> {
        let slo = Arc::new(Slo {
            config,
            histogram,
            started: Instant::now(),
            samples: Mutex::new(VecDeque::new()),
        });
        slo.sample_now();
        slo
    }

    /// Samples every [`SAMPLE_EVERY`] until `stop`.
    pub fn spawn(self: &Arc<Slo>, stop: CancellationToken) {
        let slo = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => slo.sample_now(),
                }
            }
        });
    }

    /// The totals now, summed over the histogram's counted series.
    pub fn totals(&self) -> Totals {
        let threshold = self.config.latency_threshold.as_secs_f64();
        let mut t = Totals::default();
        for family in self.histogram.collect() {
            for m in family.get_metric() {
                let mut route = "";
                let mut status = "";
                for l in m.get_label() {
                    match l.name() {
                        "route" => route = l.value(),
                        "status" => status = l.value(),
                        _ => {}
                    }
                }
                if !counted(route) {
                    continue;
                }
                let h = m.get_histogram();
                t.requests += h.get_sample_count();
                if status.starts_with('5') {
                    t.errors += h.get_sample_count();
                }
                t.fast += h
                    .get_bucket()
                    .iter()
                    .find(|b| (b.upper_bound() - threshold).abs() < 1e-9)
                    .map_or(0, |b| b.cumulative_count());
            }
        }
        t
    }

    fn sample_now(&self) {
        let now = Instant::now();
        let totals = self.totals();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now, totals));
        // Keep one sample older than the longest window, so that window stays whole.
        while samples.len() > 2 && samples[1].0 + KEEP <= now {
            samples.pop_front();
        }
    }

    /// The report, with `breakers`' states.
    pub fn report(&self, breakers: &[&Breaker]) -> SloReport {
        let now = Instant::now();
        let current = self.totals();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let since = |window: Option<Duration>| -> (Instant, Totals) {
            let Some(window) = window else {
                return (self.started, Totals::default());
            };
            // The newest sample at least `window` old, else the oldest.
            samples
                .iter()
                .rev()
                .find(|(at, _)| *at + window <= now)
                .or(samples.front())
                .copied()
                .unwrap_or((self.started, Totals::default()))
        };
        let windows = [
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("since_start", None),
        ]
        .into_iter()
        .map(|(name, len)| {
            let (at, base) = since(len);
            self.window(name, now.duration_since(at), base, current)
        })
        .collect::<Vec<_>>();
        let life = windows.last().cloned();
        SloReport {
            scope: "replica",
            replica: std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into()),
            note: "One replica's view, from its own counters since it started; the fleet-wide SLIs and the 30-day error budget are Prometheus's (recording rules tradeplane:http_requests:*_ratio_rate* and tradeplane:slo_*, see docs/operating.md).",
            uptime_seconds: now.duration_since(self.started).as_secs(),
            objectives: Objectives {
                availability_target: self.config.availability_target,
                latency_threshold_ms: u64::try_from(self.config.latency_threshold.as_millis())
                    .unwrap_or(u64::MAX),
                latency_target: self.config.latency_target,
            },
            remaining_budget: Budget {
                availability: life
                    .as_ref()
                    .and_then(|w| w.availability_burn_rate)
                    .map(|b| 1.0 - b),
                latency: life
                    .as_ref()
                    .and_then(|w| w.latency_burn_rate)
                    .map(|b| 1.0 - b),
            },
            windows,
            breakers: breakers
                .iter()
                .map(|b| BreakerReport {
                    name: b.name(),
                    state: b.state(),
                })
                .collect(),
        }
    }

    fn window(
        &self,
        name: &'static str,
        span: Duration,
        base: Totals,
        now: Totals,
    ) -> WindowReport {
        let requests = now.requests.saturating_sub(base.requests);
        let errors = now.errors.saturating_sub(base.errors);
        let fast = now.fast.saturating_sub(base.fast);
        let slow = requests.saturating_sub(fast);
        let ratio = |n: u64| (requests > 0).then(|| n as f64 / requests as f64);
        let availability_budget = 1.0 - self.config.availability_target / 100.0;
        let latency_budget = 1.0 - self.config.latency_target / 100.0;
        WindowReport {
            window: name,
            seconds: span.as_secs(),
            requests,
            errors,
            slow,
            availability: ratio(errors).map(|r| 100.0 * (1.0 - r)),
            latency: ratio(fast).map(|r| 100.0 * r),
            availability_burn_rate: ratio(errors).map(|r| r / availability_budget),
            latency_burn_rate: ratio(slow).map(|r| r / latency_budget),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::HistogramOpts;

    fn histogram() -> HistogramVec {
        HistogramVec::new(
            HistogramOpts::new("h", "h").buckets(vec![0.1, 0.2, 0.5]),
            &["method", "route", "status"],
        )
        .expect("histogram")
    }

    #[test]
    fn slis_burn_rates_and_budget_follow_the_counters() {
        let h = histogram();
        let slo = Slo::new(SloConfig::default(), h.clone());
        // 1000 API requests: 2 are 5xx, 30 slower than 200 ms; probes do not count.
        for i in 0..1000 {
            let status = if i < 2 { "500" } else { "200" };
            let secs = if i < 30 { 0.3 } else { 0.05 };
            h.with_label_values(&["GET", "/api/v1/orders", status])
                .observe(secs);
        }
        for _ in 0..500 {
            h.with_label_values(&["GET", "/health/live", "503"])
                .observe(1.0);
        }
        assert_eq!(
            slo.totals(),
            Totals {
                requests: 1000,
                errors: 2,
                fast: 970
            }
        );
        let r = slo.report(&[]);
        assert_eq!(r.scope, "replica");
        let life = r
            .windows
            .iter()
            .find(|w| w.window == "since_start")
            .expect("window");
        assert_eq!((life.requests, life.errors, life.slow), (1000, 2, 30));
        assert!((life.availability.expect("a") - 99.8).abs() < 1e-9);
        assert!((life.latency.expect("l") - 97.0).abs() < 1e-9);
        // 0.2% errors over a 0.1% budget: burning at 2x, the budget overspent by 1x.
        assert!((life.availability_burn_rate.expect("b") - 2.0).abs() < 1e-6);
        assert!((r.remaining_budget.availability.expect("r") + 1.0).abs() < 1e-6);
        // 3% slow over a 1% budget.
        assert!((life.latency_burn_rate.expect("b") - 3.0).abs() < 1e-6);
        // A young process: every window covers what there is.
        assert!(r.windows.iter().all(|w| w.requests == 1000));
    }

    #[test]
    fn a_window_starts_at_the_sample_a_window_ago() {
        let h = histogram();
        let slo = Slo::new(SloConfig::default(), h.clone());
        h.with_label_values(&["GET", "/x", "500"]).observe(0.01);
        // Pretend the first sample was taken 10 minutes ago and a second one 4 minutes ago.
        {
            let mut s = slo.samples.lock().expect("lock");
            let now = Instant::now();
            s.clear();
            s.push_back((now - Duration::from_secs(600), Totals::default()));
            s.push_back((
                now - Duration::from_secs(240),
                Totals {
                    requests: 1,
                    errors: 1,
                    fast: 1,
                },
            ));
        }
        h.with_label_values(&["GET", "/x", "200"]).observe(0.01);
        let r = slo.report(&[]);
        let five = &r.windows[0];
        assert_eq!(five.window, "5m");
        assert_eq!(
            (five.requests, five.errors),
            (2, 1),
            "from the 10-minute sample"
        );
        assert!(five.seconds >= 600);
    }

    #[test]
    fn no_requests_no_ratios() {
        let slo = Slo::new(SloConfig::default(), histogram());
        let r = slo.report(&[]);
        assert!(r.windows.iter().all(|w| w.availability.is_none()));
        assert_eq!(r.remaining_budget.availability, None);
    }
}
