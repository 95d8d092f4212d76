//! The store suite: every test runs on SQLite (always) and PostgreSQL (`pg::`, run by
//! `scripts/test` whenever a server answers, always in CI).

mod common;

use tradeplane_platform::store::{NewAuditEvent, Store};

fn event(actor: &str, action: &str, n: i64) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.into(),
        action: action.into(),
        subject: Some(format!("order-{n}")),
        request_id: Some(format!("req-{n}")),
        details: serde_json::json!({ "n": n, "amount": "12.50" }),
    }
}

async fn audit_round_trip(store: Store) {
    let first = store
        .append_audit(&event("alice", "order.placed", 1))
        .await
        .expect("append");
    let second = store
        .append_audit(&event("bob", "login.failed", 2))
        .await
        .expect("append");
    assert!(second > first, "ids increase");
    let all = store.list_audit(10, None).await.expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, second, "newest first");
    assert_eq!(all[0].actor, "bob");
    assert_eq!(all[0].action, "login.failed");
    assert_eq!(all[1].subject.as_deref(), Some("order-1"));
    assert_eq!(all[1].request_id.as_deref(), Some("req-1"));
    assert_eq!(
        all[1].details,
        serde_json::json!({ "n": 1, "amount": "12.50" })
    );
    assert!(all[0].occurred_at >= all[1].occurred_at);
}

async fn audit_pagination(store: Store) {
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            store
                .append_audit(&event("carol", "deposit", n))
                .await
                .expect("append"),
        );
    }
    let page1 = store.list_audit(3, None).await.expect("page 1");
    let page2 = store
        .list_audit(3, Some(page1[2].id))
        .await
        .expect("page 2");
    let page3 = store
        .list_audit(3, Some(page2[2].id))
        .await
        .expect("page 3");
    let seen: Vec<i64> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|e| e.id)
        .collect();
    ids.reverse();
    assert_eq!(seen, ids, "pages cover every event once, newest first");
    assert_eq!(page3.len(), 1);
}

async fn audit_is_append_only(store: Store) {
    let id = store
        .append_audit(&event("dave", "halt", 1))
        .await
        .expect("append");
    let update = "UPDATE audit_events SET actor = 'mallory' WHERE id = $1";
    let delete = "DELETE FROM audit_events WHERE id = $1";
    let (updated, deleted) = match &store {
        Store::Postgres(p) => (
            sqlx::query(update).bind(id).execute(p).await.is_ok(),
            sqlx::query(delete).bind(id).execute(p).await.is_ok(),
        ),
        Store::Sqlite(p) => (
            sqlx::query(update).bind(id).execute(p).await.is_ok(),
            sqlx::query(delete).bind(id).execute(p).await.is_ok(),
        ),
    };
    assert!(!updated, "updates are refused");
    assert!(!deleted, "deletes are refused");
    let all = store.list_audit(10, None).await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].actor, "dave");
}

async fn migrations_are_idempotent_and_ping_works(store: Store) {
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.expect("ping");
    assert!(store.schema_version() >= 1);
    let stats = store.pool_stats();
    assert_eq!(stats.max, 4);
    assert!(stats.size >= 1);
    store.close().await;
    assert!(store.ping().await.is_err(), "a closed pool fails its ping");
}

/// A batch's writes are all or nothing, and an `UPDATE` that finds a row not as the matcher
/// expected it fails the batch as stale: here a change to an order that is not resting, sent
/// together with a new order and an account change (one statement on PostgreSQL, one per table on
/// SQLite), leaves nothing behind.
async fn a_stale_batch_write_fails_and_leaves_nothing(store: Store) {
    use tradeplane_platform::auth::Role;
    use tradeplane_platform::store::matching::{
        AccountChange, BatchWrites, MatchError, MatchTx, NewOrderRow, OrderChange,
    };
    let user = store
        .create_user("batcher", "batcher", "x", Role::Trader, None)
        .await
        .expect("user");
    let before = store
        .account(user.account_id)
        .await
        .expect("read")
        .expect("account");
    let order = |id: i64| NewOrderRow {
        id,
        account_id: user.account_id,
        client_order_id: Some(format!("c-{id}")),
        symbol: "BTC-USD".into(),
        side: "buy",
        order_type: "limit",
        tif: "GTC",
        price: Some(100),
        qty: 5,
        filled: 0,
        remaining: 5,
        status: "new",
        cancel_reason: None,
        priority: Some(id),
        approval: None,
    };
    let mut writes = BatchWrites::default();
    writes.new_orders.push(order(900_001));
    writes.accounts.insert(
        user.account_id,
        AccountChange {
            cash: 1_000,
            cash_reserved: 500,
            open_orders: 1,
        },
    );
    writes.order_changes.push(OrderChange {
        id: 123_456_789,
        filled: 1,
        remaining: 0,
        status: "filled",
        cancel_reason: None,
    });
    let pool = store.matcher_pool(std::time::Duration::from_secs(5));
    let mut tx = MatchTx::begin(&pool).await.expect("begin");
    match tx.write(&writes, chrono::Utc::now()).await {
        Err(MatchError::Stale(why)) => assert!(why.contains("resting orders"), "{why}"),
        other => panic!("a change to an order that is not resting must be stale: {other:?}"),
    }
    drop(tx);
    let after = store
        .account(user.account_id)
        .await
        .expect("read")
        .expect("account");
    assert_eq!(
        after.cash_reserved, before.cash_reserved,
        "the account change was undone"
    );
    assert!(
        store.order(900_001).await.expect("read").is_none(),
        "the new order was undone"
    );

    // Without the stale change the same batch is written whole.
    writes.order_changes.clear();
    let mut tx = MatchTx::begin(&pool).await.expect("begin");
    tx.write(&writes, chrono::Utc::now()).await.expect("write");
    tx.commit().await.expect("commit");
    let after = store
        .account(user.account_id)
        .await
        .expect("read")
        .expect("account");
    assert_eq!(after.cash_reserved, before.cash_reserved + 500);
    assert!(store.order(900_001).await.expect("read").is_some());
}

/// Generates one SQLite test and one PostgreSQL test per suite function.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::common::sqlite_store(&dir).await;
                    super::$name(store).await;
                }
            )*
        }
        mod pg {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: run through scripts/test"]
                async fn $name() {
                    let db = super::common::PgDatabase::create().await;
                    let store = db.store().await;
                    super::$name(store.clone()).await;
                    store.close().await;
                    db.drop_now().await;
                }
            )*
        }
    };
}

both_backends!(
    audit_round_trip,
    audit_pagination,
    audit_is_append_only,
    migrations_are_idempotent_and_ping_works,
    a_stale_batch_write_fails_and_leaves_nothing,
);
