//! Process-level tests: run the real binary, send SIGTERM during a slow request.
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn spare_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("spare port");
    l.local_addr().expect("addr").port()
}

/// The platform on an SQLite file in `dir`, with the debug endpoints, not yet started.
fn platform(dir: &tempfile::TempDir, port: u16, drain_secs: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
    c.current_dir(dir.path())
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
        )
        .env("ENABLE_DEBUG_ENDPOINTS", "true")
        .env("DRAIN_TIMEOUT_SECONDS", drain_secs)
        .stderr(Stdio::null());
    c
}

fn start(dir: &tempfile::TempDir, port: u16, drain_secs: &str) -> Child {
    platform(dir, port, drain_secs)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .spawn()
        .expect("binary starts")
}

/// Sends one HTTP/1.1 GET and returns the status code and body.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(port, "/health/ready").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform did not become ready on port {port}");
}

fn sigterm(child: &Child) {
    signal(child, "TERM");
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIG{name} delivered");
}

async fn wait_exit(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the process did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = spare_port();
    let child = start(&dir, port, "20");
    wait_ready(port).await;

    let slow = tokio::spawn(http_get(port, "/debug/sleep?ms=1500"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    sigterm(&child);

    let (status, body) = slow
        .await
        .expect("task")
        .expect("the slow request completes");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"slept_ms\":1500"), "{body}");
    let exit = wait_exit(child, Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1000),
        "it waited for the request"
    );
    // New connections are refused once draining has begun.
    assert!(http_get(port, "/health/live").await.is_err());
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = spare_port();
    let child = start(&dir, port, "1");
    wait_ready(port).await;

    let slow = tokio::spawn(http_get(port, "/debug/sleep?ms=20000"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    sigterm(&child);
    let exit = wait_exit(child, Duration::from_secs(10)).await;
    assert_eq!(
        exit.code(),
        Some(3),
        "a drain that cut requests exits 3, not {exit:?}"
    );
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "drained for the timeout, waited {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "did not wait for the 20 s request, waited {waited:?}"
    );
    let cut = slow.await.expect("task");
    assert!(
        !matches!(cut, Ok((200, _))),
        "the 20 s request was cut, not completed: {cut:?}"
    );
}

/// A platform whose PostgreSQL never answers (start-up keeps retrying the migrations) still
/// stops on SIGTERM, promptly: the start-up wait and the pool's close are both bounded.
#[tokio::test]
async fn sigterm_stops_a_platform_whose_database_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = spare_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"))
        .current_dir(dir.path())
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        // Port 1: nothing listens, every connection attempt is refused at once.
        .env(
            "DATABASE_URL",
            "postgres://tradeplane@127.0.0.1:1/tradeplane",
        )
        .env("DATABASE_CONNECT_TIMEOUT_SECONDS", "1")
        .env("DRAIN_TIMEOUT_SECONDS", "1")
        .env("LOG_FORMAT", "json")
        .stdout(std::fs::File::create(dir.path().join("out.log")).expect("log file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    // It listens (liveness answers) while start-up waits for the database.
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/health/live").await.is_err() {
        assert!(Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    sigterm(&child);
    let exit = wait_exit(child, Duration::from_secs(10)).await;
    assert!(exit.code().is_some(), "exited by itself: {exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "stopped in {:?}",
        signalled.elapsed()
    );
    // The wait names the cause, not only the pool's "timed out while waiting".
    let log = std::fs::read_to_string(dir.path().join("out.log")).expect("log");
    assert!(
        log.contains("database not reachable yet") && log.contains("Connection refused"),
        "{log}"
    );
}

/// Ctrl-C at a terminal (SIGINT) drains and exits 0 like SIGTERM; text logs written to a file
/// (not a terminal) carry no ANSI colour codes.
#[tokio::test]
async fn sigint_drains_and_exits_zero_and_text_logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = spare_port();
    let log_path = dir.path().join("out.log");
    let child = platform(&dir, port, "20")
        .env("LOG_FORMAT", "text")
        .stdout(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("binary starts");
    wait_ready(port).await;
    let slow = tokio::spawn(http_get(port, "/debug/sleep?ms=1000"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "INT");
    let (status, body) = slow.await.expect("task").expect("the request completes");
    assert_eq!(status, 200, "{body}");
    let exit = wait_exit(child, Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit:?}");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("INFO"), "text log lines were written: {log}");
    assert!(log.contains("drain"), "the drain was logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no escape codes in a file: {log:?}"
    );
}
