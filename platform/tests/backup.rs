//! Backups end to end: round trips compared row for row, consistency under concurrent writes,
//! refusal of bad files with the target untouched, `--force`, rollback on failure, retention and
//! the CLI's exit codes. Every suite runs on SQLite; the PostgreSQL ones live in `pg::`.

mod backup_common;
mod common;

use backup_common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use tradeplane_platform::backup::{
    self, BackupError, BackupKey, RetentionPolicy, create_backup, format, restore_file, verify_file,
};
use tradeplane_platform::store::{NewAuditEvent, Store};

/// Backs up a seeded `source`, restores into the migrated `target` (which has the test tables),
/// and compares every table row for row; then checks new ids do not collide.
async fn round_trip(source: Store, target: Store, dir: &Path, key: Option<BackupKey>) {
    create_test_tables(&source, false).await;
    fill_test_tables(&source).await;
    fill_platform_tables(&source, 6).await;
    create_test_tables(&target, false).await;
    let before = fingerprint(&source).await;
    for table in [
        "audit_events",
        "users",
        "accounts",
        "orders",
        "trades",
        "backup_types",
    ] {
        assert!(
            before.get(table).is_some_and(|rows| !rows.is_empty()),
            "{table} is filled"
        );
    }

    let report = create_backup(&source, &options(dir, key.clone(), Utc::now()))
        .await
        .expect("backup");
    let m = &report.manifest;
    assert_eq!(m.total_rows as usize, total_rows(&before), "{m:?}");
    assert_eq!(m.encryption.is_some(), key.is_some());
    assert!(report.path.exists());
    let names: Vec<&str> = m.tables.iter().map(|t| t.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).expect(n);
    assert!(pos("users") < pos("accounts") && pos("accounts") < pos("orders"));
    assert!(pos("orders") < pos("trades"));
    assert!(!names.contains(&"_sqlx_migrations"));
    verify_file(&report.path, key.as_ref()).expect("verifies");

    let restored = restore_file(&target, &report.path, key.as_ref(), false)
        .await
        .expect("restore");
    assert_eq!(restored.total_rows, m.total_rows);
    let after = fingerprint(&target).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &before {
        assert_eq!(
            rows, &after[table],
            "table {table} differs after the restore"
        );
    }

    // The sequences were restored: new rows get fresh ids on both sides alike.
    let event = NewAuditEvent {
        actor: "after".into(),
        action: "restore.check".into(),
        subject: None,
        request_id: None,
        details: serde_json::json!({}),
    };
    let next_source = source.append_audit(&event).await.expect("append to source");
    let next_target = target.append_audit(&event).await.expect("append to target");
    assert_eq!(next_source, next_target, "the id counter was restored");
}

#[tokio::test]
async fn sqlite_round_trip_compares_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let target = sqlite_at(dir.path(), "target.db").await;
    round_trip(source, target, &dir.path().join("backups"), None).await;
}

#[tokio::test]
async fn sqlite_round_trip_encrypted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let target = sqlite_at(dir.path(), "target.db").await;
    round_trip(
        source,
        target,
        &dir.path().join("backups"),
        Some(key(KEY_A)),
    )
    .await;
}

