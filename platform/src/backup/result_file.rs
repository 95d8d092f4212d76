//! The optional one-line JSON result (`backup --result-file PATH`), for the operator.
//!
//! In Kubernetes the backup Job points it at the container's termination message
//! (`/dev/termination-log`): the kubelet copies that file (at most 4096 bytes) into the pod's
//! status, where the operator reads it and exports the backup's size, duration and outcome on
//! its own `/metrics` (docs/operator.md). The file is written in place, not renamed: the kubelet
//! bind-mounts it, and a rename over a mount point fails.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest error text kept (the whole line must stay well under the 4096-byte limit).
const MAX_ERROR_CHARS: usize = 1000;

/// What one backup run reports. Field names are a contract with the operator
/// (operator/src/backup_metrics.rs parses them; tests/tests/operator_platform_contract.rs
/// checks both sides agree).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `backup`.
    pub operation: String,
    /// Whether the run succeeded.
    pub success: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// When the run finished (Unix seconds).
    pub finished_at: f64,
    /// Wall-clock duration of the run.
    pub duration_seconds: f64,
    /// Size of the backup in bytes (0 on failure).
    pub size_bytes: u64,
    /// Rows in the backup (0 on failure).
    pub rows: u64,
    /// The backup written (file path or `s3://` URL), on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Why it failed (shortened), on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunResult {
    /// The JSON line written (errors shortened so the line fits a termination message).
    pub fn to_line(&self) -> String {
        let mut r = self.clone();
        if let Some(e) = &mut r.error
            && e.chars().count() > MAX_ERROR_CHARS
        {
            *e = e.chars().take(MAX_ERROR_CHARS).collect::<String>() + "…";
        }
        // Serialising plain fields cannot fail; fall back to a minimal line if it ever does.
        serde_json::to_string(&r).unwrap_or_else(|_| {
            format!(
                "{{\"operation\":\"backup\",\"success\":{},\"exit_code\":{}}}",
                r.success, r.exit_code
            )
        }) + "\n"
    }
}

/// Writes `result` to `path` in place (truncating it).
pub fn write(path: &Path, result: &RunResult) -> std::io::Result<()> {
    std::fs::write(path, result.to_line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_round_trips_and_stays_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("termination-log");
        std::fs::write(&path, "x".repeat(5000)).expect("old content");
        let r = RunResult {
            operation: "backup".into(),
            success: false,
            exit_code: 7,
            finished_at: 1_700_000_000.5,
            duration_seconds: 1.25,
            error: Some("é".repeat(3000)),
            ..Default::default()
        };
        write(&path, &r).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.len() < 4096, "{} bytes", text.len());
        assert_eq!(text.lines().count(), 1);
        let back: RunResult = serde_json::from_str(text.trim()).expect("parses");
        assert_eq!(back.exit_code, 7);
        assert_eq!(back.error.map(|e| e.chars().count()), Some(1001));
        assert!(!text.contains("backup\":"), "absent fields are left out");
    }
}
