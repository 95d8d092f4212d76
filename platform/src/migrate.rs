//! `tradeplane-platform migrate`: applies the database migrations of this build and exits.
//!
//! The operator runs it as a Job of the new image before any new pod starts (a rollout that
//! changes the schema), so a failed migration stops the rollout while the old version keeps
//! serving. The service itself still migrates at start-up, so the embedded quick start needs
//! no separate step. Exit codes: 0 migrated (or nothing to do), 4 the database failed or was
//! unreachable until the deadline, 6 refused (the database was contracted by a newer release,
//! see [`crate::store::schema`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backup::{EXIT_DATABASE, EXIT_OK, EXIT_REFUSED};
use crate::config::Config;
use crate::store::schema::NewerSchema;
use crate::store::{Store, StoreOptions};

/// How long the command waits for an unreachable database before it gives up (a Job's
/// `backoffLimit` then decides whether it runs again).
const DEADLINE: Duration = Duration::from_secs(300);

/// Runs the migrations; returns the process exit code.
pub async fn run(config: &Config, stop: CancellationToken) -> u8 {
    let store = match Store::open(&StoreOptions {
        url: config.database_url.clone(),
        max_connections: 2,
        acquire_timeout: config.database_connect_timeout,
        statement_timeout: None,
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tradeplane-platform migrate: DATABASE_URL cannot be used: {e}");
            return EXIT_DATABASE;
        }
    };
    let deadline = stop.child_token();
    let timer = {
        let deadline = deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DEADLINE).await;
            deadline.cancel();
        })
    };
    let result = crate::server::migrate_with_retry(&store, &deadline).await;
    timer.abort();
    let code = match result {
        Ok(true) => {
            tracing::info!(
                schema_version = store.schema_version(),
                "migrations applied"
            );
            EXIT_OK
        }
        Ok(false) => {
            eprintln!(
                "tradeplane-platform migrate: the database did not answer within {DEADLINE:?} (or the command was stopped); nothing was changed"
            );
            EXIT_DATABASE
        }
        Err(e) => {
            // `MigrateError::Source` names the refusal as its source, so the chain reaches it.
            let refused = e.chain().any(|c| c.downcast_ref::<NewerSchema>().is_some());
            eprintln!("tradeplane-platform migrate: {e:#}");
            if refused { EXIT_REFUSED } else { EXIT_DATABASE }
        }
    };
    store.close().await;
    code
}
