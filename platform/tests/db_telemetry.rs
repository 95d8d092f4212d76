//! Database telemetry against a real PostgreSQL: the server-enforced statement timeout answers a
//! clear 503, and slow statements are logged by operation name (no SQL, no values) and counted.

mod common;

mod pg {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::http::StatusCode;
    use serde_json::{Value, json};
    use sqlx::Connection;
    use tradeplane_platform::store::telemetry::{self, Op, Outcome};

    use super::common::{self, PgDatabase, send};

    const ADMIN: (&str, &str) = ("root", "root-password-long");

    /// Log lines written while a test runs, for asserting on the WARN line.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
        }
    }

    /// Holds a row lock on the account in a transaction of its own for `hold`, so that the
    /// deposit's UPDATE waits on it.
    async fn lock_account(url: &str, account: i64) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query("BEGIN")
            .execute(&mut conn)
            .await
            .expect("begin");
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account)
            .execute(&mut conn)
            .await
            .expect("lock");
        conn
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn a_statement_over_the_timeout_is_a_503_and_slow_ones_are_logged_without_sql() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .finish();
        // The test runs on one thread: every statement of the request logs to this subscriber.
        let _guard = tracing::subscriber::set_default(subscriber);

        let db = PgDatabase::create().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = common::started_state(
            &dir,
            &[
                ("DATABASE_URL", db.url.as_str()),
                ("DATABASE_STATEMENT_TIMEOUT_SECONDS", "1"),
                ("DATABASE_SLOW_STATEMENT_MS", "300"),
                ("ADMIN_USERNAME", ADMIN.0),
                ("ADMIN_PASSWORD", ADMIN.1),
            ],
        )
        .await;
        tradeplane_platform::server::ensure_admin(&state)
            .await
            .expect("admin");
        let (_, user) = send(
            &state,
            "POST",
            "/api/v1/auth/register",
            None,
            Some(json!({"username": "dora", "password": "dora-password"})),
        )
        .await;
        let account = user["account_id"].as_i64().expect("account id");
        let admin = common::access_token(&state, ADMIN.0, ADMIN.1).await;
        let path = format!("/api/v1/admin/accounts/{account}/deposits");
        let deposit = |amount: &'static str| {
            let state = state.clone();
            let path = path.clone();
            let admin = admin.clone();
            async move {
                send(
                    &state,
                    "POST",
                    &path,
                    Some(&admin),
                    Some(json!({"amount": amount})),
                )
                .await
            }
        };

        // 1. Blocked for longer than the timeout: the server cancels the statement.
        let timeouts_before = telemetry::count(Op::UserWrite, Outcome::Timeout);
        let slow_before = telemetry::slow_count(Op::UserWrite);
        let lock = lock_account(&db.url, account).await;
        let started = Instant::now();
        let (status, body): (StatusCode, Value) = deposit("7.77").await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "statement_timeout", "{body}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "cancelled after {took:?}"
        );
        assert_eq!(
            telemetry::count(Op::UserWrite, Outcome::Timeout),
            timeouts_before + 1
        );
        assert!(telemetry::slow_count(Op::UserWrite) > slow_before);
        lock.close().await.ok();

        // 2. Blocked for less than the timeout but more than the slow threshold: it succeeds,
        //    and is logged and counted as slow.
        let slow_before = telemetry::slow_count(Op::UserWrite);
        let ok_before = telemetry::count(Op::UserWrite, Outcome::Ok);
        let lock = lock_account(&db.url, account).await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            lock.close().await.ok();
        });
        let (status, body) = deposit("8.88").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        release.await.expect("released");
        assert_eq!(telemetry::slow_count(Op::UserWrite), slow_before + 1);
        assert!(telemetry::count(Op::UserWrite, Outcome::Ok) > ok_before);

        // 3. Unblocked: fast, not logged.
        let slow_before = telemetry::slow_count(Op::UserWrite);
        let (status, _) = deposit("1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(telemetry::slow_count(Op::UserWrite), slow_before);

        let logs = captured.text();
        let slow: Vec<Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "slow database statement")
            .collect();
        let outcomes: Vec<&str> = slow
            .iter()
            .filter(|l| l["fields"]["operation"] == "user_write")
            .filter_map(|l| l["fields"]["outcome"].as_str())
            .collect();
        assert!(outcomes.contains(&"timeout"), "{logs}");
        assert!(outcomes.contains(&"ok"), "{logs}");
        for line in &slow {
            assert_eq!(line["level"], "WARN");
            assert!(line["fields"]["duration_ms"].as_u64().is_some(), "{line}");
        }
        // Neither the SQL text nor a parameter value reaches the log.
        assert!(!logs.contains("UPDATE accounts"), "{logs}");
        assert!(
            !logs.contains("777000000") && !logs.contains("7.77"),
            "{logs}"
        );

        // The series are exported.
        let text = state
            .metrics
            .render(&state.store, &state.cache)
            .expect("render");
        assert!(
            text.contains(r#"db_queries_total{operation="user_write",outcome="timeout"}"#),
            "{text}"
        );
        assert!(text.contains(r#"db_query_duration_seconds_bucket{operation="user_write""#));
        assert!(text.contains(r#"db_slow_statements_total{operation="user_write"}"#));

        state.store.close().await;
        db.drop_now().await;
    }
}
