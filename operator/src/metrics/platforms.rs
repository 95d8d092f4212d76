//! Per-TradingPlatform metrics kept as one compact table and turned into Prometheus series only
//! when `/metrics` is scraped.
//!
//! Why not the prometheus crate's `GaugeVec`: each of its series keeps its own copy of the
//! metric's descriptor and its label pairs, about 860 bytes a series (measured with 0.14). The
//! operator exported eleven such series per TradingPlatform (the managed objects per kind, the
//! backup figures, the canary weight): about 9 KiB a platform, 9 MiB at 1,000 of the 40 MiB the
//! operator may use (`scripts/bench-operator.sh`). Here a platform costs one row: its key, seven
//! numbers and a bit set, and the label pairs exist only while a scrape encodes them. The crate's
//! `Collector` trait is the documented way to do this ("custom collectors").
//!
//! `tradeplane_operator_managed_objects` is exported per kind only (the sum over platforms): one
//! series per platform and kind was 10,000 series at 1,000 platforms, for a figure that
//! kube-state-metrics gives per object anyway, and the alerts only ever summed it by kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// A per-TradingPlatform gauge of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Unix time the backup CronJob was created (backups expected since).
    BackupExpectedSince,
    /// Unix time of the last successful backup.
    BackupLastSuccess,
    /// Unix time the newest failed backup Job failed, while that Job exists.
    BackupLastFailure,
    /// Size in bytes of the last successful backup.
    BackupLastSize,
    /// Rows in the last successful backup.
    BackupLastRows,
    /// Duration of the last successful backup run.
    BackupLastDuration,
    /// The running canary's weight (0 without one).
    CanaryWeight,
}

/// Every series with its name and help, in exposition order.
const SERIES: [(Series, &str, &str); 7] = [
    (
        Series::BackupExpectedSince,
        "tradeplane_operator_backup_expected_since_timestamp_seconds",
        "Unix time the backup CronJob of each TradingPlatform was created (backups expected since)",
    ),
    (
        Series::BackupLastSuccess,
        "tradeplane_operator_backup_last_success_timestamp_seconds",
        "Unix time of the last successful backup of each TradingPlatform",
    ),
    (
        Series::BackupLastFailure,
        "tradeplane_operator_backup_last_failure_timestamp_seconds",
        "Unix time the newest failed backup Job of each TradingPlatform failed (while it exists)",
    ),
    (
        Series::BackupLastSize,
        "tradeplane_operator_backup_last_size_bytes",
        "Size of the last successful backup, from the backup Job's termination message",
    ),
    (
        Series::BackupLastRows,
        "tradeplane_operator_backup_last_rows",
        "Rows in the last successful backup, from the backup Job's termination message",
    ),
    (
        Series::BackupLastDuration,
        "tradeplane_operator_backup_last_duration_seconds",
        "Duration of the last successful backup run, from the backup Job's termination message",
    ),
    (
        Series::CanaryWeight,
        "tradeplane_operator_canary_weight_percent",
        "Weight of the running canary of each TradingPlatform (0: none)",
    ),
];

const MANAGED_NAME: &str = "tradeplane_operator_managed_objects";
const MANAGED_HELP: &str = "Objects the operator manages, per kind (summed over TradingPlatforms)";

/// One TradingPlatform's figures: `NaN` where a series has no value (not exported).
#[derive(Debug, Clone, Copy)]
struct Row {
    values: [f64; SERIES.len()],
    /// Bit `i` set: the platform has an object of `kinds[i]`.
    managed: u32,
}

impl Row {
    const EMPTY: Row = Row {
        values: [f64::NAN; SERIES.len()],
        managed: 0,
    };

    fn is_empty(&self) -> bool {
        self.managed == 0 && self.values.iter().all(|v| v.is_nan())
    }
}

