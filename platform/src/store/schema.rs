//! Which schemas a build may run on, for rollouts that migrate first and replace pods after.
//!
//! Migrations follow the expand/contract rule (docs/operating.md, "Schema changes"): a
//! migration whose name starts with `expand` (`0021_expand_…sql`) only adds (tables, nullable
//! or defaulted columns, indexes, relaxed constraints), so the previous release keeps working on
//! the schema it leaves; anything that removes or changes what a released build uses is a
//! `contract` migration, shipped only once no build that needs the old shape runs. A build
//! therefore starts on a database that newer builds migrated with `expand` migrations only
//! (it logs them), and refuses, with a message saying what to do, one that a newer build has
//! contracted.

use std::fmt;

use super::{Store, with_pool};

/// A database migrated by a newer build with changes this build cannot run on.
#[derive(Debug)]
pub struct NewerSchema {
    /// The newest version this build knows.
    pub known: i64,
    /// The applied migrations this build does not know that are not `expand` migrations.
    pub blocking: Vec<(i64, String)>,
}

impl fmt::Display for NewerSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .blocking
            .iter()
            .map(|(v, d)| format!("{v} ({d})"))
            .collect();
        write!(
            f,
            "the database schema is newer than this build knows (it knows up to version {}); a \
             newer release applied migrations that change what this build relies on: {}. Run \
             that release (or a newer one), or restore a backup taken before the upgrade",
            self.known,
            list.join(", ")
        )
    }
}

impl std::error::Error for NewerSchema {}

/// Migrations applied to the database with a version above `known`, oldest first (none on a
/// fresh database).
pub(super) async fn applied_beyond(
    store: &Store,
    known: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let result: Result<Vec<(i64, String)>, sqlx::Error> = with_pool!(store, super::telemetry::Op::Schema, pool => {
        sqlx::query_as(
            "SELECT version, description FROM _sqlx_migrations WHERE version > $1 ORDER BY version",
        )
        .bind(known)
        .fetch_all(pool)
        .await
    });
    match result {
        Ok(rows) => Ok(rows),
        // No migration table yet: nothing was ever applied.
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some("42P01") || e.message().contains("no such table") =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Whether an applied migration's description marks it as only adding to the schema.
pub(super) fn is_expand(description: &str) -> bool {
    description
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("expand"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_migrations_named_expand_are_compatible() {
        assert!(is_expand("expand add mfa"));
        assert!(is_expand("Expand"));
        assert!(!is_expand("expander"));
        assert!(!is_expand("contract drop legacy column"));
        assert!(!is_expand("trading"));
        assert!(!is_expand(""));
    }

    #[test]
    fn the_refusal_names_the_migrations_and_the_way_out() {
        let e = NewerSchema {
            known: 20,
            blocking: vec![(30, "contract drop x".into())],
        };
        let text = e.to_string();
        assert!(text.contains("up to version 20"), "{text}");
        assert!(text.contains("30 (contract drop x)"), "{text}");
        assert!(text.contains("restore a backup"), "{text}");
    }
}
