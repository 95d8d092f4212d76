//! The fence of symbol leases, at the storage layer: a replica whose lease on a symbol expired
//! and was taken over locks nothing for it, in the full path's lock and in the optimistic guard
//! alike (so its batch writes nothing and goes back to be routed), a write carrying its old
//! token fails whole, its renewals fail, and a takeover waits for a batch that locked the symbol under a
//! valid lease to finish, so a batch is never half-applied across owners.

mod common;

use std::time::Duration;

use std::collections::BTreeMap;
use tradeplane_platform::store::Store;
use tradeplane_platform::store::leases;

use tradeplane_platform::store::NewAuditEvent;
use tradeplane_platform::store::market::SymbolRow;
use tradeplane_platform::store::matching::{BatchWrites, Fence, MatchError, MatchPool, MatchTx};

mod pg {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn lease_renewals_never_deadlock_with_batches() {
        super::lease_renewals_never_deadlock_with_batches().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn a_replica_that_lost_its_lease_locks_and_renews_nothing() {
        super::a_replica_that_lost_its_lease_locks_and_renews_nothing().await;
    }
}

async fn a_replica_that_lost_its_lease_locks_and_renews_nothing() {
    let db = common::PgDatabase::create().await;
    let store = db.store().await;
    let Store::Postgres(pool) = &store else {
        panic!("postgres")
    };
    leases::ensure_symbols(pool, &["AAA".to_owned()])
        .await
        .expect("symbols");
    let short = Duration::from_millis(500);
    let a = leases::acquire(pool, "replica-a", "AAA", short)
        .await
        .expect("acquire")
        .expect("a takes the free lease");
    assert!(
        leases::acquire(pool, "replica-b", "AAA", short)
            .await
            .expect("acquire")
            .is_none(),
        "b cannot take a lease that is still valid"
    );
    let matcher = MatchPool::Postgres(pool.clone());

    // A batch of `a` locks the symbol under its valid lease; the lease then runs out and `b`
    // tries to take it: the takeover waits until a's batch has committed.
    let mut tx = MatchTx::begin(&matcher).await.expect("begin");
    let rows = tx
        .lock_symbols(&[("AAA".to_owned(), a)], Some("replica-a"), 0)
        .await
        .expect("lock");
    assert!(rows.contains_key("AAA"), "the owner locks its symbol");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let takeover = {
        let pool = pool.clone();
        tokio::spawn(async move {
            leases::acquire(&pool, "replica-b", "AAA", Duration::from_secs(30)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "a takeover waits for the batch that holds the symbol"
    );
    tx.commit().await.expect("commit");
    let b = takeover
        .await
        .expect("task")
        .expect("acquire")
        .expect("b takes the expired lease");
    assert!(b > a, "the fencing token grows: {a} -> {b}");

    // From now on `a` locks nothing for the symbol and cannot renew; `b` can.
    let mut tx = MatchTx::begin(&matcher).await.expect("begin");
    let rows = tx
        .lock_symbols(&[("AAA".to_owned(), a)], Some("replica-a"), 0)
        .await
        .expect("lock");
    assert!(rows.is_empty(), "the old owner's token locks nothing");
    drop(tx);
    // Nor does the optimistic batch's guard, and a write fenced with the old token (had the
    // matcher not checked the guard's answer) changes no symbol row and fails whole.
    let mut tx = MatchTx::begin(&matcher).await.expect("begin");
    let guarded = tx
        .guard(&[("AAA".to_owned(), a)], Some("replica-a"), &[])
        .await
        .expect("guard");
    assert!(
        guarded.symbols.is_empty(),
        "the old owner's guard locks nothing"
    );
    let writes = BatchWrites {
        symbols: BTreeMap::from([(
            "AAA".to_owned(),
            SymbolRow {
                seq: 99,
                md_seq: 99,
                status: "open".into(),
                last_trade: None,
            },
        )]),
        audits: vec![NewAuditEvent {
            actor: "replica-a".into(),
            action: "fence.test".into(),
            subject: None,
            request_id: None,
            details: serde_json::json!({}),
        }],
        fence: Some(Fence {
            owner: "replica-a".into(),
            tokens: BTreeMap::from([("AAA".to_owned(), a)]),
        }),
        ..BatchWrites::default()
    };
    let refused = tx.write(&writes, chrono::Utc::now()).await;
    assert!(
        matches!(refused, Err(MatchError::Stale(_))),
        "a fenced write under a lost lease is stale: {refused:?}"
    );
    drop(tx);
    let (seq, audits): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT seq FROM symbols WHERE symbol = 'AAA'), \
         (SELECT count(*) FROM audit_events WHERE action = 'fence.test')",
    )
    .fetch_one(pool)
    .await
    .expect("read");
    assert_ne!(seq, 99, "the symbol row is untouched");
    assert_eq!(audits, 0, "nothing of the batch was written");
    let renewed = leases::renew(pool, "replica-a", &[("AAA".to_owned(), a)], short)
        .await
        .expect("renew");
    assert!(renewed.is_empty(), "the old owner renews nothing");
    let mut tx = MatchTx::begin(&matcher).await.expect("begin");
    let rows = tx
        .lock_symbols(&[("AAA".to_owned(), b)], Some("replica-b"), 3)
        .await
        .expect("lock");
    assert!(rows.contains_key("AAA"), "the new owner locks it");
    // The lock also allocated the batch's three order ids: handing them out sends nothing.
    let sent = tx.statements();
    let ids = tx.allocate_order_ids(3).await.expect("ids");
    assert_eq!(tx.statements(), sent, "the ids came with the symbol lock");
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "distinct ids: {ids:?}");
    // More than were reserved: allocated by a statement of its own, after the reserved ones.
    let more = tx.allocate_order_ids(2).await.expect("more ids");
    assert_eq!(tx.statements(), sent + 1);
    assert!(more.iter().all(|m| *m > ids[2]), "{more:?} follow {ids:?}");
    drop(tx);
    store.close().await;
    db.drop_now().await;
}

/// A replica renews its leases while its matcher's batches lock the same symbol rows: both lock
/// them in symbol order, so hammering both at once for two seconds never deadlocks (before the
/// renewal locked in order, the same loop met PostgreSQL's deadlock detector within a second).
async fn lease_renewals_never_deadlock_with_batches() {
    let db = common::PgDatabase::create().await;
    let store = db.store().await;
    let Store::Postgres(pool) = &store else {
        panic!("postgres")
    };
    let symbols: Vec<String> = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    leases::ensure_symbols(pool, &symbols)
        .await
        .expect("symbols");
    let long = Duration::from_secs(60);
    let mut held = Vec::new();
    for s in &symbols {
        let token = leases::acquire(pool, "replica-a", s, long)
            .await
            .expect("acquire")
            .expect("free lease");
        held.push((s.clone(), token));
    }
    // Renew in reverse symbol order, the order a careless caller might pass.
    let mut reversed = held.clone();
    reversed.reverse();
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let renewer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while std::time::Instant::now() < until {
                let renewed = leases::renew(&pool, "replica-a", &reversed, long)
                    .await
                    .expect("a renewal never deadlocks");
                assert_eq!(renewed.len(), 6);
                n += 1;
            }
            n
        })
    };
    let matcher = MatchPool::Postgres(pool.clone());
    let mut batches = 0u32;
    while std::time::Instant::now() < until {
        let mut tx = MatchTx::begin(&matcher).await.expect("begin");
        let rows = tx
            .lock_symbols(&held, Some("replica-a"), 1)
            .await
            .expect("a batch's lock never deadlocks");
        assert_eq!(rows.len(), 6);
        tx.commit().await.expect("commit");
        batches += 1;
    }
    let renewals = renewer.await.expect("renewer");
    assert!(
        batches > 10 && renewals > 10,
        "{batches} batches, {renewals} renewals"
    );
    store.close().await;
    db.drop_now().await;
}
