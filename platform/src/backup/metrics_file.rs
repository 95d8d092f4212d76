//! The optional Prometheus textfile (`backup --metrics-file PATH`).
//!
//! A backup runs as a short-lived CronJob pod that no Prometheus scrapes, so its outcome is
//! exported the node-exporter "textfile collector" way: a small file of gauges, replaced
//! atomically after every run. `backup_last_success_timestamp_seconds` (a name from the
//! platform's metric contract) survives failed runs: it is carried over from the previous file.

use std::path::Path;

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
    /// Size of the backup file (0 on failure).
    pub size_bytes: u64,
    /// Rows in the backup (0 on failure).
    pub rows: u64,
    /// Old backups deleted by retention.
    pub pruned_files: usize,
}

const LAST_SUCCESS: &str = "backup_last_success_timestamp_seconds";

/// Renders the textfile; `previous_success` is used when this run failed.
pub fn render(o: &RunOutcome, previous_success: Option<f64>) -> String {
    let last_success = if o.success {
        Some(o.finished_at)
    } else {
        previous_success
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    if let Some(t) = last_success {
        gauge(LAST_SUCCESS, "Unix time of the last successful backup.", t);
    }
    gauge(
        "backup_last_run_timestamp_seconds",
        "Unix time the last backup run finished.",
        o.finished_at,
    );
    gauge(
        "backup_last_run_success",
        "1 if the last backup run succeeded, 0 otherwise.",
        if o.success { 1.0 } else { 0.0 },
    );
    gauge(
        "backup_last_exit_code",
        "Exit code of the last backup run.",
        f64::from(o.exit_code),
    );
    gauge(
        "backup_last_duration_seconds",
        "Duration of the last backup run.",
        o.duration_seconds,
    );
    gauge(
        "backup_last_size_bytes",
        "Size of the last backup file.",
        o.size_bytes as f64,
    );
    gauge(
        "backup_last_rows",
        "Rows in the last backup.",
        o.rows as f64,
    );
    gauge(
        "backup_last_pruned_files",
        "Old backups deleted by retention in the last run.",
        o.pruned_files as f64,
    );
    out
}

/// Reads `backup_last_success_timestamp_seconds` from an existing textfile.
pub fn previous_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix(LAST_SUCCESS))
        .filter_map(|rest| rest.trim().parse().ok())
        .next()
}

/// Replaces the textfile atomically (temporary file + rename).
pub fn write(path: &Path, outcome: &RunOutcome) -> std::io::Result<()> {
    let text = render(outcome, previous_success(path));
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
    fn a_failed_run_keeps_the_last_success_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backup.prom");
        let ok = RunOutcome {
            finished_at: 1000.0,
            success: true,
            rows: 5,
            ..Default::default()
        };
        write(&path, &ok).expect("write");
        assert_eq!(previous_success(&path), Some(1000.0));
        let failed = RunOutcome {
            finished_at: 2000.0,
            success: false,
            exit_code: 4,
            ..Default::default()
        };
        write(&path, &failed).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("backup_last_success_timestamp_seconds 1000\n"),
            "{text}"
        );
        assert!(text.contains("backup_last_run_success 0\n"));
        assert!(text.contains("backup_last_exit_code 4\n"));
    }
}
