//! Running the real `tradeplane-platform` binary in a test: start it on a spare port, talk
//! plain HTTP/1.1 to it, signal it, wait for it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A free loopback port (bound and released).
pub fn spare_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("spare port");
    l.local_addr().expect("addr").port()
}

/// Starts the binary in `dir` on `port` with only `env` set (plus `LISTEN_ADDR`); its stderr
/// goes to `dir/<port>.log`.
pub fn start(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{port}.log"))).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"));
    cmd.current_dir(dir)
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
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
