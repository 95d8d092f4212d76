//! Helpers shared by the backup suites (`backup.rs`, `backup_s3.rs`, `backup_pitr.rs`): test
//! tables with every column type, a small trading session, and a fingerprint of every table read
//! with SQL that shares nothing with the backup code.
#![allow(dead_code)]

pub mod moto;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use chrono::{DateTime, Utc};
use tradeplane_platform::backup::{
    BackupKey, BackupOptions, Location, Progress, RetentionPolicy, format,
};
use tradeplane_platform::store::{NewAuditEvent, Store, StoreOptions};

pub const KEY_A: [u8; 32] = [0x11; 32];
pub const KEY_B: [u8; 32] = [0x22; 32];

pub fn key(bytes: [u8; 32]) -> BackupKey {
    BackupKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(bytes)).expect("key")
}

pub fn options(dest: &Path, key: Option<BackupKey>, now: DateTime<Utc>) -> BackupOptions {
    BackupOptions {
        dest: Location::Dir(dest.to_owned()),
        key,
        retention: RetentionPolicy::default(),
        now,
        source: format::Source {
            database: "test".into(),
            host: "test-host".into(),
        },
        progress: Progress::hidden(),
    }
}

/// A fresh migrated SQLite store at `dir/name`.
pub async fn sqlite_at(dir: &Path, name: &str) -> Store {
    let store = unmigrated_sqlite(&dir.join(name));
    store.migrate().await.expect("migrate");
    store
}

pub fn unmigrated_sqlite(path: &Path) -> Store {
    Store::open(&StoreOptions {
        url: format!("sqlite://{}?mode=rwc", path.display()),
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: None,
    })
    .expect("open")
}

