//! `status.archive` and the `ArchiveHealthy` condition: with `spec.backup.archive.enabled` the
//! operator reads the platform pods' `/metrics` (through [`Context::scraper`], the canary
//! analysis's HTTP client) for `archive_up` (1 while the pod's last shipping turn succeeded) and
//! `archive_last_shipped_timestamp_seconds` (when it last shipped a segment).
//!
//! Healthy: some pod reports `archive_up 1` and the newest shipment over the pods is at most
//! [`STALE_INTERVALS`] × `intervalSeconds` old (the automatic restore points, written every
//! `markIntervalMs`, give every turn something to ship, so an idle database ships too).
//!
//! Quiet at scale: the pods of one TradingPlatform are read at most once per [`SCRAPE_EVERY`],
//! during reconciliations that happen anyway (no extra requeue); in between the status keeps
//! what the last read found. Nothing is read while archiving is off.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::controller::{Context, set_condition};
use crate::crd::{
    ArchiveStatus, CONDITION_ARCHIVE_HEALTHY, TradingPlatform, TradingPlatformStatus,
};
use crate::errors::kube_error_words;
use crate::resources::Parent;
use crate::resources::deployment::archive_storage;

/// Shortest time between two reads of one TradingPlatform's pods.
pub const SCRAPE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);
/// A last shipment older than this many `intervalSeconds` is stale.
pub const STALE_INTERVALS: i64 = 5;

/// Condition reason: a pod reports `archive_up 1` and shipped recently.
pub const REASON_ARCHIVING: &str = "Archiving";
/// Condition reason: no pod reports `archive_up 1`.
pub const REASON_ARCHIVE_DOWN: &str = "ArchiveDown";
/// Condition reason: the newest shipment is older than five intervals (or there was none).
pub const REASON_ARCHIVE_STALE: &str = "ArchiveStale";
/// Condition reason: no pod's `/metrics` could be read.
pub const REASON_METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
/// Condition reason: no platform pod runs.
pub const REASON_NO_PODS: &str = "NoPods";

/// When each TradingPlatform's (`ns/name`) pods were last read.
pub type LastScrapes = HashMap<String, Timestamp>;

/// What one pod's `/metrics` says about archiving.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PodArchive {
    /// `archive_up`.
    pub up: Option<f64>,
    /// `archive_last_shipped_timestamp_seconds` (0: none yet).
    pub last_shipped: Option<f64>,
    /// `archive_last_shipped_segment` (0: none yet).
    pub last_segment: Option<f64>,
}

/// Parses the archive gauges from a pod's `/metrics` text.
pub fn parse(text: &str) -> Result<PodArchive, String> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut p = PodArchive::default();
    for s in scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        match s.metric.as_str() {
            "archive_up" => p.up = Some(v),
            "archive_last_shipped_timestamp_seconds" => p.last_shipped = Some(v),
            "archive_last_shipped_segment" => p.last_segment = Some(v),
            _ => {}
        }
    }
    Ok(p)
}

/// What the pods say together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Running platform pods with an IP.
    pub pods: usize,
    /// Their answers (pods whose `/metrics` could be read).
    pub answers: Vec<PodArchive>,
    /// The reads that failed, `pod: why`.
    pub failures: Vec<String>,
}

