//! PostgreSQL snapshots (`pg_current_snapshot()`, text form `xmin:xmax:xip,…`) and which
//! transactions they saw: the rule that makes a replay exact. A transaction's changes are
//! applied when the target snapshot saw it commit and the base backup's snapshot did not.

use std::collections::BTreeSet;

/// A snapshot: every transaction below `xmin` had ended, none from `xmax` on had started, and
/// those in `in_progress` were running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: i64,
    xmax: i64,
    in_progress: BTreeSet<i64>,
}

impl Snapshot {
    /// Parses the text form; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.trim().splitn(3, ':');
        let xmin: i64 = parts.next()?.parse().ok()?;
        let xmax: i64 = parts.next()?.parse().ok()?;
        let xip = parts.next()?;
        let in_progress = if xip.is_empty() {
            BTreeSet::new()
        } else {
            xip.split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<BTreeSet<i64>>>()?
        };
        (xmin <= xmax && in_progress.iter().all(|x| (xmin..xmax).contains(x))).then_some(Snapshot {
            xmin,
            xmax,
            in_progress,
        })
    }

    /// Whether a transaction with id `xid` that committed was visible to this snapshot (a
    /// transaction that rolled back left no change rows, so "ended" means "committed" here).
    pub fn saw(&self, xid: i64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.in_progress.contains(&xid))
    }

    /// Whether this snapshot saw every transaction `earlier` saw (a restore target must include
    /// its base backup).
    pub fn includes(&self, earlier: &Snapshot) -> bool {
        earlier.xmax <= self.xmax && self.in_progress.iter().all(|x| !earlier.saw(*x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_postgresql() {
        let s = Snapshot::parse("100:110:103,107").expect("parses");
        assert!(s.saw(99));
        assert!(s.saw(100), "below xmax and not running");
        assert!(!s.saw(103), "running");
        assert!(s.saw(109));
        assert!(!s.saw(110), "not started yet");
        let empty = Snapshot::parse("5:5:").expect("no running transactions");
        assert!(empty.saw(4) && !empty.saw(5));
    }

    #[test]
    fn a_later_snapshot_includes_an_earlier_one() {
        let base = Snapshot::parse("100:110:103,107").expect("base");
        let later = Snapshot::parse("103:120:103,115").expect("later");
        assert!(later.includes(&base), "103 was running in both");
        assert!(base.includes(&base));
        let earlier = Snapshot::parse("95:105:").expect("earlier");
        assert!(!earlier.includes(&base), "saw less");
        let missed = Snapshot::parse("100:120:109").expect("missed");
        assert!(
            !missed.includes(&base),
            "109 was seen by the base but is running here"
        );
    }

    #[test]
    fn malformed_snapshots_are_refused() {
        for bad in ["", "1:2", "a:2:", "5:4:", "1:5:7", "1:5:2,x"] {
            assert!(Snapshot::parse(bad).is_none(), "{bad}");
        }
    }
}
