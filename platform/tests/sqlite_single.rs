//! One process serves an SQLite file: a second one started on the same file says why it waits
//! and takes over when the first stops, instead of racing it on migrations.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::process::{http_get, log, sigterm, spare_port, start, wait_exit, wait_ready};

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_waits_for_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("one.db").display());
    let env = [("DATABASE_URL", url.as_str()), ("LOG_FORMAT", "json")];
    // Both start at once, as two pods of a misconfigured deployment would.
    let (port_a, port_b) = (spare_port(), spare_port());
    let mut a = start(dir.path(), port_a, &env);
    let mut b = start(dir.path(), port_b, &env);
    // Whichever won the lock becomes ready; the other waits and says why.
    let (mut first, first_port, mut second, second_port) = loop {
        if let Ok((200, _)) = http_get(port_a, "/health/ready").await {
            break (a, port_a, b, port_b);
        }
        if let Ok((200, _)) = http_get(port_b, "/health/ready").await {
            break (b, port_b, a, port_a);
        }
        assert!(
            a.try_wait().expect("wait").is_none(),
            "{}",
            log(dir.path(), port_a)
        );
        assert!(
            b.try_wait().expect("wait").is_none(),
            "{}",
            log(dir.path(), port_b)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = http_get(second_port, "/health/ready")
        .await
        .expect("probe answers");
    assert_eq!(
        status, 503,
        "the second process is not ready while the first serves"
    );
    assert!(
        second.try_wait().expect("wait").is_none(),
        "the second process did not die"
    );
    let waiting = log(dir.path(), second_port);
    assert!(
        waiting.contains("in use by another tradeplane process") && waiting.contains("one replica"),
        "it says plainly why it waits: {waiting}"
    );
    assert!(
        !waiting.contains("already exists"),
        "no migration race: {waiting}"
    );

    sigterm(&first);
    assert!(
        wait_exit(&mut first, Duration::from_secs(20))
            .await
            .success()
    );
    wait_ready(second_port, Duration::from_secs(10)).await;
    let _ = first_port;
    sigterm(&second);
    assert!(
        wait_exit(&mut second, Duration::from_secs(20))
            .await
            .success()
    );
}