/// The status and the condition (status, reason, message) for `obs` at `now`. Pure.
pub fn judge(
    obs: &Observation,
    interval_seconds: i32,
    now: Timestamp,
) -> (Option<ArchiveStatus>, &'static str, &'static str, String) {
    let allowed = STALE_INTERVALS * i64::from(interval_seconds.max(1));
    if obs.pods == 0 {
        return (
            None,
            "Unknown",
            REASON_NO_PODS,
            "no platform pod runs, so nothing ships the change log".to_string(),
        );
    }
    if obs.answers.is_empty() {
        return (
            None,
            "False",
            REASON_METRICS_UNAVAILABLE,
            format!(
                "cannot read /metrics of any of the {} platform pod(s): {}",
                obs.pods,
                obs.failures.join("; ")
            ),
        );
    }
    let up = obs.answers.iter().filter(|a| a.up == Some(1.0)).count();
    let last = obs
        .answers
        .iter()
        .filter_map(|a| a.last_shipped)
        .filter(|t| *t > 0.0)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    let last_at = last.and_then(|t| Timestamp::from_second(t as i64).ok());
    let fresh = last_at.is_some_and(|t| now.as_second() - t.as_second() <= allowed);
    let healthy = up > 0 && fresh;
    let last_segment = obs
        .answers
        .iter()
        .filter_map(|a| a.last_segment)
        .filter(|n| *n >= 1.0)
        .fold(None, |m: Option<f64>, n| Some(m.map_or(n, |m| m.max(n))));
    let status = Some(ArchiveStatus {
        last_shipped_at: last_at.map(Time),
        last_shipped_segment: last_segment.map(|n| n as i64),
        healthy,
    });
    let shipped = match last_at {
        Some(t) => match last_segment {
            Some(n) => format!("the last segment, {}, was shipped at {t}", n as i64),
            None => format!("the last segment was shipped at {t}"),
        },
        None => "no segment has been shipped yet".to_string(),
    };
    let n = obs.answers.len();
    if up == 0 {
        return (
            status,
            "False",
            REASON_ARCHIVE_DOWN,
            format!(
                "none of the {n} platform pod(s) read reports archive_up 1: their last shipping turn failed (check the pods' logs: bucket, credentials, BACKUP_ENCRYPTION_KEY); {shipped}"
            ),
        );
    }
    if !fresh {
        return (
            status,
            "False",
            REASON_ARCHIVE_STALE,
            format!(
                "{shipped}, longer ago than {STALE_INTERVALS} × intervalSeconds ({allowed}s), although {up} of {n} pod(s) report archive_up 1"
            ),
        );
    }
    (
        status,
        "True",
        REASON_ARCHIVING,
        format!(
            "{up} of {n} pod(s) report archive_up 1; {shipped}, within {STALE_INTERVALS} × intervalSeconds ({allowed}s)"
        ),
    )
}

fn key(tp: &TradingPlatform) -> String {
    format!("{}/{}", tp.namespace().unwrap_or_default(), tp.name_any())
}

fn running_ip(p: &Pod) -> Option<String> {
    let s = p.status.as_ref()?;
    if matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None; // finished: it ships nothing any more
    }
    s.pod_ip.clone()
}

/// Reads the pods (if due) and writes `status.archive` and `ArchiveHealthy` into `status`;
/// with archiving off, removes both. Between reads the status keeps what the last read found.
pub async fn update(
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    status: &mut TradingPlatformStatus,
) {
    let Some(archive) = tp
        .spec
        .backup
        .archive
        .as_ref()
        .filter(|_| archive_storage(&tp.spec).is_some())
    else {
        status.archive = None;
        status
            .conditions
            .retain(|c| c.type_ != CONDITION_ARCHIVE_HEALTHY);
        forget(ctx, tp);
        return;
    };
    let now = ctx.now();
    let k = key(tp);
    let has_condition = status
        .conditions
        .iter()
        .any(|c| c.type_ == CONDITION_ARCHIVE_HEALTHY);
    let due = ctx.archive_scrapes.lock().map_or(true, |m| {
        m.get(&k).is_none_or(|at| {
            now.as_second() - at.as_second() >= SCRAPE_EVERY.as_secs() || !has_condition
        })
    });
    if !due {
        return;
    }
    if let Ok(mut m) = ctx.archive_scrapes.lock() {
        m.insert(k, now);
    }
    let obs = observe(ctx, tp, ns).await;
    let (archive_status, s, reason, message) = judge(&obs, archive.interval_seconds, now);
    status.archive = archive_status;
    set_condition(
        &mut status.conditions,
        CONDITION_ARCHIVE_HEALTHY,
        s,
        reason,
        &message,
        tp.metadata.generation,
        now,
    );
}

/// Lists the running platform pods and reads each one's `/metrics`, all at once.
async fn observe(ctx: &Context, tp: &TradingPlatform, ns: &str) -> Observation {
    let Ok(parent) = Parent::of(tp) else {
        return Observation::default();
    };
    let pods = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&parent.selector_string()))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            return Observation {
                pods: 1,
                answers: Vec::new(),
                failures: vec![format!("cannot list the pods: {}", kube_error_words(&e))],
            };
        }
    };
    let c = &tp.spec.rollout.canary;
    let targets: Vec<(String, String)> = pods
        .iter()
        .filter_map(|p| {
            let ip = running_ip(p)?;
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            Some((
                p.name_any(),
                format!("http://{host}:{}{}", c.metrics_port, c.metrics_path),
            ))
        })
        .collect();
    let reads = futures::future::join_all(targets.iter().map(|(name, url)| {
        let scrape = (ctx.scraper)(url.clone());
        async move { (name.clone(), scrape.await.and_then(|t| parse(&t))) }
    }))
    .await;
    let mut obs = Observation {
        pods: targets.len(),
        ..Observation::default()
    };
    for (name, r) in reads {
        match r {
            Ok(a) => obs.answers.push(a),
            Err(e) => obs.failures.push(format!("{name}: {e}")),
        }
    }
    obs
}

