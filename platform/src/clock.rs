//! The wall clock of the time-window features (TOTP steps, daily quotas), injectable so that
//! tests can cross a 30-second step or a UTC midnight without sleeping.
//!
//! Production code never moves it: [`Clock::advance`] exists for tests, and a clock that was
//! never advanced is exactly [`chrono::Utc::now`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// The system clock plus an offset (zero unless a test advanced it); cheap to clone, and clones
/// share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_seconds: Arc<AtomicI64>,
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_seconds.load(Ordering::Relaxed))
    }

    /// Moves the clock `seconds` ahead (negative: back). For tests only.
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = clock.now();
        other.advance(86_400);
        let after = clock.now();
        assert!((after - before).num_seconds() >= 86_399);
    }
}
