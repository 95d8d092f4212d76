//! `tradeplane-platform migrate` and the schema rule of rollouts: a build runs on a database
//! that a newer build migrated with `expand` migrations only, and refuses one a newer build
//! contracted, at start-up and in `migrate`, with a message that says what to do.

mod common;

use std::process::{Command, Output};

fn platform(dir: &std::path::Path, database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"))
        .current_dir(dir)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", common::process::spare_port()),
        )
        .args(args)
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Records a migration this build does not know, as a newer build would have applied it.
async fn applied_by_a_newer_build(url: &str, version: i64, description: &str) {
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
               VALUES ($1, $2, TRUE, $3, 1)";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        sqlx::query(sql)
            .bind(version)
            .bind(description)
            .bind(vec![0u8; 48])
            .execute(&pool)
            .await
            .expect("insert");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("postgres");
        sqlx::query(sql)
            .bind(version)
            .bind(description)
            .bind(vec![0u8; 48])
            .execute(&pool)
            .await
            .expect("insert");
        pool.close().await;
    }
}

async fn migrate_follows_the_expand_contract_rule(url: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let first = platform(dir.path(), url, &["migrate"]);
    assert!(first.status.success(), "fresh database: {}", stderr(&first));
    let again = platform(dir.path(), url, &["migrate"]);
    assert!(again.status.success(), "nothing to do: {}", stderr(&again));

    // A newer release added something: this build still migrates (nothing) and would serve.
    applied_by_a_newer_build(url, 9_000, "expand add a column").await;
    let expand = platform(dir.path(), url, &["migrate"]);
    assert!(
        expand.status.success(),
        "expand-only newer schema: {}",
        stderr(&expand)
    );

    // A newer release contracted the schema: refused, exit 6, with the way out.
    applied_by_a_newer_build(url, 9_001, "contract drop a column").await;
    let contract = platform(dir.path(), url, &["migrate"]);
    assert_eq!(contract.status.code(), Some(6), "{}", stderr(&contract));
    let message = stderr(&contract);
    assert!(
        message.contains("newer than this build knows")
            && message.contains("9001 (contract drop a column)"),
        "{message}"
    );
    assert!(
        !message.contains("9000"),
        "expand migrations are not blamed: {message}"
    );

    // The service refuses to start on it too, saying the same.
    let serve = platform(dir.path(), url, &[]);
    assert!(!serve.status.success());
    let message = format!(
        "{}{}",
        stderr(&serve),
        String::from_utf8_lossy(&serve.stdout)
    );
    assert!(message.contains("newer than this build knows"), "{message}");
}

#[tokio::test]
async fn sqlite_migrate_follows_the_expand_contract_rule() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    migrate_follows_the_expand_contract_rule(&url).await;
}

mod pg {
    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn migrate_follows_the_expand_contract_rule() {
        let db = super::common::PgDatabase::create().await;
        super::migrate_follows_the_expand_contract_rule(&db.url).await;
        db.drop_now().await;
    }
}
