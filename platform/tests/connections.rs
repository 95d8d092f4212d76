//! The connection layer ([`tradeplane_platform::http::serve`]) against the real binary over raw
//! TCP sockets: idle and slow-header connections are closed, oversized heads get 431, the
//! per-IP cap refuses a client's next connection while the probes keep answering, and a
//! trickled body gets 408 within its deadline.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A platform process on a fresh SQLite file; killed when dropped.
struct Platform {
    _dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn platform(env: &[(&str, &str)]) -> Platform {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = process::spare_port();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let mut vars = vec![("DATABASE_URL", db.as_str())];
    vars.extend_from_slice(env);
    let child = process::start(dir.path(), port, &vars);
    process::wait_ready(port, Duration::from_secs(30)).await;
    Platform {
        _dir: dir,
        port,
        child,
    }
}

/// A connection to the platform from the loopback address `from` (127.0.0.x: another client).
async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .expect("bind a loopback source address");
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), up to `within`; returns what
/// arrived and when the close came, or `None` when the connection is still open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<(String, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&got).into_owned(), Instant::now()));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `/health/live` answers 200 within a second.
async fn live_within_a_second(port: u16) {
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(1),
        process::http_get(port, "/health/live"),
    )
    .await;
    assert!(
        matches!(res, Ok(Ok((200, _)))),
        "the liveness probe answered {res:?} after {:?}",
        started.elapsed()
    );
}

async fn metric(port: u16, line_prefix: &str) -> f64 {
    let (status, text) = process::http_get(port, "/metrics").await.expect("scrape");
    assert_eq!(status, 200);
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics"))
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let p = platform(&[
        ("IDLE_TIMEOUT_SECONDS", "1"),
        ("HEADER_READ_TIMEOUT_SECONDS", "30"),
    ])
    .await;
    let opened = Instant::now();
    let mut idle = connect_from([127, 0, 0, 1], p.port).await;
    let (got, closed) = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("the idle connection was closed");
    let after = closed - opened;
    assert!(
        got.is_empty(),
        "nothing is sent to an idle connection: {got:?}"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}, expected about 1 s"
    );

    // A keep-alive connection is idle after its response, and closed the same way.
    let mut keep = connect_from([127, 0, 0, 1], p.port).await;
    keep.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let (got, _) = read_until_closed(&mut keep, Duration::from_secs(10))
        .await
        .expect("the keep-alive connection was closed once idle");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(metric(p.port, "http_connections_closed_total{reason=\"idle\"}").await >= 2.0);
}

