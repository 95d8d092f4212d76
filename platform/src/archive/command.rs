//! `archive restore-point NAME`, `archive status` and `archive disable`: the CLI face of the
//! archive.

use crate::backup::{BackupError, EXIT_OK, EXIT_REFUSED};
use crate::cli::ArchiveAction;
use crate::config::Config;
use crate::store::Store;

fn fail(operation: &str, e: &BackupError) -> u8 {
    tracing::error!(operation, outcome = "failed", error = %e, exit_code = e.exit_code(), "{operation} failed");
    eprintln!("tradeplane-platform archive {operation}: {e}");
    e.exit_code()
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> BackupError {
    move |source| BackupError::Database {
        context: context.into(),
        source,
    }
}

/// Runs `archive …`; returns the exit code.
pub async fn run(config: &Config, action: &ArchiveAction) -> u8 {
    let store = match crate::backup::command::open_store(config) {
        Ok(s) => s,
        Err(e) => return fail("open", &e),
    };
    let Store::Postgres(pool) = &store else {
        eprintln!(
            "tradeplane-platform archive: point-in-time archiving needs PostgreSQL (DATABASE_URL is SQLite)"
        );
        return EXIT_REFUSED;
    };
    let code = match action {
        ArchiveAction::RestorePoint { name } => match restore_point(pool, name).await {
            Ok(p) => {
                tracing::info!(
                    operation = "restore-point",
                    seq = p.seq,
                    name,
                    "restore point written"
                );
                println!("restore point #{} {name:?}: {}", p.seq, p.row);
                EXIT_OK
            }
            Err(e) => fail("restore-point", &e),
        },
        ArchiveAction::Disable => match disable(pool).await {
            Ok(true) => {
                println!("archiving is off: triggers dropped, change log emptied");
                EXIT_OK
            }
            Ok(false) => {
                println!("archiving was already off");
                EXIT_OK
            }
            Err(e) => fail("disable", &e),
        },
        ArchiveAction::Status => match status(pool).await {
            Ok(line) => {
                println!("{line}");
                EXIT_OK
            }
            Err(e) => fail("status", &e),
        },
    };
    store.close().await;
    code
}

async fn restore_point(
    pool: &sqlx::PgPool,
    name: &str,
) -> Result<crate::store::archive::RestorePoint, BackupError> {
    let mut conn = pool.acquire().await.map_err(db("connecting"))?;
    if crate::store::archive::identity_in(&mut conn)
        .await
        .map_err(db("reading the archive state"))?
        .is_none()
    {
        return Err(BackupError::Refused(
            "the database is not archived (no replica runs with ARCHIVE_DEST); a restore point \
             would not be shipped anywhere"
                .into(),
        ));
    }
    crate::store::archive::restore_point(pool, name)
        .await
        .map_err(db("writing the restore point"))
}

async fn disable(pool: &sqlx::PgPool) -> Result<bool, BackupError> {
    let mut tx = pool.begin().await.map_err(db("connecting"))?;
    let was = crate::store::archive::reset_in(&mut tx)
        .await
        .map_err(db("turning archiving off"))?;
    tx.commit().await.map_err(db("turning archiving off"))?;
    Ok(was)
}

async fn status(pool: &sqlx::PgPool) -> Result<String, BackupError> {
    let mut conn = pool.acquire().await.map_err(db("connecting"))?;
    let Some(id) = crate::store::archive::identity_in(&mut conn)
        .await
        .map_err(db("reading the archive state"))?
    else {
        return Ok("not archived: no replica has run with ARCHIVE_DEST".into());
    };
    let backlog = crate::store::archive::backlog(pool)
        .await
        .map_err(db("reading the change log"))?;
    let last = crate::store::archive::last_shipped_at(&mut conn)
        .await
        .map_err(db("reading the archive state"))?;
    Ok(format!(
        "archived: archive {} next segment {} changes waiting {} last shipped {}",
        id.archive_id,
        id.next_segment,
        backlog,
        last.map_or("never".to_owned(), |t| t.to_rfc3339())
    ))
}
