//! Backups in S3-compatible object storage, against a real server (`moto_server`, started on a
//! loopback port with SigV4 authentication enforced): round trip compared row for row, retention
//! by age and count, an interrupted upload, wrong credentials and a missing bucket, and the CLI.
//! The suite lives in `s3::` and is `#[ignore]`d: `scripts/test` runs it when `moto_server` is
//! installed, and always in CI.

mod backup_common;
mod common;

mod s3 {
    use std::time::Duration as StdDuration;

    use base64::Engine;
    use chrono::{DateTime, Duration, Utc};
    use tradeplane_platform::backup::{
        BackupOptions, BackupRef, Location, Progress, Reference, RetentionPolicy, create_backup,
        format, remote, restore_backup, s3::Bucket, verify_backup,
    };

    use super::backup_common::moto::moto;
    use super::backup_common::*;

    fn place(url: &str, vars: Vec<(String, String)>) -> Location {
        Reference::parse_with(url, vars)
            .expect("location")
            .into_place("test")
            .expect("a place")
    }

    fn s3_options(dest: Location, now: DateTime<Utc>) -> BackupOptions {
        let mut o = options(std::path::Path::new("/unused"), None, now);
        o.dest = dest;
        o
    }

    fn bucket(url: &str) -> Bucket {
        let Location::S3(t) = place(url, moto().vars()) else {
            unreachable!()
        };
        Bucket::connect(&t).expect("client")
    }

    async fn names(url: &str) -> Vec<String> {
        let mut n: Vec<String> = bucket(url)
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect();
        n.sort();
        n
    }

    #[tokio::test]
    #[ignore = "needs moto_server: run through scripts/test"]
    async fn round_trip_compares_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        let target = sqlite_at(dir.path(), "target.db").await;
        create_test_tables(&source, false).await;
        fill_test_tables(&source).await;
        fill_platform_tables(&source, 6).await;
        create_test_tables(&target, false).await;
        let before = fingerprint(&source).await;

        let mut vars = moto().vars();
        vars.push(("AWS_SERVER_SIDE_ENCRYPTION".into(), "AES256".into()));
        let mut opts = s3_options(place("s3://tp-roundtrip", vars), Utc::now());
        opts.key = Some(key(KEY_A));
        let report = create_backup(&source, &opts).await.expect("backup to s3");
        let name = format::file_name(opts.now);
        assert_eq!(
            report.path.to_string_lossy(),
            format!("s3://tp-roundtrip/{name}")
        );
        assert_eq!(report.manifest.total_rows as usize, total_rows(&before));
        assert_eq!(
            names("s3://tp-roundtrip").await,
            vec![name.clone(), format!("{name}.payload")],
            "a manifest object and a payload object"
        );
        let Location::S3(target_loc) = &opts.dest else {
            unreachable!()
        };
        let backup = BackupRef::S3 {
            target: target_loc.clone(),
            name: name.clone(),
        };
        let verified = verify_backup(&backup, Some(&key(KEY_A)))
            .await
            .expect("verifies");
        assert_eq!(verified.manifest, report.manifest);
        let wrong = verify_backup(&backup, Some(&key(KEY_B)))
            .await
            .expect_err("wrong key");
        assert_eq!(wrong.exit_code(), 3, "{wrong}");

        let restored = restore_backup(
            &target,
            &backup,
            Some(&key(KEY_A)),
            false,
            &Progress::hidden(),
        )
        .await
        .expect("restore from s3");
        assert_eq!(restored.total_rows, report.manifest.total_rows);
        let after = fingerprint(&target).await;
        for (table, rows) in &before {
            assert_eq!(
                rows, &after[table],
                "table {table} differs after the restore"
            );
        }
        assert_eq!(before.len(), after.len());

