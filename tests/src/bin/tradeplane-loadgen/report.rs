//! The report: latency histograms (HdrHistogram), one printed row per level, and the CSV that
//! `scripts/bench-e2e.sh` reads by column position (keep both formats as they are).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies of the requests that got an HTTP answer, in microseconds, to 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // 1 µs to 1 h: a request can take at most --timeout (600 s); longer ones saturate.
        Latencies(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds and precision"),
        )
    }
}

impl Latencies {
    /// Records one latency (rounded down to the microsecond).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us);
    }

    /// Adds another worker's latencies.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of latencies recorded.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0..=1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// The largest latency, in milliseconds; 0 when empty.
    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1000.0
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub concurrency: usize,
    pub requests: u64,
    pub ok: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub errors: u64,
    pub filled: u64,
    pub places: u64,
    pub cancels: u64,
    pub mean_batch: f64,
    pub mean_tx_ms: f64,
    /// The servers' CPU time (every replica's `process_cpu_seconds_total`) over the level,
    /// per 2xx answer, in microseconds.
    pub cpu_us_per_ok: f64,
}

impl Row {
    fn ok_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
}

pub const HEADER: &str = "conc  requests      ok    ok/s   p50ms   p90ms   p99ms   maxms   4xx   5xx   err  filled  batch  tx_ms  cpu_us";

pub fn format_row(r: &Row) -> String {
    format!(
        "{:>4}  {:>8}  {:>6}  {:>6.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>4}  {:>4}  {:>4}  {:>6}  {:>5.1}  {:>5.2}  {:>6.0}",
        r.concurrency,
        r.requests,
        r.ok,
        r.ok_per_second(),
        r.p50_ms,
        r.p90_ms,
        r.p99_ms,
        r.max_ms,
        r.status_4xx,
        r.status_5xx,
        r.errors,
        r.filled,
        r.mean_batch,
        r.mean_tx_ms,
        r.cpu_us_per_ok,
    )
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "concurrency,requests,ok,seconds,ok_per_second,p50_ms,p90_ms,p99_ms,max_ms,status_4xx,status_5xx,transport_errors,filled,places,cancels,mean_batch,mean_tx_ms,cpu_us_per_ok\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{:.1},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{:.2},{:.3},{:.1}",
            r.concurrency,
            r.requests,
            r.ok,
            r.seconds,
            r.ok_per_second(),
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.status_4xx,
            r.status_5xx,
            r.errors,
            r.filled,
            r.places,
            r.cancels,
            r.mean_batch,
            r.mean_tx_ms,
            r.cpu_us_per_ok
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_the_histograms_precision() {
        let mut l = Latencies::default();
        assert_eq!((l.quantile_ms(0.5), l.max_ms(), l.len()), (0.0, 0.0, 0));
        for i in 1..=100 {
            l.record(Duration::from_millis(i));
        }
        let close = |got: f64, want: f64| (got - want).abs() <= want * 1e-3;
        assert!(close(l.quantile_ms(0.5), 50.0), "{}", l.quantile_ms(0.5));
        assert!(close(l.quantile_ms(0.99), 99.0), "{}", l.quantile_ms(0.99));
        assert!(close(l.max_ms(), 100.0), "{}", l.max_ms());
        let mut other = Latencies::default();
        other.record(Duration::from_secs(2));
        l.merge(&other);
        assert_eq!(l.len(), 101);
        assert!(close(l.max_ms(), 2000.0), "{}", l.max_ms());
        l.record(Duration::from_secs(600));
        assert!(close(l.max_ms(), 600_000.0), "{}", l.max_ms());
    }

    fn row() -> Row {
        Row {
            concurrency: 16,
            requests: 3000,
            ok: 2900,
            seconds: 2.0,
            p50_ms: 1.5,
            p90_ms: 2.25,
            p99_ms: 10.0,
            max_ms: 20.5,
            status_4xx: 90,
            status_5xx: 4,
            errors: 6,
            filled: 700,
            places: 2500,
            cancels: 500,
            mean_batch: 7.5,
            mean_tx_ms: 3.25,
            cpu_us_per_ok: 212.4,
        }
    }

    #[test]
    fn the_printed_row_and_the_csv_keep_their_columns() {
        assert_eq!(
            format_row(&row()),
            "  16      3000    2900    1450    1.50    2.25   10.00    20.5    90     4     6     700    7.5   3.25     212"
        );
        assert_eq!(HEADER.split_whitespace().count(), 15);
        let csv = csv(&[row()]);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some(
                "concurrency,requests,ok,seconds,ok_per_second,p50_ms,p90_ms,p99_ms,max_ms,\
                 status_4xx,status_5xx,transport_errors,filled,places,cancels,mean_batch,mean_tx_ms,cpu_us_per_ok"
            )
        );
        assert_eq!(
            lines.next(),
            Some(
                "16,3000,2900,2.000,1450.0,1.500,2.250,10.000,20.500,90,4,6,700,2500,500,7.50,3.250,212.4"
            )
        );
        assert_eq!(lines.next(), None);
    }
}