/// Pairs of rows written in one transaction into two tables while the backup runs; the
/// restored data must hold only complete pairs (a dump outside one snapshot reads `pair_b`
/// after `pair_a` and sees pairs whose first half it missed).
async fn consistent_under_concurrent_writes(source: Store, target: Store, dir: &Path) {
    let ddl = "CREATE TABLE pair_a (k BIGINT PRIMARY KEY, pad TEXT NOT NULL); \
               CREATE TABLE pair_b (k BIGINT PRIMARY KEY, pad TEXT NOT NULL);";
    exec(&source, ddl).await;
    exec(&target, ddl).await;
    let pad = "x".repeat(200);
    // Enough rows that dumping pair_a takes a while.
    let seed = format!(
        "WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 20000) \
         INSERT INTO pair_a SELECT k, '{pad}' FROM s; \
         WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 20000) \
         INSERT INTO pair_b SELECT k, '{pad}' FROM s;"
    );
    exec(&source, &seed).await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, written) = (source.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut k = 1_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                macro_rules! pair {
                    ($pool:expr) => {{
                        let mut tx = $pool.begin().await.expect("begin");
                        for t in ["pair_a", "pair_b"] {
                            sqlx::query(&format!("INSERT INTO {t} (k, pad) VALUES ($1, 'w')"))
                                .bind(k)
                                .execute(&mut *tx)
                                .await
                                .expect("insert");
                            // Widen the window between the two halves.
                            tokio::task::yield_now().await;
                        }
                        tx.commit().await.expect("commit");
                    }};
                }
                match &store {
                    Store::Postgres(p) => pair!(p),
                    Store::Sqlite(p) => pair!(p),
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the writer get going, then back up while it runs.
    while written.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let at_start = written.load(Ordering::Relaxed);
    let report = create_backup(&source, &options(dir, None, Utc::now()))
        .await
        .expect("backup during writes");
    let at_end = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(
        at_end > at_start,
        "the writer committed pairs while the backup ran ({at_start} -> {at_end})"
    );

    restore_file(&target, &report.path, None, false)
        .await
        .expect("restore");
    let f = fingerprint(&target).await;
    let keys = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = f[t]
            .iter()
            .map(|r| r.split([',', '|']).next().unwrap_or_default().to_owned())
            .collect();
        v.sort();
        v
    };
    let (a, b) = (keys("pair_a"), keys("pair_b"));
    assert!(a.len() >= 20_000 + 5, "{}", a.len());
    assert_eq!(a.len(), b.len(), "only complete pairs are in the backup");
    assert_eq!(a, b);
    let counts: BTreeMap<&str, u64> = report
        .manifest
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    assert_eq!(counts["pair_a"], counts["pair_b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_during_writes_is_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let target = sqlite_at(dir.path(), "target.db").await;
    consistent_under_concurrent_writes(source, target, &dir.path().join("backups")).await;
}

fn rewrite_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value), magic: Option<&str>) {
    let bytes = std::fs::read(path).expect("read");
    let first = bytes.iter().position(|b| *b == b'\n').expect("magic line") + 1;
    let second = first
        + bytes[first..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("manifest")
        + 1;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&bytes[first..second]).expect("manifest json");
    edit(&mut manifest);
    let mut out = magic
        .map(|m| format!("{m}\n").into_bytes())
        .unwrap_or_else(|| bytes[..first].to_vec());
    out.extend_from_slice(manifest.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&bytes[second..]);
    std::fs::write(path, out).expect("write");
}

fn expect_refusal(result: Result<impl std::fmt::Debug, BackupError>, code: u8, needle: &str) {
    let err = result.expect_err(needle);
    assert_eq!(err.exit_code(), code, "{err}");
    assert!(
        err.to_string().contains(needle),
        "message {:?} should mention {needle:?}",
        err.to_string()
    );
}

