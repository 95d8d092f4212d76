//! The market-data WebSocket (`/api/v1/ws`) end to end, with a real WebSocket client.
//!
//! `stream_snapshot_then_contiguous_events` serves the router on a loopback listener, trades
//! through the REST API and checks what a subscriber sees; `sigterm_closes_clients_with_1001`
//! runs the real binary and sends it SIGTERM with a client connected.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ADMIN: (&str, &str) = ("root", "root-password-long");
const ADMIN_ENV: &[(&str, &str)] = &[("ADMIN_USERNAME", ADMIN.0), ("ADMIN_PASSWORD", ADMIN.1)];
/// How long any one expected message may take.
const WAIT: Duration = Duration::from_secs(10);

use common::send;

async fn login(state: &AppState, username: &str, password: &str) -> String {
    let (status, tokens) = send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens["access_token"].as_str().expect("token").to_owned()
}

/// Registers a trader funded with `cash` and returns (token, account id).
async fn trader(state: &AppState, admin: &str, name: &str, cash: &str) -> (String, i64) {
    let (status, user) = send(
        state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "password": "password-123"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let account = user["account_id"].as_i64().expect("account");
    deposit(state, admin, account, json!({"amount": cash})).await;
    (login(state, name, "password-123").await, account)
}

async fn deposit(state: &AppState, admin: &str, account: i64, body: Value) {
    let (status, dep) = send(
        state,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(admin),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dep}");
}

async fn place(state: &AppState, token: &str, order: Value) -> Value {
    let (status, body) = send(state, "POST", "/api/v1/orders", Some(token), Some(order)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The next text message as JSON, skipping pings and pongs; fails after [`WAIT`].
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("the stream is still open")
            .expect("a valid frame");
        match msg {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("server messages are JSON");
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.expect("client send");
}

/// Asserts that nothing arrives for `quiet` (no stray or duplicate events).
async fn assert_silent(ws: &mut Client, quiet: Duration) {
    if let Ok(msg) = tokio::time::timeout(quiet, ws.next()).await {
        panic!("expected silence, got {msg:?}");
    }
}

#[tokio::test]
async fn stream_snapshot_then_contiguous_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, ADMIN_ENV).await;
    tradeplane_platform::server::ensure_admin(&state)
        .await
        .expect("admin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());

    let admin = login(&state, ADMIN.0, ADMIN.1).await;
    let (alice, alice_account) = trader(&state, &admin, "alice", "100000").await;
    let (bob, _) = trader(&state, &admin, "bob", "100000").await;
    deposit(
        &state,
        &admin,
        alice_account,
        json!({"amount": "10", "symbol": "AAPL", "cost": "100"}),
    )
    .await;
    // A resting bid before anyone subscribes: the snapshot must show it.
    place(
        &state,
        &bob,
        json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "150", "qty": "2"}),
    )
    .await;
    let (status, rest_book) = send(&state, "GET", "/api/v1/markets/AAPL/book", None, None).await;
    assert_eq!(status, StatusCode::OK, "{rest_book}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/ws"))
        .await
        .expect("WebSocket handshake");
    send_text(&mut ws, r#"{"op":"subscribe","symbols":["AAPL"]}"#).await;
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["symbol"], "AAPL");
    assert_eq!(
        snapshot["bids"],
        json!([{"price": "150", "qty": "2", "orders": 1}])
    );
    assert_eq!(snapshot["asks"], json!([]));
    let snap_seq = snapshot["md_seq"].as_u64().expect("md_seq");
    assert!(snap_seq > 0, "the resting bid moved md_seq: {snapshot}");
    assert_eq!(
        snapshot["md_seq"], rest_book["md_seq"],
        "nothing traded between the REST book and the snapshot"
    );

    // Unknown symbols and malformed messages get an error; the connection stays usable.
    send_text(&mut ws, r#"{"op":"subscribe","symbols":["NOPE-USD"]}"#).await;
    let err = next_json(&mut ws).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("unknownSymbol")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("NOPE-USD")),
        "{err}"
    );
    for bad in [
        "this is not json",
        r#"{"op":"dance","symbols":["AAPL"]}"#,
        r#"{"op":"subscribe","symbols":"AAPL"}"#,
        r#"{"op":"subscribe","symbols":["AAPL"],"extra":1}"#,
    ] {
        send_text(&mut ws, bad).await;
        let err = next_json(&mut ws).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{bad} -> {err}"
        );
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{err}"
        );
    }
    assert_silent(&mut ws, Duration::from_millis(200)).await;

    // Another symbol's events are not sent to an AAPL subscriber.
    place(
        &state,
        &bob,
        json!({"symbol": "ETH-USD", "side": "buy", "type": "limit", "price": "2000", "qty": "1"}),
    )
    .await;
    // A new bid level, then Alice sells 3 at market: 2 fill against the 150 bid, 1 against 149.
    place(
        &state,
        &bob,
        json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "149", "qty": "1"}),
    )
    .await;
    let sell = place(
        &state,
        &alice,
        json!({"symbol": "AAPL", "side": "sell", "type": "market", "qty": "3"}),
    )
    .await;
    assert_eq!(sell["filled"], "3", "{sell}");

    let mut events = Vec::new();
    while events.len() < 5 {
        events.push(next_json(&mut ws).await);
    }
    assert_silent(&mut ws, Duration::from_millis(300)).await;

    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["symbol"], "AAPL", "{e}");
        assert_eq!(
            e["md_seq"].as_u64(),
            Some(snap_seq + 1 + i as u64),
            "contiguous md_seq after the snapshot: {events:#?}"
        );
    }
    let summary: Vec<(String, Value)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?").to_owned(),
                e["data"].clone(),
            )
        })
        .collect();
    let trade = |price: &str, qty: &str| {
        (
            "trade".to_owned(),
            json!({"price": price, "qty": qty, "takerSide": "sell"}),
        )
    };
    let book = |price: &str, qty: &str, orders: i64| {
        (
            "book".to_owned(),
            json!({"side": "buy", "price": price, "qty": qty, "orders": orders}),
        )
    };
    // tradeSeq is an internal sequence; compare the rest of each trade exactly.
    let comparable: Vec<(String, Value)> = summary
        .into_iter()
        .map(|(kind, mut data)| {
            if kind == "trade" {
                assert!(data["tradeSeq"].is_u64(), "{data}");
                if let Some(o) = data.as_object_mut() {
                    o.remove("tradeSeq");
                }
            }
            (kind, data)
        })
        .collect();
    assert_eq!(
        comparable,
        vec![
            book("149", "1", 1),
            // A match publishes its trades, then the final state of every level it touched.
            trade("150", "2"),
            trade("149", "1"),
            book("150", "0", 0),
            book("149", "0", 0),
        ],
        "{events:#?}"
    );

    // Unsubscribing stops the stream.
    send_text(&mut ws, r#"{"op":"unsubscribe","symbols":["AAPL"]}"#).await;
    // The unsubscribe is handled before the next event is read; a ping round-trip proves it
    // arrived before the order below.
    ws.send(Message::Ping(vec![1].into())).await.expect("ping");
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("pong")
        .expect("open")
        .expect("frame");
    assert!(
        matches!(msg, Message::Pong(_)),
        "unexpected message before the pong: {msg:?}"
    );
    place(
        &state,
        &bob,
        json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "140", "qty": "1"}),
    )
    .await;
    assert_silent(&mut ws, Duration::from_millis(300)).await;

    ws.close(None).await.expect("client close");
    server.abort();
}

// ---- the real binary ----

fn spare_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("spare port");
    l.local_addr().expect("addr").port()
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let req = "GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            let mut buf = Vec::new();
            if s.write_all(req.as_bytes()).await.is_ok()
                && s.read_to_end(&mut buf).await.is_ok()
                && buf.starts_with(b"HTTP/1.1 200")
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform did not become ready on port {port}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_clients_with_1001() {
    use std::process::{Command, Stdio};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let dir = tempfile::tempdir().expect("tempdir");
    let port = spare_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradeplane-platform"))
        .current_dir(dir.path())
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
        )
        .env("ADMIN_USERNAME", ADMIN.0)
        .env("ADMIN_PASSWORD", ADMIN.1)
        .env("DRAIN_TIMEOUT_SECONDS", "10")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    wait_ready(port).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/ws"))
        .await
        .expect("WebSocket handshake");
    send_text(&mut ws, r#"{"op":"subscribe","symbols":["BTC-USD"]}"#).await;
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");

    let close = loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server closes within the wait");
        match msg {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = close.expect("the close frame carries a code");
    assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
    assert_eq!(u16::from(frame.code), 1001);

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the platform did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}
