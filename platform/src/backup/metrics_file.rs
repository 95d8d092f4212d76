//! The optional Prometheus textfile (`backup --metrics-file PATH`).
//!
//! A backup runs as a short-lived CronJob pod that no Prometheus scrapes, so its outcome is
//! exported the node-exporter "textfile collector" way: a small file, replaced atomically after
//! every run, encoded by the `prometheus` crate's `TextEncoder`. Two series carry over from the
//! previous file (read back with `prometheus-parse`): `backup_last_success_timestamp_seconds`
//! (a name from the platform's metric contract) survives failed runs, and the
//! `backup_duration_seconds` histogram accumulates every run's duration, like a counter.

use std::path::Path;

use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Gauge, Registry, TextEncoder};

/// The outcome of one backup run, as exported.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// When the run finished (Unix seconds).
    pub finished_at: f64,
    /// Whether it succeeded.
    pub success: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// Wall-clock duration.
    pub duration_seconds: f64,
    /// Size of the backup (0 on failure).
    pub size_bytes: u64,
    /// Rows in the backup (0 on failure).
    pub rows: u64,
    /// Old backups deleted by retention.
    pub pruned_files: usize,
}

const LAST_SUCCESS: &str = "backup_last_success_timestamp_seconds";
const DURATION: &str = "backup_duration_seconds";
/// The histogram's buckets: 0.1 s to 30 min. The serving process exports no backup series (it
/// never runs one); this file, and the operator's `/metrics`, are where backup metrics live.
pub const DURATION_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0];

/// What the previous textfile held that carries over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Previous {
    /// `backup_last_success_timestamp_seconds`.
    pub last_success: Option<f64>,
    /// Cumulative counts of `backup_duration_seconds` per bucket of [`DURATION_BUCKETS`].
    pub duration_buckets: [u64; 8],
    /// `backup_duration_seconds_count`.
    pub duration_count: u64,
    /// `backup_duration_seconds_sum`.
    pub duration_sum: f64,
}

/// Renders the textfile: this run's gauges, and the carried-over series updated with it.
pub fn render(o: &RunOutcome, previous: &Previous) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: f64| -> Result<(), prometheus::Error> {
        let g = Gauge::new(name, help)?;
        g.set(value);
        registry.register(Box::new(g))
    };
    let last_success = if o.success {
        Some(o.finished_at)
    } else {
        previous.last_success
    };
    if let Some(t) = last_success {
        gauge(LAST_SUCCESS, "Unix time of the last successful backup.", t)?;
    }
    gauge(
        "backup_last_run_timestamp_seconds",
        "Unix time the last backup run finished.",
        o.finished_at,
    )?;
    gauge(
        "backup_last_run_success",
        "1 if the last backup run succeeded, 0 otherwise.",
        if o.success { 1.0 } else { 0.0 },
    )?;
    gauge(
        "backup_last_exit_code",
        "Exit code of the last backup run.",
        f64::from(o.exit_code),
    )?;
    gauge(
        "backup_last_duration_seconds",
        "Duration of the last backup run.",
        o.duration_seconds,
    )?;
    gauge(
        "backup_last_size_bytes",
        "Size of the last backup.",
        o.size_bytes as f64,
    )?;
    gauge(
        "backup_last_rows",
        "Rows in the last backup.",
        o.rows as f64,
    )?;
    gauge(
        "backup_last_pruned_files",
        "Old backups deleted by retention in the last run.",
        o.pruned_files as f64,
    )?;
    let mut families = registry.gather();
    families.push(duration_family(o.duration_seconds, previous));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// `backup_duration_seconds`: the previous file's histogram plus this run. Built as a metric
/// family because a `prometheus::Histogram` cannot start from counts read back from a file.
fn duration_family(seconds: f64, previous: &Previous) -> MetricFamily {
    let buckets = DURATION_BUCKETS
        .iter()
        .zip(previous.duration_buckets)
        .map(|(bound, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(count + u64::from(seconds <= *bound));
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(previous.duration_count + 1);
    h.set_sample_sum(previous.duration_sum + seconds);
    let mut m = Metric::default();
    m.set_histogram(h);
    let mut f = MetricFamily::default();
    f.set_name(DURATION.into());
    f.set_help(
        "Durations of the backup runs (cumulative over the runs that wrote this file).".into(),
    );
    f.set_field_type(MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

/// Reads the carried-over series from an existing textfile (defaults when absent or unreadable).
pub fn previous(path: &Path) -> Previous {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Previous::default();
    };
    let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
        return Previous::default();
    };
    let number = |v: &prometheus_parse::Value| match v {
        prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Untyped(x) => Some(*x),
        _ => None,
    };
    let mut p = Previous::default();
    for s in &scrape.samples {
        match (s.metric.as_str(), &s.value) {
            (LAST_SUCCESS, v) => p.last_success = number(v),
            (DURATION, prometheus_parse::Value::Histogram(counts)) => {
                for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                    if let Some(c) = counts.iter().find(|c| c.less_than == *bound) {
                        p.duration_buckets[i] = c.count as u64;
                    }
                }
            }
            ("backup_duration_seconds_count", v) => {
                p.duration_count = number(v).unwrap_or(0.0) as u64
            }
            ("backup_duration_seconds_sum", v) => p.duration_sum = number(v).unwrap_or(0.0),
            _ => {}
        }
    }
    p
}

/// Replaces the textfile atomically (temporary file + rename).
pub fn write(path: &Path, outcome: &RunOutcome) -> std::io::Result<()> {
    let text = render(outcome, &previous(path)).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_last_success_time_and_durations_accumulate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backup.prom");
        let ok = RunOutcome {
            finished_at: 1000.0,
            success: true,
            rows: 5,
            duration_seconds: 0.3,
            ..Default::default()
        };
        write(&path, &ok).expect("write");
        let p = previous(&path);
        assert_eq!(p.last_success, Some(1000.0));
        assert_eq!(p.duration_count, 1);
        assert_eq!(p.duration_buckets, [0, 1, 1, 1, 1, 1, 1, 1]);
        let failed = RunOutcome {
            finished_at: 2000.0,
            success: false,
            exit_code: 4,
            duration_seconds: 20.0,
            ..Default::default()
        };
        write(&path, &failed).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("backup_last_success_timestamp_seconds 1000\n"),
            "{text}"
        );
        assert!(text.contains("backup_last_run_success 0\n"), "{text}");
        assert!(text.contains("backup_last_exit_code 4\n"), "{text}");
        assert!(
            text.contains("# TYPE backup_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("backup_duration_seconds_bucket{le=\"15\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("backup_duration_seconds_bucket{le=\"60\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("backup_duration_seconds_count 2\n"), "{text}");
        assert!(
            text.contains("backup_duration_seconds_sum 20.3\n"),
            "{text}"
        );
        assert_eq!(previous(&path).duration_count, 2);
    }
}
