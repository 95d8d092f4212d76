//! Backup metrics on the operator's own `/metrics`, per TradingPlatform, the way CloudNativePG
//! exports its backups' state: a backup runs as a short-lived Job that no Prometheus scrapes,
//! but the operator sees every Job and is scraped anyway.
//!
//! Backups are expected from the moment the CronJob exists (its creation time is exported, so
//! an alert can tell "never succeeded, and overdue" from "just created"). The success time
//! comes from the Jobs and the CronJob's status (`status.lastSuccessfulBackup`),
//! so it needs nothing from the container. Size, rows and duration come from the backup
//! container's termination message: the Job runs `backup --result-file /dev/termination-log`,
//! which writes one JSON line (platform/src/backup/result_file.rs); the kubelet copies it into
//! the pod's status, where it stays as long as the Job's pod does (the CronJob's history
//! limits). The operator reads the pod once per newly succeeded Job and remembers the result.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Deserialize;

use crate::controller::Context;
use crate::crd::{TradingPlatform, TradingPlatformStatus};
use crate::metrics::Series;
use crate::resources::backup::CONTAINER_NAME;

/// The part of the backup command's result line the operator uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackupResult {
    /// Always `backup`.
    pub operation: String,
    /// Whether the run succeeded.
    pub success: bool,
    /// Wall-clock duration of the run.
    #[serde(default)]
    pub duration_seconds: f64,
    /// Size of the backup in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// Rows in the backup.
    #[serde(default)]
    pub rows: u64,
}

/// The result line in a termination message (the last line that is one; with
/// `FallbackToLogsOnError` a crashed container's message is its log tail, which does not parse).
pub fn parse_message(message: &str) -> Option<BackupResult> {
    message
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<BackupResult>(l.trim()).ok())
        .find(|r| r.operation == "backup")
}

fn condition_time(job: &Job, type_: &str) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let c = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?;
    c.last_transition_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| status.completion_time.as_ref().map(|t| t.0))
}

/// The newest Job that completed successfully, with its completion time.
pub fn newest_succeeded(jobs: &[Job]) -> Option<(&Job, Timestamp)> {
    jobs.iter()
        .filter_map(|j| {
            let done = condition_time(j, "Complete")?;
            let at = j.status.as_ref().and_then(|s| s.completion_time.as_ref());
            Some((j, at.map_or(done, |t| t.0)))
        })
        .max_by_key(|(_, at)| *at)
}

/// When the newest failed Job failed.
pub fn newest_failure(jobs: &[Job]) -> Option<Timestamp> {
    jobs.iter()
        .filter_map(|j| condition_time(j, "Failed"))
        .max()
}

/// The result in the termination message of the backup container of the newest of `pods`
/// that terminated with one.
pub fn result_of(pods: &[Pod]) -> Option<BackupResult> {
    pods.iter()
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses
                .iter()
                .find(|c| c.name == CONTAINER_NAME)?
                .state
                .as_ref()?
                .terminated
                .as_ref()?;
            let result = parse_message(terminated.message.as_deref()?)?;
            Some((terminated.finished_at.as_ref().map(|t| t.0), result))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, r)| r)
}

fn labels(tp: &TradingPlatform) -> [String; 2] {
    [tp.namespace().unwrap_or_default(), tp.name_any()]
}

/// Updates the backup series of `tp` from its backup CronJob and Jobs and its new status.
pub async fn record(
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    status: &TradingPlatformStatus,
    cronjob: Option<&CronJob>,
    jobs: &[Job],
) {
    if !tp.spec.backup.enabled {
        forget(ctx, tp);
        return;
    }
    let [namespace, name] = labels(tp);
    let (tp_ns, tp_name) = (namespace.as_str(), name.as_str());
    let m = &ctx.metrics.platforms;
    if let Some(created) = cronjob.and_then(|c| c.metadata.creation_timestamp.as_ref()) {
        m.set(
            Series::BackupExpectedSince,
            tp_ns,
            tp_name,
            seconds(created.0),
        );
    }
    let succeeded = newest_succeeded(jobs);
    let last_success = [
        status.last_successful_backup.as_ref().map(|t| t.0),
        succeeded.map(|(_, at)| at),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(t) = last_success {
        m.set(Series::BackupLastSuccess, tp_ns, tp_name, seconds(t));
    }
    match newest_failure(jobs) {
        Some(t) => m.set(Series::BackupLastFailure, tp_ns, tp_name, seconds(t)),
        None => m.clear(Series::BackupLastFailure, tp_ns, tp_name),
    }
    let Some((job, _)) = succeeded else { return };
    let job_name = job.name_any();
    let key = format!("{namespace}/{name}");
    let known = ctx
        .backup_results
        .lock()
        .ok()
        .and_then(|c| c.get(&key).filter(|(j, _)| *j == job_name).cloned());
    let result = match known {
        Some((_, r)) => r,
        None => {
            let selector = format!("batch.kubernetes.io/job-name={job_name}");
            let result = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(pods) => result_of(&pods.items),
                Err(e) => {
                    tracing::warn!(job = %job_name, error = %crate::errors::kube_error_words(&e), "cannot read the backup Job's pod for its size and duration");
                    return; // not remembered: tried again at the next reconciliation
                }
            };
            if let Ok(mut c) = ctx.backup_results.lock() {
                c.insert(key, (job_name, result.clone()));
            }
            result
        }
    };
    if let Some(r) = result.filter(|r| r.success) {
        m.set(Series::BackupLastSize, tp_ns, tp_name, r.size_bytes as f64);
        m.set(Series::BackupLastRows, tp_ns, tp_name, r.rows as f64);
        m.set(
            Series::BackupLastDuration,
            tp_ns,
            tp_name,
            r.duration_seconds,
        );
    }
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Removes the backup series of `tp` (deleted, or backups disabled).
pub fn forget(ctx: &Context, tp: &TradingPlatform) {
    let [namespace, name] = labels(tp);
    for series in [
        Series::BackupExpectedSince,
        Series::BackupLastSuccess,
        Series::BackupLastFailure,
        Series::BackupLastSize,
        Series::BackupLastRows,
        Series::BackupLastDuration,
    ] {
        ctx.metrics.platforms.clear(series, &namespace, &name);
    }
    if let Ok(mut c) = ctx.backup_results.lock() {
        c.remove(&format!("{namespace}/{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_is_found_in_a_message() {
        let line = r#"{"operation":"backup","success":true,"exit_code":0,"finished_at":1.5,"duration_seconds":2.5,"size_bytes":1024,"rows":7,"backup":"s3://b/x.tpb"}"#;
        let r = parse_message(&format!("{line}\n")).expect("parses");
        assert_eq!((r.size_bytes, r.rows, r.duration_seconds), (1024, 7, 2.5));
        assert!(parse_message("thread 'main' panicked at …\nerror").is_none());
        assert!(parse_message(r#"{"operation":"restore","success":true}"#).is_none());
    }
}
