//! The measurements of a canary analysis, read from the pods' own `/metrics` (Prometheus text,
//! parsed with `prometheus-parse`): request and 5xx counts of `http_requests_total` and the
//! buckets of `http_request_duration_seconds`, summed over the routes.
//!
//! Why the pods and not a Prometheus server: the operator then needs nothing but the pods (which
//! it may list already) and judges exactly the pods it started. Counters only grow, so a step is
//! measured as the difference between a baseline taken at its first scrape and the latest
//! scrape, pod by pod (a pod whose counters went down restarted: its whole count is new). The
//! health probes (`/health/*`) and `/metrics` are left out: they would dilute the error ratio of
//! a canary that answers every real request with a 500.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// The counters of one pod (or the sum of several): requests, 5xx responses, latency buckets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Requests served (`http_requests_total`, all statuses).
    pub requests: f64,
    /// Requests answered with a 5xx status.
    pub errors: f64,
    /// Cumulative latency buckets of `http_request_duration_seconds`: upper bound (`le`, as the
    /// bits of the f64 so the map orders them; +Inf included) to count.
    pub buckets: BTreeMap<OrderedLe, f64>,
}

/// A bucket bound that orders like the number (bounds are never NaN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrderedLe(pub f64);

impl Eq for OrderedLe {}
impl PartialOrd for OrderedLe {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedLe {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn counted(route: Option<&str>) -> bool {
    !matches!(route, Some(r) if r.starts_with("/health") || r == "/metrics")
}

/// Parses a pod's `/metrics` text.
pub fn parse(text: &str) -> Result<Sample, String> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut s = Sample::default();
    let mut seen = false;
    for sample in scrape.samples {
        if !counted(sample.labels.get("route")) {
            continue;
        }
        match (sample.metric.as_str(), &sample.value) {
            (
                "http_requests_total",
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v),
            ) => {
                seen = true;
                s.requests += v;
                if sample
                    .labels
                    .get("status")
                    .is_some_and(|c| c.starts_with('5'))
                {
                    s.errors += v;
                }
            }
            ("http_request_duration_seconds", prometheus_parse::Value::Histogram(hs)) => {
                for h in hs {
                    *s.buckets.entry(OrderedLe(h.less_than)).or_insert(0.0) += h.count;
                }
            }
            _ => {}
        }
    }
    if !seen && !text.contains("http_requests_total") {
        return Err("no http_requests_total in the metrics (is this the platform?)".to_string());
    }
    Ok(s)
}

impl Sample {
    /// What happened since `base` (the same pod earlier). A counter that went down means the pod
    /// restarted, so everything it counted is new.
    pub fn since(&self, base: &Sample) -> Sample {
        let reset = self.requests < base.requests
            || self.errors < base.errors
            || base
                .buckets
                .iter()
                .any(|(le, c)| self.buckets.get(le).copied().unwrap_or(0.0) < *c);
        if reset {
            return self.clone();
        }
        Sample {
            requests: self.requests - base.requests,
            errors: self.errors - base.errors,
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c - base.buckets.get(le).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    /// Adds another pod's counters.
    pub fn add(&mut self, other: &Sample) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (le, c) in &other.buckets {
            *self.buckets.entry(*le).or_insert(0.0) += c;
        }
    }

    /// 5xx / all, `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }

    /// The 99th percentile latency, interpolated inside its bucket as Prometheus's
    /// `histogram_quantile` does; `None` without observations. A quantile in the +Inf bucket is
    /// the highest finite bound.
    pub fn p99(&self) -> Option<f64> {
        quantile(0.99, &self.buckets)
    }
}

/// `histogram_quantile(q, buckets)` over cumulative buckets.
pub fn quantile(q: f64, buckets: &BTreeMap<OrderedLe, f64>) -> Option<f64> {
    let total = buckets.iter().next_back().map(|(_, c)| *c)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (le, count) in buckets {
        if *count >= rank {
            if le.0.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(le.0);
            }
            return Some(lower_bound + (le.0 - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = le.0;
        lower_count = *count;
    }
    Some(lower_bound)
}

/// Sums, pod by pod, what each pod counted since its baseline; pods without a baseline get one
/// now (inserted into `baseline`) and count from the next scrape on.
pub fn over_step(
    baseline: &mut HashMap<String, Sample>,
    current: &HashMap<String, Sample>,
) -> Sample {
    let mut total = Sample::default();
    for (pod, now) in current {
        match baseline.get(pod) {
            Some(base) => total.add(&now.since(base)),
            None => {
                baseline.insert(pod.clone(), now.clone());
            }
        }
    }
    total
}

/// Fetches a URL's body: the operator's HTTP client in production, a canned answer in tests.
pub type ScrapeFn = Arc<dyn Fn(String) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Per-request timeout of a scrape (a hanging pod must not hold the reconciliation).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The production scraper: a plain-HTTP GET with [`SCRAPE_TIMEOUT`].
pub fn http_scraper() -> ScrapeFn {
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    Arc::new(move |url: String| {
        let client = client.clone();
        Box::pin(async move {
            let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            resp.text().await.map_err(|e| e.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(v: &[(f64, f64)]) -> BTreeMap<OrderedLe, f64> {
        v.iter().map(|(l, c)| (OrderedLe(*l), *c)).collect()
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        // 100 observations: 90 under 0.1, 10 between 0.1 and 0.5.
        let b = buckets(&[(0.1, 90.0), (0.5, 100.0), (f64::INFINITY, 100.0)]);
        let p99 = quantile(0.99, &b).unwrap();
        assert!((p99 - 0.46).abs() < 1e-9, "{p99}");
        let inf = buckets(&[(0.1, 1.0), (f64::INFINITY, 100.0)]);
        assert_eq!(quantile(0.99, &inf), Some(0.1));
        assert_eq!(quantile(0.99, &buckets(&[(0.1, 0.0)])), None);
    }

    #[test]
    fn a_counter_reset_counts_everything_as_new() {
        let base = Sample {
            requests: 100.0,
            errors: 5.0,
            buckets: buckets(&[(f64::INFINITY, 100.0)]),
        };
        let restarted = Sample {
            requests: 3.0,
            errors: 1.0,
            buckets: buckets(&[(f64::INFINITY, 3.0)]),
        };
        assert_eq!(restarted.since(&base), restarted);
    }
}