/// Bad files are refused by `verify` and by `restore`, with the target untouched.
async fn bad_files_are_refused(source: Store, target: Store, dir: &Path) {
    fill_platform_tables(&source, 3).await;
    let good_enc = create_backup(&source, &options(dir, Some(key(KEY_A)), Utc::now()))
        .await
        .expect("encrypted backup")
        .path;
    let good_plain = create_backup(
        &source,
        &options(dir, None, Utc::now() + Duration::seconds(1)),
    )
    .await
    .expect("plain backup")
    .path;
    // The target holds its own data; every refusal must leave it exactly so.
    target
        .append_audit(&NewAuditEvent {
            actor: "target".into(),
            action: "keep.me".into(),
            subject: None,
            request_id: None,
            details: serde_json::json!({}),
        })
        .await
        .expect("target data");
    let untouched = fingerprint(&target).await;

    let copy = |name: &str, from: &Path| -> PathBuf {
        let p = dir.join(name);
        std::fs::copy(from, &p).expect("copy");
        p
    };
    let len = std::fs::metadata(&good_enc).expect("stat").len() as usize;

    let corrupted = copy("corrupted.tpb", &good_enc);
    let mut bytes = std::fs::read(&corrupted).expect("read");
    bytes[len - 40] ^= 0x01;
    std::fs::write(&corrupted, &bytes).expect("write");

    let truncated = copy("truncated.tpb", &good_enc);
    std::fs::write(&truncated, &bytes[..len - 100]).expect("write");

    let future_format = copy("future-format.tpb", &good_plain);
    rewrite_header(&future_format, |_| {}, Some("tradeplane-backup 2"));

    let future_schema = copy("future-schema.tpb", &good_plain);
    rewrite_header(
        &future_schema,
        |m| m["schema_version"] = 99_999_999_999i64.into(),
        None,
    );

    let wrong_counts = copy("wrong-counts.tpb", &good_plain);
    rewrite_header(
        &wrong_counts,
        |m| m["tables"][0]["rows"] = 12345.into(),
        None,
    );

    let not_a_backup = dir.join("notes.tpb");
    std::fs::write(&not_a_backup, b"hello").expect("write");

    let missing = dir.join("missing.tpb");
    let ka = key(KEY_A);
    let kb = key(KEY_B);
    let cases: Vec<(&Path, Option<&BackupKey>, u8, &str)> = vec![
        (&corrupted, Some(&ka), 3, "checksum mismatch"),
        (&truncated, Some(&ka), 3, "truncated"),
        (&good_enc, Some(&kb), 3, "wrong key"),
        (&good_enc, None, 3, "BACKUP_ENCRYPTION_KEY is not set"),
        (
            &future_format,
            None,
            3,
            "unsupported backup format version 2",
        ),
        (&future_schema, None, 3, "newer than this build"),
        (&wrong_counts, None, 3, "do not match"),
        (&not_a_backup, None, 3, "not a Tradeplane backup"),
        (&missing, None, 5, "cannot open"),
    ];
    for (path, k, code, needle) in &cases {
        expect_refusal(verify_file(path, *k), *code, needle);
        expect_refusal(restore_file(&target, path, *k, true).await, *code, needle);
        assert_eq!(
            fingerprint(&target).await,
            untouched,
            "{} left the target untouched",
            path.display()
        );
    }

    // A database never opened stays unopened: nothing connects before verification.
    let never = dir.join("never.db");
    let store = unmigrated_sqlite(&never);
    expect_refusal(
        restore_file(&store, &corrupted, Some(&ka), false).await,
        3,
        "checksum",
    );
    assert!(!never.exists(), "the database file was not even created");

    // Non-empty target: refused without --force, replaced with it.
    expect_refusal(
        restore_file(&target, &good_plain, None, false).await,
        6,
        "not empty",
    );
    assert_eq!(fingerprint(&target).await, untouched);
    let report = restore_file(&target, &good_enc, Some(&ka), true)
        .await
        .expect("forced restore");
    assert!(report.replaced_existing);
    assert_eq!(fingerprint(&target).await, fingerprint(&source).await);
}

#[tokio::test]
async fn sqlite_bad_files_are_refused_and_the_target_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let target = sqlite_at(dir.path(), "target.db").await;
    bad_files_are_refused(source, target, &dir.path().join("backups")).await;
}

/// A restore that fails late (a constraint the data violates) leaves the target as it was.
async fn rollback_on_late_failure(source: Store, target: Store, dir: &Path) {
    create_test_tables(&source, false).await;
    fill_test_tables(&source).await;
    fill_platform_tables(&source, 4).await;
    create_test_tables(&target, true).await;
    let before = fingerprint(&target).await;
    let path = create_backup(&source, &options(dir, None, Utc::now()))
        .await
        .expect("backup")
        .path;
    expect_refusal(
        restore_file(&target, &path, None, false).await,
        4,
        "backup_types",
    );
    assert_eq!(fingerprint(&target).await, before, "rolled back");
}

#[tokio::test]
async fn sqlite_failed_restore_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let target = sqlite_at(dir.path(), "target.db").await;
    rollback_on_late_failure(source, target, &dir.path().join("backups")).await;
}

