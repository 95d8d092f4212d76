//! How often backups should succeed, from the backup CronJob's schedule.
//!
//! `BackupHealthy` turns false when the last successful backup is older than twice the schedule
//! interval; the interval of a cron expression is not fixed (weekdays only, month ends), so we
//! take the longest gap between the next few fire times. Parsing and fire times come from the
//! `croner` crate; this module only narrows it to what a Kubernetes CronJob accepts.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::Date;

/// croner, configured as a CronJob reads a schedule.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        // `5/10` (from 5 to the end in steps of 10), which robfig/cron and so a CronJob take.
        .sloppy_ranges(true)
        .build()
}

/// The fields of a schedule, for messages that say which one is wrong.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-6 or SUN-SAT"),
];

/// Which field of a 5-field schedule croner refuses, tried one at a time with `*` elsewhere
/// (croner's own errors do not name the field).
fn culprit(expr: &str) -> Option<String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    fields.iter().enumerate().find_map(|(i, field)| {
        let mut alone = ["*"; 5];
        alone[i] = field;
        let (name, range) = FIELDS[i];
        parser()
            .parse(&alone.join(" "))
            .err()
            .map(|e| format!("{name} {field:?} is invalid (allowed: {range}; {e})"))
    })
}

/// A parsed cron schedule (minute hour day-of-month month day-of-week), as a CronJob takes it.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
}

impl CronSchedule {
    /// Parses a 5-field expression or a macro (`@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`, `@annually`).
    ///
    /// croner also understands Quartz extensions (`L`, `W`, `#`) that the Kubernetes CronJob
    /// controller does not; they are refused here as the CRD's validation refuses them, so the
    /// operator never builds a CronJob the API server or the controller would reject. When both
    /// day fields are restricted, either may match (Vixie cron, and Kubernetes).
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expanded = expr.trim();
        if !expanded.starts_with('@') {
            let fields = expanded.split_whitespace().count();
            if fields != 5 {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {fields} in {expr:?}"
                ));
            }
            if let Some(c) = expanded
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || " *,-/?".contains(*c)))
            {
                return Err(format!(
                    "{c:?} is not allowed in a CronJob schedule ({expr:?})"
                ));
            }
            let quartz = expanded.split_whitespace().take(3).any(|f| {
                f.split([',', '-', '/'])
                    .any(|t| t.eq_ignore_ascii_case("L") || t.to_ascii_uppercase().ends_with('W'))
            });
            if quartz {
                return Err(format!(
                    "L and W are Quartz extensions a CronJob does not accept ({expr:?})"
                ));
            }
            // Day of week is 0-6 for a CronJob (croner also takes 7 for Sunday).
            let dow = expanded.split_whitespace().nth(4).unwrap_or("*");
            let past_saturday = dow
                .split(',')
                .flat_map(|part| part.split('/').next().unwrap_or("").split('-'))
                .any(|t| t.parse::<u32>().is_ok_and(|d| d > 6));
            if past_saturday {
                return Err(format!(
                    "{expr:?}: day of week {dow:?} is invalid (allowed: 0-6 or SUN-SAT)"
                ));
            }
        }
        let cron = parser()
            .parse(expanded)
            .map_err(|e| format!("{expr:?}: {}", culprit(expanded).unwrap_or(e.to_string())))?;
        Ok(Self { cron })
    }

    /// The longest gap, in seconds, between consecutive fire times among the next few firings
    /// from the start of `from` (UTC). `None` if it fires fewer than twice in ~2 years.
    pub fn max_interval_seconds(&self, from: Date) -> Option<i64> {
        const WANT: usize = 9;
        let start = from.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
        let horizon = start.timestamp().as_second() + 800 * 86_400;
        let fires: Vec<i64> = self
            .cron
            .iter_from(start, croner::Direction::Forward)
            .map(|t| t.timestamp().as_second())
            .take_while(|&t| t <= horizon)
            .take(WANT)
            .collect();
        fires.windows(2).map(|w| w[1] - w[0]).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Date {
        jiff::civil::date(2026, 1, 5) // a Monday
    }

    #[test]
    fn daily_is_a_day() {
        let s = CronSchedule::parse("0 2 * * *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(86_400));
        for m in ["@daily", "0 0 * * *"] {
            assert_eq!(
                CronSchedule::parse(m).unwrap().max_interval_seconds(day()),
                Some(86_400),
                "{m}"
            );
        }
        assert_eq!(
            CronSchedule::parse("@hourly")
                .unwrap()
                .max_interval_seconds(day()),
            Some(3600)
        );
    }

    #[test]
    fn steps_lists_and_ranges() {
        let s = CronSchedule::parse("*/15 * * * *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(900));
        let s = CronSchedule::parse("5/25 * * * *").unwrap();
        assert_eq!(
            s.max_interval_seconds(day()),
            Some(25 * 60),
            "5, 30, 55, then 5 past"
        );
        let s = CronSchedule::parse("0 1,13 * * *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(12 * 3600));
        // weekdays only: the weekend gap (Fri -> Mon) is the longest
        let s = CronSchedule::parse("30 3 * * MON-FRI").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(3 * 86_400));
        let s = CronSchedule::parse("0 0 * * 0").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(7 * 86_400));
        // both day fields restricted: either matches (the 1st, and every Monday)
        let s = CronSchedule::parse("0 0 1 * MON").unwrap();
        assert!(s.max_interval_seconds(day()).unwrap() <= 7 * 86_400);
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "0 2 * *",
            "61 2 * * *",
            "0 2 * * */0",
            "0 5-2 * * *",
            "x 2 * * *",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 1#2",
            "0 0 0 2 * *",
            "0 0 * * 7",
            "@midnight",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn never_firing_schedule_has_no_interval() {
        let s = CronSchedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), None);
    }
}
