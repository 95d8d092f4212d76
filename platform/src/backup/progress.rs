//! Progress of a backup or restore: an `indicatif` bar when stderr is a terminal, structured log
//! lines at most every `BACKUP_PROGRESS_INTERVAL_SECONDS` (default 10) otherwise, so a CronJob's
//! logs show that a long run is alive and how far it got.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Default spacing of the progress log lines.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// A cheap handle (clone it freely) that counts rows and names the current table.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    log: Option<Arc<LogState>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Progress({} rows)", self.bar.position())
    }
}

const BAR: &str =
    "{spinner} {prefix} [{bar:30}] {pos}/{len} rows ({percent}%, {per_sec}, eta {eta}) {msg}";
const SPINNER: &str = "{spinner} {prefix} {pos} rows ({per_sec}, {elapsed}) {msg}";

struct LogState {
    operation: &'static str,
    interval: Duration,
    last: Mutex<Instant>,
}

impl Progress {
    /// Shows nothing (library callers and tests).
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            log: None,
        }
    }

    /// A bar on a terminal, log lines every `interval` otherwise. `total_rows` gives the bar a
    /// length (restore knows it from the manifest; a backup does not).
    pub fn for_cli(
        operation: &'static str,
        total_rows: Option<u64>,
        interval: Duration,
    ) -> Progress {
        let bar = ProgressBar::with_draw_target(total_rows, ProgressDrawTarget::stderr());
        if !bar.is_hidden() {
            set_template(&bar, if total_rows.is_some() { BAR } else { SPINNER });
            bar.set_prefix(operation);
            bar.enable_steady_tick(Duration::from_millis(200));
            return Progress { bar, log: None };
        }
        Progress {
            bar,
            log: Some(Arc::new(LogState {
                operation,
                interval,
                last: Mutex::new(Instant::now()),
            })),
        }
    }

    /// The interval from `BACKUP_PROGRESS_INTERVAL_SECONDS`, or the default.
    pub fn interval_from_env() -> Duration {
        std::env::var("BACKUP_PROGRESS_INTERVAL_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_INTERVAL, Duration::from_secs)
    }

    /// Sets the number of rows expected (a restore learns it from the manifest).
    pub fn set_total(&self, rows: u64) {
        self.bar.set_length(rows);
        if !self.bar.is_hidden() {
            set_template(&self.bar, BAR);
        }
    }

    /// Names the table being worked on.
    pub fn set_table(&self, table: &str) {
        self.bar.set_message(table.to_owned());
        self.maybe_log();
    }

    /// Counts `rows` more rows done.
    pub fn inc(&self, rows: u64) {
        self.bar.inc(rows);
        if rows > 0 && self.bar.position() % 1024 < rows {
            self.maybe_log();
        }
    }

    /// Rows done so far.
    pub fn rows(&self) -> u64 {
        self.bar.position()
    }

    fn maybe_log(&self) {
        let Some(log) = &self.log else { return };
        let Ok(mut last) = log.last.lock() else {
            return;
        };
        if last.elapsed() < log.interval {
            return;
        }
        *last = Instant::now();
        tracing::info!(
            operation = log.operation,
            progress = true,
            rows = self.bar.position(),
            total_rows = self.bar.length(),
            table = %self.bar.message(),
            elapsed_seconds = self.bar.elapsed().as_secs_f64(),
            "{} in progress",
            log.operation
        );
    }

    /// Ends the bar (the summary line follows on stdout).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn set_template(bar: &ProgressBar, template: &str) {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}