#[tokio::test]
async fn retention_keeps_and_deletes_exactly_the_right_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    fill_platform_tables(&source, 2).await;
    let dest = dir.path().join("backups");
    let now = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let mut made = BTreeMap::new();
    for days in [1, 3, 10, 20, 40] {
        let r = create_backup(&source, &options(&dest, None, now - Duration::days(days)))
            .await
            .expect("old backup");
        made.insert(days, r.path);
    }
    // Files that are not ours, or look like ours without a manifest, are never touched.
    let fake = dest.join(format::file_name(now - Duration::days(400)));
    std::fs::write(&fake, b"not a backup").expect("fake");
    let notes = dest.join("notes.txt");
    std::fs::write(&notes, b"keep").expect("notes");
    let stray_tmp = dest.join(".tradeplane-backup-20200101T000000.000Z.tpb.1.tmp");
    std::fs::write(&stray_tmp, b"partial").expect("tmp");

    let mut opts = options(&dest, None, now);
    opts.retention = RetentionPolicy {
        keep_days: Some(7),
        keep_last: Some(2),
    };
    let r = create_backup(&source, &opts)
        .await
        .expect("backup with retention");
    assert!(r.prune_error.is_none(), "{:?}", r.prune_error);
    let mut deleted = r.pruned.deleted.clone();
    deleted.sort();
    let mut expected = vec![made[&10].clone(), made[&20].clone(), made[&40].clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    for p in [&r.path, &made[&1], &made[&3], &fake, &notes, &stray_tmp] {
        assert!(p.exists(), "{} kept", p.display());
    }
    for p in &expected {
        assert!(!p.exists(), "{} deleted", p.display());
    }

    // Count only: the newest one survives with the new backup.
    let mut opts = options(&dest, None, now + Duration::minutes(1));
    opts.retention = RetentionPolicy {
        keep_days: None,
        keep_last: Some(2),
    };
    let r2 = create_backup(&source, &opts).await.expect("second backup");
    let mut deleted = r2.pruned.deleted.clone();
    deleted.sort();
    let mut expected = vec![made[&1].clone(), made[&3].clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(r.path.exists() && r2.path.exists() && fake.exists() && notes.exists());
}

#[tokio::test]
async fn backup_leaves_no_file_when_it_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not migrated: the snapshot fails reading the schema version.
    let store = unmigrated_sqlite(&dir.path().join("empty.db"));
    let dest = dir.path().join("backups");
    let err = create_backup(&store, &options(&dest, None, Utc::now()))
        .await
        .expect_err("no migrations table");
    assert_eq!(err.exit_code(), backup::EXIT_DATABASE, "{err}");
    let left: Vec<_> = std::fs::read_dir(&dest)
        .expect("dest exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

/// A backup taken at an older schema version restores into this build: the target is migrated
/// to the backup's version, filled, then brought up to date like an upgrade.
#[tokio::test]
async fn older_backup_restores_then_upgrades() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = unmigrated_sqlite(&dir.path().join("old.db"));
    let mut old = sqlx::migrate!("./migrations/sqlite");
    let first = old.iter().map(|m| m.version).min().expect("a migration");
    old.migrations =
        std::borrow::Cow::Owned(old.iter().filter(|m| m.version == first).cloned().collect());
    let Store::Sqlite(pool) = &source else {
        unreachable!()
    };
    old.run(pool).await.expect("old schema");
    fill_test_tables_audit_only(&source).await;
    let path = create_backup(&source, &options(dir.path(), None, Utc::now()))
        .await
        .expect("backup")
        .path;
    let target = unmigrated_sqlite(&dir.path().join("new.db"));
    let report = restore_file(&target, &path, None, false)
        .await
        .expect("restore");
    assert_eq!(report.schema_version, first);
    assert_eq!(report.migrated_to, target.schema_version());
    // The rows are restored as they were; columns later migrations added (0060's score, tags
    // and address) are NULL on them.
    let restored = fingerprint(&target).await["audit_events"].clone();
    let original = fingerprint(&source).await["audit_events"].clone();
    assert_eq!(restored.len(), original.len());
    for (new, old) in restored.iter().zip(&original) {
        let added = new
            .strip_prefix(old.as_str())
            .expect("the old columns first, unchanged");
        assert!(
            added.split('|').skip(1).all(|c| c == "null:NULL"),
            "{added}"
        );
    }
    if report.migrated_to > first {
        // The newer migrations' tables exist (empty) after the upgrade.
        assert!(fingerprint(&target).await.len() > fingerprint(&source).await.len());
    }
}

/// Rows of the oldest schema's audit table, written with its own columns only (today's
/// [`Store::append_audit`] also writes the columns later migrations added).
async fn fill_test_tables_audit_only(store: &Store) {
    let Store::Sqlite(pool) = store else {
        unreachable!()
    };
    for n in 0..5 {
        sqlx::query(
            "INSERT INTO audit_events (occurred_at, actor, action, details) VALUES ($1, 'old', $2, $3)",
        )
        .bind(Utc::now())
        .bind(format!("a{n}"))
        .bind(serde_json::json!({"n": n}).to_string())
        .execute(pool)
        .await
        .expect("audit");
    }
}

/// The binary: the documented commands and their exit codes.
#[tokio::test]
async fn cli_commands_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    fill_platform_tables(&source, 2).await;
    let target_db = dir.path().join("target.db");
    let dest = dir.path().join("backups");
    let metrics = dir.path().join("backup.prom");
    let result = dir.path().join("termination-log");
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(KEY_A);
    let run = |db: &Path, key: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
        cmd.args(args)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("LOG_FORMAT", "json")
            .env_remove("BACKUP_ENCRYPTION_KEY");
        if let Some(k) = key {
            cmd.env("BACKUP_ENCRYPTION_KEY", k);
        }
        let out = cmd.output().expect("run the binary");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let src_db = dir.path().join("source.db");
    let dest_s = dest.to_str().expect("utf-8");
    let (code, stdout, stderr) = run(
        &src_db,
        Some(&key_b64),
        &[
            "backup",
            "--dest",
            dest_s,
            "--keep-days",
            "30",
            "--keep-last",
            "3",
            "--metrics-file",
            metrics.to_str().expect("utf-8"),
            "--result-file",
            result.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("backup written"), "{stdout}");
    let line: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).expect("result file"))
            .expect("one JSON line");
    assert_eq!(line["operation"], "backup");
    assert_eq!(line["success"], true);
    assert!(line["size_bytes"].as_u64().is_some_and(|n| n > 0), "{line}");
    assert!(line["rows"].as_u64().is_some_and(|n| n > 0), "{line}");
    assert!(
        stdout.contains("\"outcome\":\"success\""),
        "structured log: {stdout}"
    );
    let prom = std::fs::read_to_string(&metrics).expect("metrics file");
    assert!(prom.contains("backup_last_run_success 1"), "{prom}");
    assert!(
        prom.contains("backup_last_success_timestamp_seconds"),
        "{prom}"
    );
    let file = std::fs::read_dir(&dest)
        .expect("dest")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tpb"))
        .expect("a backup file");
    let file_s = file.to_str().expect("utf-8");

    let (code, stdout, _) = run(&target_db, None, &["backup", "list", dest_s]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(file_s) && stdout.contains("encrypted"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&target_db, Some(&key_b64), &["backup", "verify", file_s]);
    assert_eq!(code, 0);
    assert!(stdout.contains("backup OK"), "{stdout}");
    let wrong = base64::engine::general_purpose::STANDARD.encode(KEY_B);
    let (code, _, stderr) = run(&target_db, Some(&wrong), &["backup", "verify", file_s]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("wrong key"), "{stderr}");
    let (code, _, stderr) = run(&target_db, Some("short"), &["backup", "verify", file_s]);
    assert_eq!(code, 2, "malformed key is a usage error: {stderr}");
    let (code, _, _) = run(&target_db, None, &["backup"]);
    assert_eq!(code, 2, "missing --dest");
    let (code, _, _) = run(&target_db, None, &["backup", "verify", "/nonexistent.tpb"]);
    assert_eq!(code, 5);

    let (code, stdout, stderr) = run(&target_db, Some(&key_b64), &["restore", file_s]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("audit_events"),
        "prints what it restored: {stdout}"
    );
    let (code, _, stderr) = run(&target_db, Some(&key_b64), &["restore", file_s]);
    assert_eq!(code, 6, "second restore is refused: {stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, _, stderr) = run(&target_db, Some(&key_b64), &["restore", file_s, "--force"]);
    assert_eq!(code, 0, "{stderr}");
    let target = unmigrated_sqlite(&target_db);
    assert_eq!(fingerprint(&target).await, fingerprint(&source).await);

    // A failed run keeps the last success time in the metrics file and exits non-zero.
    let (code, _, _) = run(
        &dir.path().join("nope").join("missing.db"),
        None,
        &[
            "backup",
            "--dest",
            dest_s,
            "--metrics-file",
            metrics.to_str().expect("utf-8"),
            "--result-file",
            result.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 4);
    let line: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).expect("result file"))
            .expect("one JSON line");
    assert_eq!(
        (line["success"].clone(), line["exit_code"].clone()),
        (false.into(), 4.into())
    );
    assert!(
        line["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{line}"
    );
    let prom = std::fs::read_to_string(&metrics).expect("metrics file");
    assert!(prom.contains("backup_last_run_success 0"), "{prom}");
    assert!(
        prom.contains("backup_last_success_timestamp_seconds"),
        "{prom}"
    );
}

mod pg {
    use super::*;
    use common::PgDatabase;

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn round_trip_compares_every_row() {
        let (a, b) = (PgDatabase::create().await, PgDatabase::create().await);
        let dir = tempfile::tempdir().expect("tempdir");
        round_trip(
            a.store().await,
            b.store().await,
            dir.path(),
            Some(key(KEY_A)),
        )
        .await;
        a.drop_now().await;
        b.drop_now().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn backup_during_writes_is_consistent() {
        let (a, b) = (PgDatabase::create().await, PgDatabase::create().await);
        let dir = tempfile::tempdir().expect("tempdir");
        consistent_under_concurrent_writes(a.store().await, b.store().await, dir.path()).await;
        a.drop_now().await;
        b.drop_now().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn bad_files_are_refused_and_the_target_untouched() {
        let (a, b) = (PgDatabase::create().await, PgDatabase::create().await);
        let dir = tempfile::tempdir().expect("tempdir");
        bad_files_are_refused(a.store().await, b.store().await, dir.path()).await;
        a.drop_now().await;
        b.drop_now().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn failed_restore_rolls_back() {
        let (a, b) = (PgDatabase::create().await, PgDatabase::create().await);
        let dir = tempfile::tempdir().expect("tempdir");
        rollback_on_late_failure(a.store().await, b.store().await, dir.path()).await;
        a.drop_now().await;
        b.drop_now().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test"]
    async fn sqlite_backup_is_refused_by_postgres() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        let path = create_backup(&source, &options(dir.path(), None, Utc::now()))
            .await
            .expect("backup")
            .path;
        let b = PgDatabase::create().await;
        expect_refusal(
            restore_file(&b.store().await, &path, None, false).await,
            6,
            "cannot be restored into postgres",
        );
        b.drop_now().await;
    }
}

/// Backups hold password hashes: the file is 0600, a directory the platform creates is 0700, and
/// a directory that already exists keeps the mode its owner gave it.
#[tokio::test]
async fn backup_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_at(dir.path(), "source.db").await;
    let dest = dir.path().join("new").join("backups");
    let r = create_backup(&source, &options(&dest, None, Utc::now()))
        .await
        .expect("backup");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&r.path), 0o600, "backup file");
    assert_eq!(mode(&dest), 0o700, "created directory");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let r = create_backup(&source, &options(&shared, None, Utc::now()))
        .await
        .expect("backup");
    assert_eq!(mode(&r.path), 0o600);
    assert_eq!(mode(&shared), 0o750, "an existing directory is left alone");
}
