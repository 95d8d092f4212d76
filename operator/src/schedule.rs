//! Minimal 5-field cron parser, used to tell how often backups should succeed.
//!
//! `BackupHealthy` turns false when the last successful backup is older than twice the schedule
//! interval; the interval of a cron expression is not fixed (weekdays only, month ends), so we
//! take the longest gap between the next few fire times.

use jiff::civil::Date;

/// A parsed cron schedule (minute hour day-of-month month day-of-week).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days_of_month: Vec<bool>,
    months: Vec<bool>,
    days_of_week: Vec<bool>,
    dom_restricted: bool,
    dow_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronSchedule {
    /// Parses a 5-field expression or a macro (`@hourly`, `@daily`, `@midnight`, `@weekly`,
    /// `@monthly`, `@yearly`, `@annually`).
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expanded = match expr.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {} in {expr:?}",
                fields.len()
            ));
        }
        let mut dow = field(fields[4], 0, 7, &DAYS, 0, "day-of-week")?;
        if dow[7] {
            dow[0] = true; // 7 is Sunday too
        }
        dow.truncate(7);
        Ok(Self {
            minutes: field(fields[0], 0, 59, &[], 0, "minute")?,
            hours: field(fields[1], 0, 23, &[], 0, "hour")?,
            days_of_month: field(fields[2], 1, 31, &[], 1, "day-of-month")?,
            months: field(fields[3], 1, 12, &MONTHS, 1, "month")?,
            days_of_week: dow,
            dom_restricted: !matches!(fields[2], "*" | "?"),
            dow_restricted: !matches!(fields[4], "*" | "?"),
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let month = usize::try_from(d.month()).unwrap_or(0);
        if !self.months.get(month).copied().unwrap_or(false) {
            return false;
        }
        let dom = self
            .days_of_month
            .get(usize::try_from(d.day()).unwrap_or(0))
            .copied()
            .unwrap_or(false);
        let dow = self
            .days_of_week
            .get(usize::try_from(d.weekday().to_sunday_zero_offset()).unwrap_or(0))
            .copied()
            .unwrap_or(false);
        // Standard cron: when both day fields are restricted, either may match.
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The longest gap, in seconds, between consecutive fire times among the next few firings
    /// after the start of `from` (UTC days). `None` if it fires fewer than twice in ~2 years.
    pub fn max_interval_seconds(&self, from: Date) -> Option<i64> {
        const WANT: usize = 9;
        let mut fires: Vec<i64> = Vec::new();
        let mut day = from;
        for day_index in 0..800i64 {
            if self.day_matches(day) {
                for (h, _) in self.hours.iter().enumerate().filter(|(_, on)| **on) {
                    for (m, _) in self.minutes.iter().enumerate().filter(|(_, on)| **on) {
                        let minute_of_day = i64::try_from(h * 60 + m).unwrap_or(0);
                        fires.push(day_index * 1440 + minute_of_day);
                        if fires.len() >= WANT {
                            break;
                        }
                    }
                    if fires.len() >= WANT {
                        break;
                    }
                }
            }
            if fires.len() >= WANT {
                break;
            }
            day = day.tomorrow().ok()?;
        }
        fires.windows(2).map(|w| (w[1] - w[0]) * 60).max()
    }
}

fn field(
    text: &str,
    min: usize,
    max: usize,
    names: &[&str],
    name_base: usize,
    what: &str,
) -> Result<Vec<bool>, String> {
    let mut set = vec![false; max + 1];
    let value = |s: &str| -> Result<usize, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i + name_base);
        }
        let v: usize = s
            .parse()
            .map_err(|_| format!("{what}: {s:?} is not a number"))?;
        if v < min || v > max {
            return Err(format!("{what}: {v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: usize = s
                    .parse()
                    .map_err(|_| format!("{what}: step {s:?} is not a number"))?;
                if step == 0 {
                    return Err(format!("{what}: step must be positive"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("{what}: range {lo}-{hi} is backwards"));
        }
        for v in (lo..=hi).step_by(step) {
            set[v] = true;
        }
    }
    Ok(set)
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
        assert_eq!(
            CronSchedule::parse("@daily")
                .unwrap()
                .max_interval_seconds(day()),
            Some(86_400)
        );
    }

    #[test]
    fn steps_lists_and_ranges() {
        let s = CronSchedule::parse("*/15 * * * *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(900));
        let s = CronSchedule::parse("0 1,13 * * *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(12 * 3600));
        // weekdays only: the weekend gap (Fri -> Mon) is the longest
        let s = CronSchedule::parse("30 3 * * MON-FRI").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(3 * 86_400));
        let s = CronSchedule::parse("0 0 * * 7").unwrap();
        assert_eq!(s.max_interval_seconds(day()), Some(7 * 86_400));
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(CronSchedule::parse("0 2 * *").is_err());
        assert!(CronSchedule::parse("61 2 * * *").is_err());
        assert!(CronSchedule::parse("0 2 * * */0").is_err());
        assert!(CronSchedule::parse("0 5-2 * * *").is_err());
        assert!(CronSchedule::parse("x 2 * * *").is_err());
    }

    #[test]
    fn never_firing_schedule_has_no_interval() {
        let s = CronSchedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.max_interval_seconds(day()), None);
    }
}