/// Forgets `tp`'s last read (deleted, or archiving off).
pub fn forget(ctx: &Context, tp: &TradingPlatform) {
    if let Ok(mut m) = ctx.archive_scrapes.lock() {
        m.remove(&key(tp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn pod(up: f64, last: f64) -> PodArchive {
        PodArchive {
            up: Some(up),
            last_shipped: Some(last),
            last_segment: None,
        }
    }

    #[test]
    fn the_gauges_are_parsed() {
        let text = "# TYPE archive_up gauge\narchive_up 1\n# TYPE archive_last_shipped_timestamp_seconds gauge\narchive_last_shipped_timestamp_seconds 1795003190\nhttp_requests_total{route=\"/x\"} 3\n";
        assert_eq!(parse(text).unwrap(), pod(1.0, 1795003190.0));
        assert_eq!(parse("other 1\n").unwrap(), PodArchive::default());
    }

    #[test]
    fn the_newest_segment_number_over_the_pods_is_reported() {
        let t = now().as_second() as f64;
        let text = "archive_up 1\narchive_last_shipped_segment 41\n";
        assert_eq!(parse(text).unwrap().last_segment, Some(41.0));
        let with = |n: f64| PodArchive {
            last_segment: Some(n),
            ..pod(1.0, t - 1.0)
        };
        let obs = Observation {
            pods: 3,
            answers: vec![with(41.0), with(0.0), with(39.0)],
            failures: vec![],
        };
        let (s, _, _, m) = judge(&obs, 5, now());
        assert_eq!(s.unwrap().last_shipped_segment, Some(41));
        assert!(m.contains("the last segment, 41,"), "{m}");
        let none = Observation {
            pods: 1,
            answers: vec![with(0.0)],
            failures: vec![],
        };
        assert_eq!(judge(&none, 5, now()).0.unwrap().last_shipped_segment, None);
    }

    #[test]
    fn healthy_needs_one_pod_up_and_a_recent_shipment() {
        let t = now().as_second() as f64;
        let obs = |answers: Vec<PodArchive>| Observation {
            pods: answers.len().max(1),
            answers,
            failures: vec!["p: connection refused".into()],
        };
        // Max over the pods; any pod up is enough.
        let (s, st, r, m) = judge(
            &obs(vec![pod(0.0, t - 100.0), pod(1.0, t - 10.0)]),
            5,
            now(),
        );
        assert_eq!((st, r), ("True", REASON_ARCHIVING));
        let s = s.unwrap();
        assert!(s.healthy);
        assert_eq!(s.last_shipped_at.unwrap().0.as_second(), t as i64 - 10);
        assert!(m.contains("1 of 2 pod(s)"), "{m}");
        // Exactly 5 intervals old is still fresh; one second more is stale.
        assert_eq!(judge(&obs(vec![pod(1.0, t - 25.0)]), 5, now()).1, "True");
        let (s, st, r, _) = judge(&obs(vec![pod(1.0, t - 26.0)]), 5, now());
        assert_eq!((st, r), ("False", REASON_ARCHIVE_STALE));
        assert!(!s.unwrap().healthy);
        // Nobody up.
        let (_, st, r, _) = judge(&obs(vec![pod(0.0, t), pod(0.0, t)]), 5, now());
        assert_eq!((st, r), ("False", REASON_ARCHIVE_DOWN));
        // Never shipped (0).
        let (s, st, r, m) = judge(&obs(vec![pod(1.0, 0.0)]), 5, now());
        assert_eq!((st, r), ("False", REASON_ARCHIVE_STALE));
        assert!(s.unwrap().last_shipped_at.is_none());
        assert!(m.contains("no segment has been shipped yet"), "{m}");
        // Nothing readable, no pods.
        let (s, st, r, m) = judge(&obs(vec![]), 5, now());
        assert_eq!((s, st, r), (None, "False", REASON_METRICS_UNAVAILABLE));
        assert!(m.contains("connection refused"), "{m}");
        let none = Observation::default();
        assert_eq!(judge(&none, 5, now()).1, "Unknown");
    }
}