/// The table and the collector `/metrics` reads it through; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct PlatformMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kinds of managed objects, in bit order (at most 32).
    kinds: Vec<&'static str>,
    /// Descriptors, one per series and then the managed-objects family; the registry checks them.
    descs: Vec<Desc>,
    rows: Mutex<BTreeMap<(String, String), Row>>,
}

impl PlatformMetrics {
    /// A table whose managed-objects family counts `kinds` (at most 32).
    pub fn new(kinds: &[&'static str]) -> Result<Self, prometheus::Error> {
        if kinds.len() > 32 {
            return Err(prometheus::Error::Msg(
                "at most 32 managed kinds fit the table's bit set".into(),
            ));
        }
        let mut descs = Vec::with_capacity(SERIES.len() + 1);
        for (_, name, help) in SERIES {
            descs.push(Desc::new(
                name.into(),
                help.into(),
                vec!["namespace".into(), "tradingplatform".into()],
                Default::default(),
            )?);
        }
        descs.push(Desc::new(
            MANAGED_NAME.into(),
            MANAGED_HELP.into(),
            vec!["kind".into()],
            Default::default(),
        )?);
        Ok(Self {
            inner: Arc::new(Inner {
                kinds: kinds.to_vec(),
                descs,
                rows: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    fn rows(&self) -> MutexGuard<'_, BTreeMap<(String, String), Row>> {
        // A panic while holding the lock leaves plain numbers behind: still consistent.
        self.inner
            .rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, namespace: &str, name: &str, f: impl FnOnce(&mut Row)) {
        let mut rows = self.rows();
        let key = (namespace.to_string(), name.to_string());
        let row = rows.entry(key.clone()).or_insert(Row::EMPTY);
        f(row);
        if row.is_empty() {
            rows.remove(&key);
        }
    }

    /// Sets `series` of the TradingPlatform `namespace/name`.
    pub fn set(&self, series: Series, namespace: &str, name: &str, value: f64) {
        self.update(namespace, name, |r| r.values[index(series)] = value);
    }

    /// Removes `series` of the TradingPlatform (no longer exported for it).
    pub fn clear(&self, series: Series, namespace: &str, name: &str) {
        if self
            .rows()
            .contains_key(&(namespace.to_string(), name.to_string()))
        {
            self.update(namespace, name, |r| r.values[index(series)] = f64::NAN);
        }
    }

    /// The value of `series` for the TradingPlatform, if it has one.
    pub fn get(&self, series: Series, namespace: &str, name: &str) -> Option<f64> {
        let rows = self.rows();
        let row = rows.get(&(namespace.to_string(), name.to_string()))?;
        Some(row.values[index(series)]).filter(|v| !v.is_nan())
    }

    /// Records which kinds the TradingPlatform has objects of (`present[i]` for `kinds[i]`).
    pub fn set_managed(&self, namespace: &str, name: &str, present: &[bool]) {
        let mask = present
            .iter()
            .take(32)
            .enumerate()
            .filter(|(_, on)| **on)
            .fold(0u32, |m, (i, _)| m | (1 << i));
        self.update(namespace, name, |r| r.managed = mask);
    }

    /// Forgets the TradingPlatform's managed objects (it is deleted).
    pub fn clear_managed(&self, namespace: &str, name: &str) {
        if self
            .rows()
            .contains_key(&(namespace.to_string(), name.to_string()))
        {
            self.update(namespace, name, |r| r.managed = 0);
        }
    }

    /// Number of TradingPlatforms with a row (for tests and the scale benchmark).
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    /// Whether no TradingPlatform has a row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn index(series: Series) -> usize {
    SERIES
        .iter()
        .position(|(s, _, _)| *s == series)
        .unwrap_or_default()
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels);
    m
}

fn family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

impl Collector for PlatformMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let rows = self.rows();
        let mut out = Vec::with_capacity(SERIES.len() + 1);
        for (i, (_, name, help)) in SERIES.iter().enumerate() {
            let metrics: Vec<Metric> = rows
                .iter()
                .filter(|(_, r)| !r.values[i].is_nan())
                .map(|((ns, tp), r)| {
                    gauge(
                        vec![label("namespace", ns), label("tradingplatform", tp)],
                        r.values[i],
                    )
                })
                .collect();
            // The registry's encoder skips empty families; an absent series is what alerts on
            // "never seen" expect.
            if !metrics.is_empty() {
                out.push(family(name, help, metrics));
            }
        }
        // Every kind, zeros included: `sum(...{kind="CronJob"}) > 0` is false, not absent, when
        // no platform has a CronJob.
        let managed = self
            .inner
            .kinds
            .iter()
            .enumerate()
            .map(|(bit, kind)| {
                let n = rows
                    .values()
                    .filter(|r| r.managed & (1 << bit) != 0)
                    .count();
                gauge(vec![label("kind", kind)], n as f64)
            })
            .collect();
        out.push(family(MANAGED_NAME, MANAGED_HELP, managed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn text(m: &PlatformMetrics) -> String {
        let registry = Registry::new();
        registry.register(Box::new(m.clone())).expect("register");
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .expect("encode");
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn series_are_exported_per_platform_and_managed_objects_per_kind() {
        let m = PlatformMetrics::new(&["Deployment", "CronJob"]).expect("table");
        m.set(Series::BackupLastSuccess, "ns", "a", 1000.0);
        m.set(Series::CanaryWeight, "ns", "b", 20.0);
        m.set_managed("ns", "a", &[true, true]);
        m.set_managed("ns", "b", &[true, false]);
        let t = text(&m);
        assert!(
            t.contains(r#"tradeplane_operator_backup_last_success_timestamp_seconds{namespace="ns",tradingplatform="a"} 1000"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tradeplane_operator_canary_weight_percent{namespace="ns",tradingplatform="b"} 20"#),
            "{t}"
        );
        assert!(
            !t.contains(r#"canary_weight_percent{namespace="ns",tradingplatform="a"}"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tradeplane_operator_managed_objects{kind="Deployment"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"tradeplane_operator_managed_objects{kind="CronJob"} 1"#),
            "{t}"
        );
        assert!(!t.contains("backup_last_rows"), "{t}");
        assert_eq!(m.get(Series::BackupLastSuccess, "ns", "a"), Some(1000.0));
        assert_eq!(m.get(Series::BackupLastRows, "ns", "a"), None);
    }

    #[test]
    fn a_platform_whose_series_are_all_cleared_leaves_no_row() {
        let m = PlatformMetrics::new(&["Deployment"]).expect("table");
        m.set(Series::BackupLastFailure, "ns", "a", 5.0);
        m.set_managed("ns", "a", &[true]);
        assert_eq!(m.len(), 1);
        m.clear(Series::BackupLastFailure, "ns", "a");
        assert_eq!(m.len(), 1, "still has a managed object");
        assert!(!text(&m).contains("backup_last_failure"));
        m.clear_managed("ns", "a");
        assert!(m.is_empty());
        assert!(
            text(&m).contains(r#"tradeplane_operator_managed_objects{kind="Deployment"} 0"#),
            "zero, not absent"
        );
        // Clearing what was never set creates nothing.
        m.clear(Series::CanaryWeight, "ns", "z");
        assert!(m.is_empty());
    }

    #[test]
    fn the_registry_accepts_the_table_next_to_other_metrics() {
        let registry = Registry::new();
        let m = PlatformMetrics::new(&["Deployment"]).expect("table");
        registry.register(Box::new(m.clone())).expect("register");
        let other = prometheus::IntGauge::new("tradeplane_operator_leader", "leader").expect("g");
        registry.register(Box::new(other)).expect("register");
        // Registering the same family twice is refused, as for any collector.
        assert!(registry.register(Box::new(m)).is_err());
    }
}
