//! Running the real `tradeplane-platform` binary in a test: start it on a spare port, talk
//! plain HTTP/1.1 to it, signal it, wait for it.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A free loopback port (bound and released).
pub fn spare_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("spare port");
    l.local_addr().expect("addr").port()
}

/// Starts the binary in `dir` on `port` with only `env` set (plus `LISTEN_ADDR`); its output
/// (logs go to stdout, errors to stderr) goes to `dir/<port>.log`.
pub fn start(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{port}.log"))).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
    cmd.current_dir(dir)
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("binary starts")
}

/// What the process started on `port` in `dir` has logged so far.
pub fn log(dir: &std::path::Path, port: u16) -> String {
    std::fs::read_to_string(dir.join(format!("{port}.log"))).unwrap_or_default()
}

/// Sends one HTTP/1.1 GET and returns the status code and body.
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
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

/// Waits until `/health/ready` answers 200.
pub async fn wait_ready(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(port, "/health/ready").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform did not become ready on port {port}");
}

/// Sends SIGTERM.
pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
}

/// Waits for the process to exit; kills it and panics after `within`.
pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
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

/// Sends one JSON request (with a bearer token if given) and returns the status code and the
/// JSON body (`Null` when empty or not JSON). A fresh connection each time, as separate clients.
pub async fn http_json(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(axum::body::Bytes::from(b.to_string()))
        }
        None => Full::new(axum::body::Bytes::new()),
    };
    let req = req.body(payload).map_err(std::io::Error::other)?;
    let resp = client.request(req).await.map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// Sends SIGKILL (a crash: nothing is handed over).
pub fn sigkill(child: &mut Child) {
    child.kill().expect("SIGKILL delivered");
    let _ = child.wait();
}
