//! Helpers shared by the platform's integration tests.
#![allow(dead_code, unused_macros)]

pub mod approvals;
pub mod pg_proxy;
pub mod process;

use tradeplane_platform::config::Config;
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::{Store, StoreOptions};

/// Configuration for a test instance on a fresh SQLite file in `dir`, plus `extra` variables.
pub fn config(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Config {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let mut vars = vec![
        ("DATABASE_URL".to_owned(), url),
        ("LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).expect("test configuration is valid")
}

/// A started instance's state (migrated, checked, marked started) on a fresh SQLite file.
pub async fn started_state(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> AppState {
    let state = tradeplane_platform::server::build_state(config(dir, extra))
        .await
        .expect("state builds");
    state.store.migrate().await.expect("migrations apply");
    state.health.run_checks().await;
    state.health.mark_started();
    state
}

/// A fresh, migrated SQLite store in `dir`.
pub async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = Store::open(&StoreOptions {
        url,
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: None,
    })
    .expect("sqlite store opens");
    store.migrate().await.expect("sqlite migrations apply");
    store
}

/// A PostgreSQL database created for one test and dropped by [`PgDatabase::drop_now`].
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

/// The server the PostgreSQL suites run against. The suites are `#[ignore]`d by default and run
/// by `scripts/test` when a server answers (always in CI); without the variable they fail loudly.
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL must point at a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/test); \
         run the suites through scripts/test",
    )
}

impl PgDatabase {
    /// Creates a uniquely named database on the test server.
    pub async fn create() -> PgDatabase {
        use sqlx::Connection;
        let admin_url = pg_admin_url();
        let name = format!("tp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Store {
        let store = Store::open(&StoreOptions {
            url: self.url.clone(),
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: None,
        })
        .expect("postgres store opens");
        store.migrate().await.expect("postgres migrations apply");
        store
    }

    /// Drops the database (closing other sessions on it).
    pub async fn drop_now(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("reconnect to drop");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop test database");
    }
}

/// The Redis server the Redis suites run against (`TEST_REDIS_URL`); fails loudly when unset.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").expect(
        "TEST_REDIS_URL must point at a Redis server (e.g. redis://127.0.0.1:6379); run the suites through scripts/test",
    )
}

/// Sends one request through the router (no network) and returns the status and the JSON body
/// (`Null` when empty).
pub async fn send(
    state: &tradeplane_platform::state::AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    send_to(
        &tradeplane_platform::http::router(state.clone()),
        method,
        path,
        token,
        body,
    )
    .await
}

/// Logs in through the API (asserting 200) and returns the whole token response.
pub async fn login(
    state: &tradeplane_platform::state::AppState,
    user: &str,
    password: &str,
) -> serde_json::Value {
    let (status, body) = send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(serde_json::json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{body}");
    body
}

/// [`login`]'s access token.
pub async fn access_token(
    state: &tradeplane_platform::state::AppState,
    user: &str,
    password: &str,
) -> String {
    login(state, user, password).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Registers `user` with the password `password-123` (asserting 201) and returns its access
/// token: the start of most HTTP tests.
pub async fn register_and_login(
    state: &tradeplane_platform::state::AppState,
    user: &str,
) -> String {
    let (status, body) = send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(serde_json::json!({"username": user, "password": "password-123"})),
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
    access_token(state, user, "password-123").await
}

/// [`send`] through a router built once (cheaper in load loops).
pub async fn send_to(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => req.body(axum::body::Body::empty()),
    }
    .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, json)
}

/// A private `redis-server` on a spare loopback port, for outage tests: stop it, start it again.
/// Stopped when dropped.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> PrivateRedis {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("spare port");
            l.local_addr().expect("addr").port()
        };
        let mut redis = PrivateRedis { port, child: None };
        redis.restart().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("stop redis");
            child.wait().expect("reap redis");
        }
    }

    /// Starts it again on the same port (empty: it keeps nothing) and waits until it is up.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        self.child = Some(
            std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed for this test"),
        );
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("redis-server did not start on {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Generates, for each suite function `async fn name(state: AppState)`, one SQLite test
/// (`sqlite::name`) and one PostgreSQL test (`pg::name`, ignored, run by scripts/test), each on a
/// fresh database with the extra variables `env` (an expression evaluated inside those modules,
/// so a constant of the test file is `super::NAME`). Use with `#[macro_use] mod common;`.
macro_rules! state_on_both_backends {
    ($env:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let extra: &[(&str, &str)] = $env;
                    let dir = tempfile::tempdir().expect("tempdir");
                    let state = super::common::started_state(&dir, extra).await;
                    super::$name(state).await;
                }
            )*
        }
        mod pg {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: run through scripts/test"]
                async fn $name() {
                    let extra: &[(&str, &str)] = $env;
                    let db = super::common::PgDatabase::create().await;
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut env = extra.to_vec();
                    env.push(("DATABASE_URL", &db.url));
                    let state = super::common::started_state(&dir, &env).await;
                    super::$name(state.clone()).await;
                    state.store.close().await;
                    db.drop_now().await;
                }
            )*
        }
    };
}
