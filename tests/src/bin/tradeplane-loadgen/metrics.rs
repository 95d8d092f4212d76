//! The server's matcher counters, read from its `/metrics` with a Prometheus text parser
//! (`prometheus-parse`), so comments, labels, timestamps and exponent notation are handled.

use hyper::Method;
use prometheus_parse::{Scrape, Value};

use crate::client::Conn;

/// Sum and count of a Prometheus histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SumCount {
    sum: f64,
    count: f64,
}

impl SumCount {
    /// The mean of the observations made since `before` (0 when there were none).
    pub fn mean_since(&self, before: &SumCount) -> f64 {
        let n = self.count - before.count;
        if n > 0.0 {
            (self.sum - before.sum) / n
        } else {
            0.0
        }
    }
}

/// Server-side counters read from `/metrics` (zero when unavailable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerMetrics {
    /// `match_batch_size`: commands per matcher transaction.
    pub batch_size: SumCount,
    /// `match_latency_seconds`: time to match and commit one batch.
    pub match_latency: SumCount,
    /// `process_cpu_seconds_total`: the server process's CPU time (user + system).
    pub cpu_seconds: f64,
}

impl ServerMetrics {
    /// Reads the two histograms' `_sum`/`_count` and the process CPU time from an exposition text. A name may carry a
    /// prefix (a registry namespace); label sets of one histogram are added up.
    pub fn parse(text: &str) -> ServerMetrics {
        let mut m = ServerMetrics::default();
        let Ok(scrape) = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
            return m;
        };
        for s in &scrape.samples {
            let value = match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => continue,
            };
            let name = s.metric.as_str();
            let slot = if name.ends_with("match_batch_size_sum") {
                &mut m.batch_size.sum
            } else if name.ends_with("match_batch_size_count") {
                &mut m.batch_size.count
            } else if name.ends_with("match_latency_seconds_sum") {
                &mut m.match_latency.sum
            } else if name.ends_with("match_latency_seconds_count") {
                &mut m.match_latency.count
            } else if name.ends_with("process_cpu_seconds_total") {
                &mut m.cpu_seconds
            } else {
                continue;
            };
            *slot += value;
        }
        m
    }
}

/// Scrapes the platform's `/metrics`; zeros when it does not answer 200.
pub async fn scrape(conn: &mut Conn) -> ServerMetrics {
    match conn.call(Method::GET, "/metrics", None, None).await {
        Ok((200, body)) => ServerMetrics::parse(&String::from_utf8_lossy(&body)),
        _ => ServerMetrics::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the platform's `prometheus` encoder writes.
    const TEXT: &str = "\
# HELP match_batch_size Commands matched and committed in one transaction.
# TYPE match_batch_size histogram
match_batch_size_bucket{le=\"1\"} 3
match_batch_size_bucket{le=\"+Inf\"} 10
match_batch_size_sum 42
match_batch_size_count 10
# HELP match_latency_seconds Time to match and commit one batch of orders.
# TYPE match_latency_seconds histogram
match_latency_seconds_bucket{le=\"0.0005\"} 0
match_latency_seconds_bucket{le=\"+Inf\"} 10
match_latency_seconds_sum 1.5e-1
match_latency_seconds_count 10
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE orders_total counter
orders_total{symbol=\"AAPL\",side=\"buy\"} 7
";

    #[test]
    fn reads_sums_and_counts() {
        let m = ServerMetrics::parse(TEXT);
        assert_eq!(
            m.batch_size,
            SumCount {
                sum: 42.0,
                count: 10.0
            }
        );
        assert_eq!(
            m.match_latency,
            SumCount {
                sum: 0.15,
                count: 10.0
            }
        );
        assert_eq!(m.cpu_seconds, 12.5);
    }

    #[test]
    fn prefixes_and_label_sets_add_up_and_garbage_is_zero() {
        let text = "tp_match_batch_size_sum{replica=\"a\"} 5\n\
                    tp_match_batch_size_sum{replica=\"b\"} 7 1700000000000\n\
                    tp_match_batch_size_count{replica=\"a\"} 2\n";
        let m = ServerMetrics::parse(text);
        assert_eq!(
            m.batch_size,
            SumCount {
                sum: 12.0,
                count: 2.0
            }
        );
        assert_eq!(
            ServerMetrics::parse("not metrics at all {"),
            ServerMetrics::default()
        );
    }

    #[test]
    fn means_are_over_the_interval() {
        let before = SumCount {
            sum: 10.0,
            count: 4.0,
        };
        let after = SumCount {
            sum: 40.0,
            count: 10.0,
        };
        assert_eq!(after.mean_since(&before), 5.0);
        assert_eq!(before.mean_since(&before), 0.0);
    }
}