#[tokio::test]
async fn headers_trickled_past_the_header_timeout_close_the_connection() {
    let p = platform(&[
        ("IDLE_TIMEOUT_SECONDS", "60"),
        ("HEADER_READ_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let mut slow = connect_from([127, 0, 0, 1], p.port).await;
    let started = Instant::now();
    slow.write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .expect("first line");
    // One header line every 200 ms: the connection is never idle, but its head never ends.
    let mut closed = None;
    for i in 0..40 {
        if slow
            .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = Some(Instant::now());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(Instant::now());
                break;
            }
            Ok(Ok(_)) => panic!("a response to an incomplete head"),
            Err(_) => {}
        }
    }
    let closed = closed.expect("the slow head was cut") - started;
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
        "closed after {closed:?}, expected about 1 s"
    );
    assert!(
        metric(
            p.port,
            "http_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_head_over_max_header_bytes_is_answered_431() {
    let p = platform(&[("MAX_HEADER_BYTES", "8192")]).await;
    // Just under the limit is served.
    let mut ok = connect_from([127, 0, 0, 1], p.port).await;
    let filler = "a".repeat(7000);
    ok.write_all(
        format!(
            "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Fill: {filler}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let (got, _) = read_until_closed(&mut ok, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // 100 KB of headers (under hyper's own ~400 KB buffer cap) is refused with 431 and closed.
    let mut big = connect_from([127, 0, 0, 1], p.port).await;
    let filler = "a".repeat(100 * 1024);
    let request = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Fill: {filler}\r\n\r\n");
    // The server answers before the client has sent everything; a failed write is expected.
    let _ = big.write_all(request.as_bytes()).await;
    let (got, _) = read_until_closed(&mut big, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        got.starts_with("HTTP/1.1 431"),
        "expected 431 Request Header Fields Too Large, got {:?}",
        got.lines().next()
    );
}

#[tokio::test]
async fn one_client_at_its_cap_is_refused_while_the_probes_answer() {
    let p = platform(&[
        ("MAX_CONNECTIONS", "40"),
        ("MAX_CONNECTIONS_PER_IP", "20"),
        ("IDLE_TIMEOUT_SECONDS", "30"),
        ("HEADER_READ_TIMEOUT_SECONDS", "30"),
    ])
    .await;
    let attacker = [127, 0, 0, 2];
    let mut held = Vec::new();
    for i in 0..20 {
        let mut c = connect_from(attacker, p.port).await;
        if i % 2 == 0 {
            // Half of them slow headers, half silent.
            c.write_all(b"GET /health/live HTTP/1.1\r\nX-A: b\r\n")
                .await
                .expect("partial head");
        }
        held.push(c);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = connect_from(attacker, p.port).await;
    let _ = refused
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (got, _) = read_until_closed(&mut refused, Duration::from_secs(3))
        .await
        .expect("the connection past the per-IP cap is closed at once");
    assert!(got.is_empty(), "no response past the cap: {got:?}");

    for _ in 0..5 {
        live_within_a_second(p.port).await;
    }
    for c in &mut held {
        let mut buf = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(20), c.read(&mut buf))
                .await
                .is_err(),
            "the held connections stay open (under both timeouts)"
        );
    }
    assert!(metric(p.port, "http_connections_refused_total{reason=\"per_ip\"}").await >= 1.0);
    drop(held);
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_at_its_deadline() {
    let p = platform(&[("REQUEST_BODY_TIMEOUT_SECONDS", "1")]).await;
    let mut c = connect_from([127, 0, 0, 1], p.port).await;
    let body = br#"{"username":"nobody","password":"trickled-password"}"#;
    c.write_all(
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    let started = Instant::now();
    let mut response = Vec::new();
    // One byte every 100 ms: every byte is "progress", the whole body would take ~5 s.
    for b in body {
        if c.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await
        {
            response.extend_from_slice(&buf[..n]);
            if n == 0 || response.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answered = started.elapsed();
    let mut rest = [0u8; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), c.read(&mut rest)).await {
        response.extend_from_slice(&rest[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(
        answered >= Duration::from_millis(900) && answered < Duration::from_secs(3),
        "answered after {answered:?}, expected about 1 s"
    );
}

#[tokio::test]
async fn readiness_503_during_start_up_is_not_logged_as_an_error() {
    // A database that never answers keeps the process starting: readiness says 503.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = process::spare_port();
    // The log goes to standard output, which `process::start` discards.
    let out = dir.path().join("stdout.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"))
        .current_dir(dir.path())
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("DATABASE_CONNECT_TIMEOUT_SECONDS", "1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(&out).expect("log file"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = 0;
    while answered < 3 && Instant::now() < deadline {
        if let Ok((status, body)) = process::http_get(port, "/health/ready").await {
            assert_eq!(status, 503, "{body}");
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered, 3, "readiness answered while starting");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&out).expect("log");
    let probe_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/health/ready") && l.contains("\"status\":503"))
        .collect();
    assert!(
        !probe_lines.is_empty(),
        "the probe's responses are logged (at DEBUG):\n{log}"
    );
    for line in probe_lines {
        assert!(line.contains("\"level\":\"DEBUG\""), "{line}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("/health")),
        "no probe answer is an ERROR:\n{log}"
    );
}