        // A payload altered in the bucket is refused before the database is touched.
        let b = bucket("s3://tp-roundtrip");
        let mut payload = Vec::new();
        b.download(&format!("{name}.payload"), &mut payload)
            .await
            .expect("download");
        let mid = payload.len() / 2;
        payload[mid] ^= 1;
        b.put(&format!("{name}.payload"), payload)
            .await
            .expect("tamper");
        let err = restore_backup(
            &target,
            &backup,
            Some(&key(KEY_A)),
            true,
            &Progress::hidden(),
        )
        .await
        .expect_err("tampered");
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(fingerprint(&target).await, after, "target untouched");
    }

    #[tokio::test]
    #[ignore = "needs moto_server: run through scripts/test"]
    async fn retention_by_age_and_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        fill_platform_tables(&source, 2).await;
        let url = "s3://tp-retention";
        let now = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut made = std::collections::BTreeMap::new();
        for days in [1, 3, 10, 20, 40] {
            let at = now - Duration::days(days);
            create_backup(&source, &s3_options(place(url, moto().vars()), at))
                .await
                .expect("old backup");
            made.insert(days, format::file_name(at));
        }
        // Things that are not backups: an object of someone else, a payload without manifest
        // (an interrupted run, too young to be removed), a manifest-named object with garbage.
        let b = bucket(url);
        b.put("notes.txt", b"keep".to_vec()).await.expect("notes");
        let orphan = format!("{}.payload", format::file_name(now - Duration::days(2)));
        b.put(&orphan, b"partial".to_vec()).await.expect("orphan");
        let garbage = format::file_name(now - Duration::days(400));
        b.put(&garbage, b"not a manifest".to_vec())
            .await
            .expect("garbage");

        let mut opts = s3_options(place(url, moto().vars()), now);
        opts.retention = RetentionPolicy {
            keep_days: Some(7),
            keep_last: Some(2),
        };
        let r = create_backup(&source, &opts)
            .await
            .expect("backup with retention");
        assert!(r.prune_error.is_none(), "{:?}", r.prune_error);
        assert_eq!(r.pruned.deleted.len(), 3, "{:?}", r.pruned.deleted);
        let left = names(url).await;
        for d in [10, 20, 40] {
            assert!(!left.contains(&made[&d]), "{} deleted", made[&d]);
            assert!(
                !left.contains(&format!("{}.payload", made[&d])),
                "payload deleted too"
            );
        }
        for d in [1, 3] {
            assert!(left.contains(&made[&d]) && left.contains(&format!("{}.payload", made[&d])));
        }
        for other in ["notes.txt", orphan.as_str(), garbage.as_str()] {
            assert!(
                left.contains(&other.to_owned()),
                "{other} left alone: {left:?}"
            );
        }
        // Count only: the two newest survive.
        let mut opts = s3_options(place(url, moto().vars()), now + Duration::minutes(1));
        opts.retention = RetentionPolicy {
            keep_days: None,
            keep_last: Some(2),
        };
        create_backup(&source, &opts).await.expect("second");
        let (found, orphans) = remote::candidates(&b).await.expect("candidates");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(orphans.len(), 1, "the young orphan payload is not a backup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs moto_server: run through scripts/test"]
    async fn interrupted_upload_leaves_no_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        // ~20 MB of hex text, ~10 MB compressed: more than one 8 MiB part.
        exec(
            &source,
            "CREATE TABLE bulk (k INTEGER PRIMARY KEY, pad TEXT NOT NULL); \
             WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 20000) \
             INSERT INTO bulk SELECT k, hex(randomblob(512)) FROM s;",
        )
        .await;
        let url = "s3://tp-interrupt";
        let opts = s3_options(place(url, moto().vars()), Utc::now());
        let progress = opts.progress.clone();
        // Stop it like a killed pod: mid-payload, after several parts went out (dropping the
        // future sends nothing more, not even the abort of the multipart upload).
        {
            let backup = create_backup(&source, &opts);
            tokio::pin!(backup);
            let watch = async {
                let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
                while progress.rows() < 18_000 {
                    assert!(std::time::Instant::now() < deadline, "no progress");
                    tokio::time::sleep(StdDuration::from_millis(5)).await;
                }
            };
            tokio::select! {
                r = &mut backup => panic!("the backup finished before it could be interrupted: {r:?}"),
                () = watch => {}
            }
        }

        assert!(names(url).await.is_empty(), "nothing visible in the bucket");
        let (found, _) = remote::candidates(&bucket(url)).await.expect("candidates");
        assert!(found.is_empty());
        let Location::S3(t) = &opts.dest else {
            unreachable!()
        };
        let backup = BackupRef::S3 {
            target: t.clone(),
            name: format::file_name(opts.now),
        };
        let target = sqlite_at(dir.path(), "target.db").await;
        let before = fingerprint(&target).await;
        let err = restore_backup(&target, &backup, None, false, &Progress::hidden())
            .await
            .expect_err("no such backup");
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_eq!(fingerprint(&target).await, before);

        // The payload complete but the manifest never written: still not a backup.
        let small = sqlite_at(dir.path(), "small.db").await;
        fill_platform_tables(&small, 1).await;
        let done = create_backup(&small, &s3_options(place(url, moto().vars()), Utc::now()))
            .await
            .expect("complete backup");
        let name = format::file_name(done.manifest.created_at);
        bucket(url).delete(&name).await.expect("drop the manifest");
        let (found, orphans) = remote::candidates(&bucket(url)).await.expect("candidates");
        assert!(found.is_empty(), "a payload alone is not a backup");
        assert_eq!(orphans.len(), 1);
    }

    /// The server checks signatures: the right keys (from the variables, and from
    /// a shared-credentials file through the binary) work; a wrong secret, an unknown key and a
    /// missing bucket fail with a clear message and their own exit codes, writing nothing.
    #[tokio::test]
    #[ignore = "needs moto_server: run through scripts/test"]
    async fn credentials_wrong_credentials_and_missing_bucket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        fill_platform_tables(&source, 1).await;
        let m = moto();
        let url = "s3://tp-creds/a";
        let good = create_backup(&source, &s3_options(place(url, m.vars()), Utc::now()))
            .await
            .expect("signed requests with the right keys are accepted");
        let name = format::file_name(good.manifest.created_at);
        let Reference::Backup(backup) =
            Reference::parse_with(&format!("{url}/{name}"), m.vars()).expect("ref")
        else {
            unreachable!()
        };
        verify_backup(&backup, None).await.expect("verifies");

        let cases = [
            (
                m.vars_with(&m.access_key, "not-the-secret"),
                url,
                7,
                "SignatureDoesNotMatch",
            ),
            (
                m.vars_with("AKIAUNKNOWN000000000", "x"),
                url,
                7,
                "InvalidAccessKeyId",
            ),
            (
                m.vars(),
                "s3://no-such-bucket/a",
                5,
                "bucket \"no-such-bucket\" does not exist",
            ),
        ];
        for (vars, url, code, needle) in cases {
            let err = create_backup(&source, &s3_options(place(url, vars.clone()), Utc::now()))
                .await
                .expect_err(needle);
            assert_eq!(err.exit_code(), code, "{err}");
            let Location::S3(t) = place(url, vars) else {
                unreachable!()
            };
            // The S3 error code comes with a body (a HEAD response has none).
            let err = Bucket::connect(&t)
                .expect("client")
                .put("probe", b"x".to_vec())
                .await
                .expect_err(needle);
            assert_eq!(err.exit_code(), code, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let left = Bucket::connect(match &place(url, m.vars()) {
            Location::S3(t) => t,
            Location::Dir(_) => unreachable!(),
        })
        .expect("client")
        .size("probe")
        .await
        .expect("head");
        assert_eq!(left, None, "nothing written with bad credentials");

        // The binary with the keys in a mounted secret file, and with a wrong secret.
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            format!(
                "[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                m.access_key, m.secret_key
            ),
        )
        .expect("credentials file");
        let run = |args: &[&str], secret_file: bool| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
            cmd.args(args)
                .env(
                    "DATABASE_URL",
                    format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join("source.db").display()
                    ),
                )
                .env_remove("BACKUP_ENCRYPTION_KEY")
                .env("AWS_ENDPOINT_URL", &m.endpoint)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ALLOW_HTTP", "true")
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
            if secret_file {
                cmd.env("AWS_SHARED_CREDENTIALS_FILE", &creds)
                    .env("AWS_PROFILE", "backup");
            } else {
                cmd.env("AWS_ACCESS_KEY_ID", &m.access_key)
                    .env("AWS_SECRET_ACCESS_KEY", "wrong");
            }
            let out = cmd.output().expect("run the binary");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, stdout, stderr) = run(&["backup", "--dest", url], true);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let written = stdout
            .lines()
            .find_map(|l| l.strip_prefix("backup written: "))
            .and_then(|l| l.split(' ').next())
            .expect("the backup's URL")
            .to_owned();
        let (code, stdout, stderr) = run(&["backup", "verify", &written], true);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let (code, _, stderr) = run(&["backup", "--dest", url], false);
        assert_eq!(code, 7, "{stderr}");
        assert!(stderr.contains("access denied"), "{stderr}");
    }

    /// The binary against the bucket: backup with retention and progress lines, list, verify,
    /// restore, and the exit codes of a missing bucket and of a prefix given as a backup.
    #[tokio::test]
    #[ignore = "needs moto_server: run through scripts/test"]
    async fn cli_commands_and_exit_codes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = sqlite_at(dir.path(), "source.db").await;
        fill_platform_tables(&source, 2).await;
        let m = moto();
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(KEY_A);
        let run = |db: &str, args: &[&str]| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
            cmd.args(args)
                .env(
                    "DATABASE_URL",
                    format!("sqlite://{}?mode=rwc", dir.path().join(db).display()),
                )
                .env("LOG_FORMAT", "json")
                .env("BACKUP_PROGRESS_INTERVAL_SECONDS", "0")
                .env("BACKUP_ENCRYPTION_KEY", &key_b64)
                .env("AWS_ENDPOINT_URL", &m.endpoint)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_ACCESS_KEY_ID", &m.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &m.secret_key);
            let out = cmd.output().expect("run the binary");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let url = "s3://tp-cli";
        for _ in 0..3 {
            let (code, stdout, stderr) =
                run("source.db", &["backup", "--dest", url, "--keep-last", "2"]);
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert!(stdout.contains("backup written: s3://tp-cli/"), "{stdout}");
            assert!(
                stdout.contains("\"progress\":true"),
                "progress lines: {stdout}"
            );
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let (code, stdout, _) = run("source.db", &["backup", "list", url]);
        assert_eq!(code, 0);
        let listed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("s3://")).collect();
        assert_eq!(listed.len(), 2, "retention kept two: {stdout}");
        assert!(listed[0].contains("encrypted"), "{stdout}");
        let newest = listed[0].split(' ').next().expect("url");
        let (code, stdout, stderr) = run("source.db", &["backup", "verify", newest]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("backup OK"), "{stdout}");
        let (code, stdout, stderr) = run("target.db", &["restore", newest]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let target = unmigrated_sqlite(&dir.path().join("target.db"));
        assert_eq!(fingerprint(&target).await, fingerprint(&source).await);

        let (code, _, stderr) = run("source.db", &["backup", "--dest", "s3://tp-missing/x"]);
        assert_eq!(code, 5, "{stderr}");
        assert!(stderr.contains("does not exist"), "{stderr}");
        let (code, _, stderr) = run("source.db", &["restore", url]);
        assert_eq!(code, 6, "a place without an archive is refused: {stderr}");
        assert!(stderr.contains("no change-log archive"), "{stderr}");
    }

    /// Rows of every platform table (not the archive's own, not sequence counters).
    fn rows_only(
        f: std::collections::BTreeMap<String, Vec<String>>,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        f.into_iter()
            .filter(|(k, _)| {
                !k.starts_with("sequence ") && k != "change_log" && k != "archive_state"
            })
            .collect()
    }

    /// Point-in-time archiving with the archive in a bucket: segments are shipped there, a
    /// restore from the bucket reaches a restore point exactly, another database cannot claim
    /// the same place, and wrong credentials fail the turn while the changes wait in the
    /// database. Needs PostgreSQL too (`TEST_DATABASE_URL`, set by `scripts/test`).
    #[tokio::test]
    #[ignore = "needs moto_server and PostgreSQL: run through scripts/test"]
    async fn archive_ships_to_the_bucket_and_restores_from_it() {
        use tradeplane_platform::archive::{self, Target, archiver, storage::ArchiveStorage};
        use tradeplane_platform::store::Store;
        let pool = |s: &Store| match s {
            Store::Postgres(p) => p.clone(),
            Store::Sqlite(_) => panic!("postgres"),
        };
        let source_db = super::common::PgDatabase::create().await;
        let source = source_db.store().await;
        // On the server that checks no signature: moto cannot sign-check the LIST of `wal/`
        // (backup_common::moto); credentials are checked against the other one below.
        let open = super::backup_common::moto::open_moto();
        let url = "s3://tp-pitr/prod";
        let dest = place(url, open.vars());
        let storage = ArchiveStorage::for_place(&dest).expect("storage");
        archiver::start(&pool(&source), &storage, "source")
            .await
            .expect("archiving starts");
        fill_platform_tables(&source, 4).await;
        let mut opts = s3_options(dest.clone(), Utc::now());
        opts.key = Some(key(KEY_A));
        let backup = create_backup(&source, &opts).await.expect("backup");
        assert!(
            backup.manifest.archive.is_some(),
            "the backup names its archive point"
        );
        exec(
            &source,
            "UPDATE accounts SET cash = cash + 7 WHERE id = 1; \
             DELETE FROM refresh_tokens WHERE user_id = 2; \
             INSERT INTO symbols (symbol, seq, md_seq, status) VALUES ('ETH-USD', 0, 0, 'open');",
        )
        .await;
        let point = tradeplane_platform::store::archive::restore_point(&pool(&source), "mid")
            .await
            .expect("restore point");
        let expected = rows_only(fingerprint(&source).await);
        exec(&source, "UPDATE accounts SET cash = 0 WHERE id = 3").await;

        // Wrong credentials: the turn fails, nothing leaves the database.
        let bad = place(
            "s3://tp-pitr-cli",
            moto().vars_with("AKIDWRONG", "wrong-secret"),
        );
        let bad_storage = ArchiveStorage::for_place(&bad).expect("storage");
        let err = archiver::ship(&pool(&source), &bad_storage, Some(&key(KEY_A)))
            .await
            .expect_err("wrong credentials");
        assert_eq!(err.exit_code(), 7, "access denied: {err}");
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM change_log")
            .fetch_one(&pool(&source))
            .await
            .expect("count");
        assert!(waiting > 0, "the changes wait in the database");

        let shipped = archiver::ship(&pool(&source), &storage, Some(&key(KEY_A)))
            .await
            .expect("ship");
        assert_eq!(
            (shipped.segments, shipped.last_segment),
            (1, Some(1)),
            "{shipped:?}"
        );
        assert_eq!(storage.segments().await.expect("segments"), vec![1]);

        let target_db = super::common::PgDatabase::create().await;
        let target = target_db.store().await;
        let r = archive::restore(
            &target,
            Reference::parse_with(url, open.vars()).expect("place"),
            Some(Target::Seq(point.seq)),
            Some(&key(KEY_A)),
            false,
            &Progress::hidden(),
        )
        .await
        .expect("point-in-time restore from the bucket");
        assert!(r.restore.replayed.expect("replayed").changes >= 3);
        assert_eq!(rows_only(fingerprint(&target).await), expected);

        // The restored database cannot take over its source's place.
        let refused = archiver::start(&pool(&target), &storage, "target")
            .await
            .expect_err("another database's archive");
        assert_eq!(refused.exit_code(), 6, "{refused}");
        assert!(
            refused.to_string().contains("another database"),
            "{refused}"
        );
        target.close().await;
        source.close().await;
        target_db.drop_now().await;
        source_db.drop_now().await;
    }
}
