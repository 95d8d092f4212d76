//! Point-in-time restore against the real PostgreSQL (`pg::`): load runs through the API while
//! the archiver ships the change log; a backup is taken mid-load; the exact database state is
//! recorded at several instants (one consistent snapshot read each, which also writes a named
//! restore point); each instant is restored into a fresh database and compared table by table,
//! row by row; a missing segment and a corrupted one are refused with nothing written.

mod backup_common;
mod common;

mod pg {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use axum::http::StatusCode;
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use tradeplane_platform::archive::{self, Target, archiver, segment, storage};
    use tradeplane_platform::backup::{self, BackupError, Location, Progress, Reference};
    use tradeplane_platform::state::AppState;
    use tradeplane_platform::store::Store;

    use super::backup_common::{self, KEY_A, key};
    use super::common::{self, send, send_to};

    const TRADERS: usize = 6;

    fn pool(store: &Store) -> &sqlx::PgPool {
        match store {
            Store::Postgres(p) => p,
            Store::Sqlite(_) => panic!("postgres"),
        }
    }

    /// Every platform table as sorted JSON rows, read in the caller's transaction.
    async fn tables(conn: &mut sqlx::PgConnection) -> BTreeMap<String, Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename NOT IN ('_sqlx_migrations', 'change_log', 'archive_state') ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("tables");
        let mut out = BTreeMap::new();
        for t in names {
            let sql = format!("SELECT to_jsonb(t)::text FROM \"{t}\" t");
            let mut rows: Vec<String> = sqlx::query_scalar(&sql)
                .fetch_all(&mut *conn)
                .await
                .expect("rows");
            rows.sort();
            out.insert(t, rows);
        }
        out
    }

    /// One instant: the state in one snapshot and the restore point written in it.
    struct Instant {
        state: BTreeMap<String, Vec<String>>,
        seq: i64,
        at: DateTime<Utc>,
    }

    async fn record(store: &Store, name: &str) -> Instant {
        let mut tx = pool(store).begin().await.expect("begin");
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .expect("repeatable read");
        let state = tables(&mut tx).await;
        let point = tradeplane_platform::store::archive::restore_point_in(&mut tx, name)
            .await
            .expect("restore point");
        tx.commit().await.expect("commit");
        let row: serde_json::Value = serde_json::from_str(&point.row).expect("json");
        let at = row["at"].as_str().expect("at").parse().expect("time");
        Instant {
            state,
            seq: point.seq,
            at,
        }
    }

    async fn traders(state: &AppState) -> Vec<String> {
        tradeplane_platform::server::ensure_admin(state)
            .await
            .expect("admin");
        let admin = common::access_token(state, "root", "root-password-long").await;
        let mut tokens = Vec::new();
        for i in 0..TRADERS {
            let name = format!("trader{i}");
            let (_, user) = send(
                state,
                "POST",
                "/api/v1/auth/register",
                None,
                Some(json!({"username": name, "password": "password-123"})),
            )
            .await;
            let account = user["account_id"].as_i64().expect("account id");
            for body in [
                json!({"amount": "1000000"}),
                json!({"amount": "1000", "symbol": "AAPL", "cost": "100"}),
            ] {
                let path = format!("/api/v1/admin/accounts/{account}/deposits");
                let (status, r) = send(state, "POST", &path, Some(&admin), Some(body)).await;
                assert_eq!(status, StatusCode::OK, "{r}");
            }
            tokens.push(common::access_token(state, &name, "password-123").await);
        }
        tokens
    }

    fn load(
        state: &AppState,
        tokens: Vec<String>,
        stop: Arc<AtomicBool>,
        placed: Arc<AtomicU64>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let router = tradeplane_platform::http::router(state.clone());
                let (stop, placed) = (stop.clone(), placed.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let side = if (n + i as u64).is_multiple_of(2) {
                            "buy"
                        } else {
                            "sell"
                        };
                        let price = 99 + (n * 7 + i as u64) % 3;
                        let body = json!({"symbol": "AAPL", "side": side, "type": "limit",
                                          "price": price.to_string(), "qty": "1",
                                          "client_order_id": format!("t{i}-{n}")});
                        let (status, _) =
                            send_to(&router, "POST", "/api/v1/orders", Some(&token), Some(body))
                                .await;
                        if status.is_success() {
                            placed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect()
    }

    async fn restored(
        place: &Path,
        target: Option<Target>,
        reference: Option<&Path>,
    ) -> (common::PgDatabase, Result<archive::PitrReport, BackupError>) {
        let db = common::PgDatabase::create().await;
        let store = db.store().await;
        let what =
            Reference::parse(&reference.unwrap_or(place).display().to_string()).expect("reference");
        let r = archive::restore(
            &store,
            what,
            target,
            Some(&key(KEY_A)),
            false,
            &Progress::hidden(),
        )
        .await;
        store.close().await;
        (db, r)
    }

    async fn state_of(db: &common::PgDatabase) -> BTreeMap<String, Vec<String>> {
        let store = db.store().await;
        let mut conn = pool(&store).acquire().await.expect("conn");
        let t = tables(&mut conn).await;
        drop(conn);
        store.close().await;
        t
    }

    /// Asserts two table sets are equal, naming the first table and rows that differ (the
    /// whole state is too large to print).
    fn assert_same(
        got: &BTreeMap<String, Vec<String>>,
        want: &BTreeMap<String, Vec<String>>,
        what: &str,
    ) {
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{what}: tables"
        );
        for (table, rows) in want {
            let mine = &got[table];
            if mine != rows {
                let missing: Vec<&String> =
                    rows.iter().filter(|r| !mine.contains(r)).take(3).collect();
                let extra: Vec<&String> =
                    mine.iter().filter(|r| !rows.contains(r)).take(3).collect();
                panic!(
                    "{what}: table {table} differs ({} rows restored, {} expected); \
                     expected but missing: {missing:?}; restored but not expected: {extra:?}",
                    mine.len(),
                    rows.len()
                );
            }
        }
    }

    fn copy_place(from: &Path, to: &Path) {
        for dir in ["", storage::WAL_DIR] {
            std::fs::create_dir_all(to.join(dir)).expect("mkdir");
            for e in std::fs::read_dir(from.join(dir)).expect("list") {
                let e = e.expect("entry");
                if e.file_type().expect("type").is_file() {
                    std::fs::copy(e.path(), to.join(dir).join(e.file_name())).expect("copy");
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs PostgreSQL: TEST_DATABASE_URL"]
    async fn restore_until_each_instant_matches_it_row_for_row() {
        let source = common::PgDatabase::create().await;
        let dir = tempfile::tempdir().expect("dir");
        let place = dir.path().join("backups");
        let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY_A);
        let state = common::started_state(
            &dir,
            &[
                ("DATABASE_URL", &source.url),
                ("ADMIN_USERNAME", "root"),
                ("ADMIN_PASSWORD", "root-password-long"),
                ("RATE_LIMIT_PER_SECOND", "100000"),
                ("RATE_LIMIT_BURST", "100000"),
                ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
                ("ARCHIVE_DEST", &place.display().to_string()),
                ("ARCHIVE_INTERVAL_SECONDS", "1"),
                ("ARCHIVE_MARK_INTERVAL_MS", "200"),
                ("BACKUP_ENCRYPTION_KEY", &key_b64),
            ],
        )
        .await;
        let tokens = traders(&state).await;
        let cfg = state.config.archive.clone().expect("archive config");
        let stop_archiver = tokio_util::sync::CancellationToken::new();
        let registry = prometheus::Registry::new();
        let archiver = archiver::spawn(
            pool(&state.store).clone(),
            archiver::ArchiverConfig {
                dest: cfg.dest.clone(),
                interval: cfg.interval,
                mark_interval: cfg.mark_interval,
                key: cfg.key.clone(),
                source: "test".into(),
            },
            archiver::ArchiveMetrics::new(&registry).expect("metrics"),
            stop_archiver.clone(),
        );
        // Archiving is on once the triggers exist.
        let mut on = false;
        for _ in 0..100 {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_trigger WHERE tgname LIKE 'tradeplane_archive_%'",
            )
            .fetch_one(pool(&state.store))
            .await
            .expect("triggers");
            if n > 0 {
                on = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(on, "the archiver enabled the change log");

        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(AtomicU64::new(0));
        let tasks = load(&state, tokens, stop.clone(), placed.clone());
        tokio::time::sleep(Duration::from_millis(800)).await;
        let opts = backup::BackupOptions {
            dest: Location::Dir(place.clone()),
            ..backup_common::options(&place, Some(key(KEY_A)), Utc::now())
        };
        let backup = backup::create_backup(&state.store, &opts)
            .await
            .expect("backup");
        let point = backup
            .manifest
            .archive
            .clone()
            .expect("the manifest names its archive point");
        let before_instants = placed.load(Ordering::SeqCst);
        let mut instants = Vec::new();
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            instants.push(record(&state.store, &format!("instant-{i}")).await);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("trader");
        }
        let total = placed.load(Ordering::SeqCst);
        assert!(
            total > before_instants + 20,
            "orders kept flowing during the instants: {before_instants} then {total}"
        );
        // Stop the platform's own background writers (leases, heartbeats) so the end of the
        // archive is a state that can be read.
        state.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let last = tradeplane_platform::store::archive::restore_point(pool(&state.store), "last")
            .await
            .expect("last point");
        let mut conn = pool(&state.store).acquire().await.expect("conn");
        let final_state = tables(&mut conn).await;
        drop(conn);
        // Let the archiver ship everything up to the last point, then stop it (it ships once
        // more on the way out).
        for _ in 0..100 {
            let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM change_log WHERE id <= $1")
                .bind(last.seq)
                .fetch_one(pool(&state.store))
                .await
                .expect("backlog");
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop_archiver.cancel();
        archiver.await.expect("archiver");
        let segments = storage::ArchiveStorage::for_place(&Location::Dir(place.clone()))
            .expect("storage")
            .segments()
            .await
            .expect("segments");
        assert!(
            segments.len() >= 4 && segments.contains(&point.start_segment),
            "segments {segments:?}, backup starts at {}",
            point.start_segment
        );

        // Each instant, by its restore point and (the second) by its time.
        for (i, instant) in instants.iter().enumerate() {
            let (db, r) = restored(&place, Some(Target::Seq(instant.seq)), None).await;
            let report = r.unwrap_or_else(|e| panic!("instant {i}: {e}"));
            let replayed = report.restore.replayed.clone().expect("a replay ran");
            assert!(replayed.transactions > 0, "instant {i}: {replayed:?}");
            let got = state_of(&db).await;
            assert_same(&got, &instant.state, &format!("instant {i}"));
            db.drop_now().await;
        }
        let (db, r) = restored(&place, Some(Target::Time(instants[1].at)), None).await;
        let report = r.expect("until time");
        assert_eq!(
            report.point.as_ref().and_then(|(p, _)| p.seq),
            Some(instants[1].seq)
        );
        assert_same(&state_of(&db).await, &instants[1].state, "until <time>");
        db.drop_now().await;
        // Everything archived: the state after the load stopped.
        let (db, r) = restored(&place, None, None).await;
        r.expect("latest");
        assert_same(
            &state_of(&db).await,
            &final_state,
            "restore without --until",
        );
        let restored_store = db.store().await;
        let archived: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM archive_state) + (SELECT COUNT(*) FROM pg_trigger \
             WHERE tgname LIKE 'tradeplane_archive_%')",
        )
        .fetch_one(pool(&restored_store))
        .await
        .expect("archive state");
        assert_eq!(
            archived, 0,
            "a restored database does not continue its source's archive"
        );
        restored_store.close().await;
        db.drop_now().await;
        // The backup alone, named, without a target: its own moment, no replay.
        let (db, r) = restored(&place, None, Some(&backup.path)).await;
        assert!(r.expect("backup alone").restore.replayed.is_none());
        db.drop_now().await;

        // A missing segment and a corrupted one: refused, nothing written.
        let middle = point.start_segment + 1;
        for (case, damage) in [("missing", 0u8), ("corrupted", 1u8)] {
            let copy = dir.path().join(case);
            copy_place(&place, &copy);
            let victim = copy.join(storage::WAL_DIR).join(segment::name(middle));
            if damage == 0 {
                std::fs::remove_file(&victim).expect("delete");
            } else {
                let mut bytes = std::fs::read(&victim).expect("read");
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                std::fs::write(&victim, bytes).expect("write");
            }
            let (db, r) = restored(&copy, Some(Target::Seq(instants[2].seq)), None).await;
            let err = r.err().unwrap_or_else(|| panic!("{case} segment accepted"));
            assert_eq!(err.exit_code(), backup::EXIT_VERIFICATION, "{case}: {err}");
            assert!(
                err.to_string().contains(&segment::name(middle)),
                "{case}: {err}"
            );
            let untouched = state_of(&db).await;
            assert!(
                untouched.values().all(Vec::is_empty),
                "{case}: nothing written: {untouched:?}"
            );
            db.drop_now().await;
        }

        // Retention: a newer backup kept alone lets the segments before it go.
        let mut newer = backup_common::options(&place, Some(key(KEY_A)), Utc::now());
        newer.retention = backup::RetentionPolicy {
            keep_days: None,
            keep_last: Some(1),
        };
        let report = backup::create_backup(&state.store, &newer)
            .await
            .expect("newer backup");
        let start = report
            .manifest
            .archive
            .expect("archive point")
            .start_segment;
        assert!(report.prune_error.is_none(), "{:?}", report.prune_error);
        let left = storage::ArchiveStorage::for_place(&Location::Dir(place.clone()))
            .expect("storage")
            .segments()
            .await
            .expect("segments");
        assert_eq!(
            report.archive_pruned.deleted as usize,
            segments.iter().filter(|n| **n < start).count(),
            "segments {segments:?}, newer backup starts at {start}, left {left:?}"
        );
        assert!(left.iter().all(|n| *n >= start), "{left:?}");
        state.store.close().await;
        source.drop_now().await;
    }
}