pub async fn exec(store: &Store, sql: &str) {
    match store {
        Store::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        Store::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Extra tables that exercise every column type, quoting, a deferrable self-reference pointing
/// forward, a generated column and an INSERT trigger with a side effect. `strict` adds a CHECK
/// that the backup's data violates (to make a restore fail late).
pub async fn create_test_tables(store: &Store, strict: bool) {
    let check = if strict {
        ", CHECK (txt IS NULL OR txt <> 'poison')"
    } else {
        ""
    };
    let sql = match store {
        Store::Postgres(_) => format!(
            r#"
            CREATE TABLE backup_counter (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
            CREATE TABLE backup_types (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                parent_id BIGINT REFERENCES backup_types (id) DEFERRABLE INITIALLY IMMEDIATE,
                i2 SMALLINT, i4 INTEGER, i8 BIGINT, num NUMERIC(40, 12), f4 REAL,
                f8 DOUBLE PRECISION, flag BOOLEAN, txt TEXT, ts TIMESTAMPTZ, tsn TIMESTAMP,
                d DATE, raw BYTEA, js JSON, jb JSONB, arr TEXT[], uid UUID, iv INTERVAL,
                doubled BIGINT GENERATED ALWAYS AS (i8 / 2) STORED{check}
            );
            CREATE TABLE "Odd ""Name""" (k TEXT PRIMARY KEY, "select" INTEGER, "row_to_json" TEXT);
            CREATE FUNCTION backup_types_count() RETURNS trigger AS $$
            BEGIN UPDATE backup_counter SET n = n + 1 WHERE name = 'types'; RETURN NEW; END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER backup_types_count AFTER INSERT ON backup_types
                FOR EACH ROW EXECUTE FUNCTION backup_types_count();
            "#
        ),
        Store::Sqlite(_) => format!(
            r#"
            CREATE TABLE backup_counter (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
            CREATE TABLE backup_types (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                parent_id INTEGER REFERENCES backup_types (id),
                i INTEGER, r REAL, txt TEXT, b BLOB, n NUMERIC, flag BOOLEAN, anything,
                doubled INTEGER GENERATED ALWAYS AS (i / 2) VIRTUAL{check}
            );
            CREATE TABLE "Odd ""Name""" (k TEXT PRIMARY KEY, "select" INTEGER, "row_to_json" TEXT);
            CREATE TRIGGER backup_types_count AFTER INSERT ON backup_types
            BEGIN UPDATE backup_counter SET n = n + 1 WHERE name = 'types'; END;
            "#
        ),
    };
    exec(store, &sql).await;
}

/// Varied rows in the test tables.
pub async fn fill_test_tables(store: &Store) {
    let sql = match store {
        Store::Postgres(_) => {
            r#"
            INSERT INTO backup_counter VALUES ('types', 0);
            BEGIN;
            SET CONSTRAINTS ALL DEFERRED;
            INSERT INTO backup_types (parent_id, i2, i4, i8, num, f4, f8, flag, txt, ts, tsn, d, raw, js, jb, arr, uid, iv) VALUES
              (3, -32768, 2147483647, -9223372036854775808, 12345678901234567890.123456789012, 1.5, 'NaN', true,
               E'line1\nline2 \"quoted\" \\ back — ünïcødé 🚀', '2026-11-22 01:02:03.456789+05', '1999-12-31 23:59:59.999999',
               '2000-02-29', '\x00ff10', '{"a": [1, 2.50, "x"],
                 "nested": {"k": null}}', '{"z": 1, "a": {"b": [true, false]}}', ARRAY['a', NULL, 'with "quote"', 'comma,here'],
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:03:04.5'),
              (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              (NULL, 0, 0, 9223372036854775807, -0.000000000001, '-Infinity', 'Infinity', false, '', '-infinity', NULL,
               '0001-01-01', '\x', 'null', '[]', ARRAY[]::TEXT[], NULL, '-3 months'),
              (1, 1, 1, 1, 0, 1e-30, 1.0000000000000002, false, 'poison', now(), now(), now(), 'bytes'::bytea, '"s"', '"s"', '{x}', NULL, '0');
            COMMIT;
            INSERT INTO "Odd ""Name""" VALUES ('a', 1, 'x'), ('b', NULL, NULL);
            "#
        }
        Store::Sqlite(_) => {
            r#"
            INSERT INTO backup_counter VALUES ('types', 0);
            BEGIN;
            PRAGMA defer_foreign_keys = ON;
            INSERT INTO backup_types (parent_id, i, r, txt, b, n, flag, anything) VALUES
              (3, -9223372036854775808, 0.1, 'line1
line2 "quoted" \ — ünïcødé 🚀', x'00ff10', 12.50, 1, 42),
              (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              (NULL, 9223372036854775807, 9e999, '', x'', '1e400', 0, 3.0),
              (1, 1, -9e999, 'poison', zeroblob(3), 'not a number', 'yes', x'deadbeef'),
              (NULL, 7, 1e300, '5', NULL, 1.0000000000000002, NULL, 'text in an untyped column');
            COMMIT;
            INSERT INTO "Odd ""Name""" VALUES ('a', 1, 'x'), ('b', NULL, NULL);
            "#
        }
    };
    exec(store, sql).await;
}

/// A small trading session written straight to the platform's tables, plus audit events.
pub async fn fill_platform_tables(store: &Store, users: i64) {
    let now = Utc::now();
    for n in 0..20 {
        store
            .append_audit(&NewAuditEvent {
                actor: format!("user-{}", n % 3),
                action: "order.placed".into(),
                subject: (n % 2 == 0).then(|| format!("order-{n}")),
                request_id: Some(format!("req-{n}")),
                details: serde_json::json!({"n": n, "amount": "12.50", "note": "multi\nline"}),
            })
            .await
            .expect("audit");
    }
    let mut sql = String::from(
        "INSERT INTO symbols (symbol, seq, md_seq, status, last_price, last_qty, last_trade_seq) \
         VALUES ('AAPL', 10, 12, 'open', 15000000000, 100000000, 10), ('BTC-USD', 0, 0, 'halted', NULL, NULL, NULL);\n",
    );
    let ts = now.to_rfc3339();
    for u in 1..=users {
        sql.push_str(&format!(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ({u}, 'user{u}', '$argon2id$v=19$x', '{}', '{ts}');\n\
             INSERT INTO accounts (id, user_id, cash, cash_reserved, allow_short, max_open_orders, open_orders, created_at) VALUES ({u}, {u}, {}, 0, {}, 100, 0, '{ts}');\n\
             INSERT INTO positions (account_id, symbol, qty, reserved, cost_basis, realized_pnl) VALUES ({u}, 'AAPL', {}, 0, {}, -5);\n\
             INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, used_at, revoked_at, created_at) VALUES ({u}, 'fam{u}', 'hash{u}', '{ts}', NULL, '{ts}', '{ts}');\n",
            if u == 1 { "admin" } else { "trader" },
            u * 1_000_000_000,
            if u % 2 == 0 { "TRUE" } else { "FALSE" },
            u * 100_000_000,
            u * 15_000_000_000,
        ));
    }
    for o in 1..=2 * users {
        let account = (o - 1) % users + 1;
        sql.push_str(&format!(
            "INSERT INTO orders (id, account_id, client_order_id, symbol, side, order_type, tif, price, qty, filled, remaining, status, cancel_reason, priority, created_at, updated_at) \
             VALUES ({o}, {account}, {}, 'AAPL', '{}', 'limit', 'GTC', 15000000000, 100000000, 100000000, 0, 'filled', NULL, {o}, '{ts}', '{ts}');\n",
            if o % 3 == 0 { "NULL".to_string() } else { format!("'c{o}'") },
            if o % 2 == 0 { "buy" } else { "sell" },
        ));
    }
    for t in 1..users {
        sql.push_str(&format!(
            "INSERT INTO trades (symbol, seq, price, qty, taker_side, taker_order_id, maker_order_id, taker_account_id, maker_account_id, created_at) \
             VALUES ('AAPL', {t}, 15000000000, 100000000, 'buy', {}, {}, 1, 2, '{ts}');\n",
            2 * t,
            2 * t - 1
        ));
    }
    exec(store, &sql).await;
    // Explicit ids leave PostgreSQL sequences behind; bring them level like real traffic would.
    if let Store::Postgres(_) = store {
        exec(
            store,
            "SELECT setval('users_id_seq', (SELECT MAX(id) FROM users));
             SELECT setval('accounts_id_seq', (SELECT MAX(id) FROM accounts));
             SELECT setval('orders_id_seq', (SELECT MAX(id) FROM orders));",
        )
        .await;
    }
}

/// Every table (and sequence counter) as sorted canonical text rows, read with SQL that shares
/// nothing with the backup code: PostgreSQL's record text form, SQLite's `typeof` + `quote`.
pub async fn fingerprint(store: &Store) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    match store {
        Store::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
                 AND tablename <> '_sqlx_migrations'",
            )
            .fetch_all(p)
            .await
            .expect("tables");
            for t in tables {
                let q = format!("\"{}\"", t.replace('"', "\"\""));
                let mut rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT r::text FROM {q} r"))
                        .fetch_all(p)
                        .await
                        .expect("rows");
                rows.sort();
                out.insert(t, rows);
            }
            let seqs: Vec<String> = sqlx::query_scalar(
                "SELECT sequencename::text FROM pg_sequences WHERE schemaname = current_schema()",
            )
            .fetch_all(p)
            .await
            .expect("sequences");
            for s in seqs {
                let v: String = sqlx::query_scalar(&format!(
                    "SELECT last_value::text || '/' || is_called::text FROM \"{s}\""
                ))
                .fetch_one(p)
                .await
                .expect("sequence");
                out.insert(format!("sequence {s}"), vec![v]);
            }
        }
        Store::Sqlite(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> '_sqlx_migrations'",
            )
            .fetch_all(p)
            .await
            .expect("tables");
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_xinfo(?1) ORDER BY cid")
                        .bind(&t)
                        .fetch_all(p)
                        .await
                        .expect("columns");
                let exprs: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        let c = format!("\"{}\"", c.replace('"', "\"\""));
                        format!(
                            "typeof({c}) || ':' || CASE typeof({c}) WHEN 'real' THEN printf('%!.17g', {c}) ELSE quote({c}) END"
                        )
                    })
                    .collect();
                let q = format!(
                    "SELECT {} FROM \"{}\"",
                    exprs.join(" || '|' || "),
                    t.replace('"', "\"\"")
                );
                let mut rows: Vec<String> =
                    sqlx::query_scalar(&q).fetch_all(p).await.expect("rows");
                rows.sort();
                out.insert(t, rows);
            }
        }
    }
    out
}

pub fn total_rows(f: &BTreeMap<String, Vec<String>>) -> usize {
    f.iter()
        .filter(|(k, _)| !k.starts_with("sequence ") && k.as_str() != "sqlite_sequence")
        .map(|(_, v)| v.len())
        .sum()
}
