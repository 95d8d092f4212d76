//! Writing a batch: one statement whatever the batch's size, on either backend.
//!
//! PostgreSQL gets every table's rows in one data-modifying CTE ([`super::write_pg`]), SQLite
//! in one `INSERT` into a view whose trigger runs the per-table statements inside the engine
//! ([`super::write_sqlite`]). Either way a batch's writes cost one round trip (PostgreSQL) or
//! one hand-off to the connection's worker thread (SQLite).

use chrono::{DateTime, Utc};

use super::super::telemetry::{Observation, Op};
use super::{BatchWrites, MatchError, MatchTx, Tx};

/// Checks that an `UPDATE` touched every row it was meant to.
pub(in crate::store) fn expect_rows(
    done: u64,
    wanted: usize,
    what: &str,
) -> Result<(), MatchError> {
    if done == wanted as u64 {
        Ok(())
    } else {
        Err(MatchError::Stale(format!(
            "{what}: {done} of {wanted} rows were as expected"
        )))
    }
}

impl MatchTx {
    /// Writes a batch: one statement on either backend.
    pub async fn write(&mut self, w: &BatchWrites, now: DateTime<Utc>) -> Result<(), MatchError> {
        if super::write_pg::is_empty(w) {
            return Ok(());
        }
        if let Tx::Postgres(tx) = &mut self.tx {
            self.statements += 1;
            let observation = Observation::start(Op::BatchWrite);
            super::write_pg::write(tx, w, now, None).await?;
            observation.succeed();
            return Ok(());
        }
        sqlite!(self, c, super::write_sqlite::write(c, w, now, None).await?);
        Ok(())
    }

    /// The optimistic batch's write, guarded in the same statement: locks and
    /// checks what `expect` says the plan assumed and writes only if nothing moved. `Ok(true)`:
    /// written (and the transaction id recorded); `Ok(false)`: something moved, nothing was
    /// written, the locks are held (ask [`MatchTx::guard`] what moved).
    pub async fn write_guarded(
        &mut self,
        w: &BatchWrites,
        now: DateTime<Utc>,
        expect: &super::write_pg::Expect<'_>,
    ) -> Result<bool, MatchError> {
        let Tx::Postgres(tx) = &mut self.tx else {
            return Ok(sqlite!(
                self,
                c,
                super::write_sqlite::write(c, w, now, Some(expect)).await?
            ));
        };
        self.statements += 1;
        let observation = Observation::start(Op::BatchWrite);
        let xid = super::write_pg::write(tx, w, now, Some(expect)).await?;
        observation.succeed();
        match xid {
            Some(xid) => {
                self.xid = Some(xid);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
