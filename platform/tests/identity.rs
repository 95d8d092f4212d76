//! Identity and sessions: access tokens die with their session (logout, refresh-token reuse,
//! user deletion, across replicas through Redis), and usernames are unique under case folding
//! and look-alike characters, also for databases created before the rule (the migration).

mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::Store;

use common::send;

async fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[("LOGIN_RATE_LIMIT_PER_MINUTE", "1000")]).await;
    (dir, state)
}

async fn register(state: &AppState, name: &str) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": "the-password"})),
    )
    .await
}

async fn login(state: &AppState, name: &str) -> Value {
    let (status, body) = send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": name, "password": "the-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn me(state: &AppState, pair: &Value) -> StatusCode {
    let token = pair["access_token"].as_str().expect("access token");
    send(state, "GET", "/api/v1/me", Some(token), None).await.0
}

#[tokio::test]
async fn logout_ends_the_access_tokens_of_that_login_only() {
    let (_dir, state) = state().await;
    assert_eq!(register(&state, "alice").await.0, StatusCode::CREATED);
    let first = login(&state, "alice").await;
    let second = login(&state, "alice").await;
    assert_eq!(me(&state, &first).await, StatusCode::OK);
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/logout",
        None,
        Some(json!({"refresh_token": first["refresh_token"]})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        me(&state, &first).await,
        StatusCode::UNAUTHORIZED,
        "logged out"
    );
    assert_eq!(
        me(&state, &second).await,
        StatusCode::OK,
        "another login lives on"
    );
}

#[tokio::test]
async fn refresh_token_reuse_ends_every_access_token_of_the_login() {
    let (_dir, state) = state().await;
    register(&state, "bob").await;
    let original = login(&state, "bob").await;
    let (status, rotated) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": original["refresh_token"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(me(&state, &rotated).await, StatusCode::OK);
    // The spent token again: theft assumed, the whole login ends.
    let (status, _) = send(
        &state,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": original["refresh_token"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&state, &original).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&state, &rotated).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deleting_a_user_ends_their_access_tokens() {
    let (_dir, state) = state().await;
    let (_, user) = register(&state, "carol").await;
    let pair = login(&state, "carol").await;
    let Store::Sqlite(pool) = &state.store else {
        panic!("sqlite")
    };
    let id = user["user_id"].as_i64().expect("id");
    for sql in [
        "DELETE FROM refresh_tokens WHERE user_id = $1",
        "DELETE FROM accounts WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(pool).await.expect(sql);
    }
    assert_eq!(me(&state, &pair).await, StatusCode::UNAUTHORIZED);
    let token = pair["access_token"].as_str().expect("token");
    let (status, err) = send(&state, "GET", "/api/v1/portfolio", Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
}

#[tokio::test]
async fn usernames_are_unique_under_case_folding_and_look_alikes() {
    let (_dir, state) = state().await;
    assert_eq!(register(&state, "admin").await.0, StatusCode::CREATED);
    for same in ["ADMIN", "Admin", "adrnin", "ADRNIN"] {
        let (status, err) = register(&state, same).await;
        assert_eq!(status, StatusCode::CONFLICT, "{same}: {err}");
    }
    // Non-ASCII look-alikes are outside the alphabet anyway.
    let (status, err) = register(&state, "\u{430}dmin").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_username"))
    );
    assert_eq!(register(&state, "b0b").await.0, StatusCode::CREATED);
    assert_eq!(register(&state, "BOB").await.0, StatusCode::CONFLICT);
    // Logging in under a variant finds the one account of that name.
    let pair = login(&state, "ADMIN").await;
    let (_, who) = send(
        &state,
        "GET",
        "/api/v1/me",
        pair["access_token"].as_str(),
        None,
    )
    .await;
    let (_, first) = send(
        &state,
        "GET",
        "/api/v1/me",
        login(&state, "admin").await["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(who["user_id"], first["user_id"]);
}

/// The alphabet a name may use at registration, and names that collide in it.
const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";

/// Migrations up to `version` only: a database as an older release left it.
fn migrator_up_to(mut m: sqlx::migrate::Migrator, version: i64) -> sqlx::migrate::Migrator {
    m.migrations = m
        .migrations
        .iter()
        .filter(|x| x.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    m
}

/// Users created by a release without keys (some colliding), then the migration: keys match
/// the platform's function, the oldest of colliding names keeps the key, everyone still logs
/// in, and new look-alikes are refused.
async fn upgrade_keys_existing_names(store: &Store) {
    let names: Vec<String> = ALPHABET
        .as_bytes()
        .chunks(16)
        .map(|c| String::from_utf8(c.to_vec()).expect("ascii"))
        .chain(["admin", "ADMIN", "adrnin", "b0b", "weird name"].map(str::to_owned))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let sql = "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, 'x', 'trader', '2024-01-01T00:00:00Z')";
        let acct = "INSERT INTO accounts (user_id, created_at) VALUES ($1, '2024-01-01T00:00:00Z')";
        match store {
            Store::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(name)
                    .execute(pool)
                    .await
                    .expect("user");
                sqlx::query(acct)
                    .bind(i as i64 + 1)
                    .execute(pool)
                    .await
                    .expect("account");
            }
            Store::Postgres(pool) => {
                let sql = sql.replace(
                    "'2024-01-01T00:00:00Z')",
                    "'2024-01-01T00:00:00Z'::timestamptz)",
                );
                let acct = acct.replace(
                    "'2024-01-01T00:00:00Z')",
                    "'2024-01-01T00:00:00Z'::timestamptz)",
                );
                sqlx::query(&sql)
                    .bind(name)
                    .execute(pool)
                    .await
                    .expect("user");
                sqlx::query(&acct)
                    .bind(i as i64 + 1)
                    .execute(pool)
                    .await
                    .expect("account");
            }
        }
    }
    store.migrate().await.expect("the upgrade applies");
    let keys: Vec<(String, Option<String>)> = match store {
        Store::Sqlite(pool) => {
            sqlx::query_as("SELECT username, username_key FROM users ORDER BY id")
                .fetch_all(pool)
                .await
        }
        Store::Postgres(pool) => {
            sqlx::query_as("SELECT username, username_key FROM users ORDER BY id")
                .fetch_all(pool)
                .await
        }
    }
    .expect("keys");
    for (name, key) in &keys {
        match name.as_str() {
            "ADMIN" | "adrnin" => assert_eq!(key, &None, "{name}: a later duplicate"),
            "weird name" => assert_eq!(key, &None, "{name}: outside the alphabet"),
            _ => assert_eq!(
                key.as_deref(),
                Some(tradeplane_platform::input::username_key(name).as_str()),
                "{name}: the SQL key equals the platform's"
            ),
        }
    }
    for taken in ["Admin", "BOB", "bob"] {
        let err = tradeplane_platform::accounts::create(
            store,
            &tradeplane_platform::passwords::Passwords::new(1, 4),
            taken,
            "the-password",
            tradeplane_platform::auth::Role::Trader,
            None,
        )
        .await
        .expect_err(taken);
        assert!(
            matches!(err, tradeplane_platform::accounts::AccountError::Taken(_)),
            "{taken}: {err}"
        );
    }
    // Legacy duplicates still find themselves by their exact name.
    for name in ["ADMIN", "adrnin", "weird name", "admin"] {
        let user = store.find_user(name).await.expect("find").expect(name);
        assert_eq!(user.username, name);
    }
}

#[tokio::test]
async fn the_username_key_migration_upgrades_an_existing_sqlite_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let store = Store::open(&tradeplane_platform::store::StoreOptions {
        url,
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: None,
    })
    .expect("open");
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    migrator_up_to(sqlx::migrate!("./migrations/sqlite"), 9)
        .run(pool)
        .await
        .expect("old schema");
    upgrade_keys_existing_names(&store).await;
}

mod pg {
    use super::*;

    #[tokio::test]
    #[ignore = "needs PostgreSQL (TEST_DATABASE_URL); run by scripts/test"]
    async fn the_username_key_migration_upgrades_an_existing_postgres_database() {
        let db = common::PgDatabase::create().await;
        let store = Store::open(&tradeplane_platform::store::StoreOptions {
            url: db.url.clone(),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: None,
        })
        .expect("open");
        let Store::Postgres(pool) = &store else {
            panic!("postgres")
        };
        migrator_up_to(sqlx::migrate!("./migrations/postgres"), 9)
            .run(pool)
            .await
            .expect("old schema");
        upgrade_keys_existing_names(&store).await;
        store.close().await;
        db.drop_now().await;
    }
}

mod redis {
    use super::*;

    /// Two replicas on one database and one Redis: a logout on one is refused by the other at
    /// once, although the other had just confirmed the session live (its 5 s recheck has not
    /// come round).
    #[tokio::test]
    #[ignore = "needs Redis (TEST_REDIS_URL); run by scripts/test"]
    async fn a_logout_on_one_replica_ends_the_token_on_the_other_through_redis() {
        let redis = common::redis_url();
        let dir = tempfile::tempdir().expect("tempdir");
        // Replicas share the signing key, as a deployment's do.
        let env = [
            ("REDIS_URL", redis.as_str()),
            ("JWT_SECRET", "replica-shared-secret-0123456789abcdef"),
            ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
        ];
        let a = common::started_state(&dir, &env).await;
        let b = tradeplane_platform::server::build_state(common::config(&dir, &env))
            .await
            .expect("second replica");
        register(&a, "dora").await;
        let pair = login(&a, "dora").await;
        assert_eq!(
            me(&b, &pair).await,
            StatusCode::OK,
            "b confirms the session live"
        );
        let (status, _) = send(
            &a,
            "POST",
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": pair["refresh_token"]})),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            me(&b, &pair).await,
            StatusCode::UNAUTHORIZED,
            "b sees the revocation"
        );
    }
}
