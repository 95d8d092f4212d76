//! The WebSocket limits over real sockets (the router behind the platform's own server):
//! connections per client IP, subscriptions per connection, symbols de-duplicated within one
//! subscribe, and oversized messages closed with 1009 and a reason.

mod common;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tradeplane_platform::http::serve;
use tradeplane_platform::state::AppState;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A started instance served on a loopback port by [`serve::serve`]; returns its state and
/// the WebSocket URL.
async fn server(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (AppState, String) {
    let state = common::started_state(dir, env).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let metrics = serve::ConnMetrics::register(state.metrics.registry()).expect("metrics");
    let _served = serve::serve(
        listener,
        tradeplane_platform::http::router(state.clone()),
        serve::ServeOptions::from_config(&state.config),
        metrics,
        state.shutdown.clone(),
    );
    (state, format!("ws://{addr}/api/v1/ws"))
}

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects")
        .0
}

/// The next frame that is not a ping or pong.
async fn next(ws: &mut Client) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("the stream is still open")
            .expect("a valid frame");
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            return msg;
        }
    }
}

async fn next_json(ws: &mut Client) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn expect_close(ws: &mut Client, code: CloseCode, reason_has: &str) {
    match next(ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, code, "{frame:?}");
            assert!(frame.reason.contains(reason_has), "{frame:?}");
        }
        other => panic!("expected a close frame {code:?}, got {other:?}"),
    }
}

fn sample(state: &AppState, series: &str) -> f64 {
    let text = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("render");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test]
async fn connections_past_the_per_ip_cap_are_refused_429_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, url) = server(&dir, &[("WS_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let mut first = connect(&url).await;
    let _second = connect(&url).await;
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(body["code"], "too_many_connections", "{body}");
        }
        other => panic!("the third connection from one client must be refused: {other:?}"),
    }
    assert_eq!(
        sample(&state, "websocket_refused_total{reason=\"per_ip\"}"),
        1.0
    );
    // Upgraded connections keep their connection slots (MAX_CONNECTIONS counts them).
    // (The refused connection's close may still be on its way.)
    let mut open = 0.0;
    for _ in 0..40 {
        open = sample(&state, "http_connections_open");
        if open == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 2.0, "the two WebSockets are open connections");
    first.close(None).await.expect("close");
    // The slot comes back once the server has seen the close.
    let mut reconnected = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
            reconnected = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reconnected.is_some(), "a closed connection frees its slot");
}

#[tokio::test]
async fn repeated_symbols_count_once_and_too_many_subscriptions_close_1008() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, url) = server(&dir, &[("WS_MAX_SUBSCRIPTIONS", "2")]).await;
    let mut ws = connect(&url).await;
    let repeated: Vec<&str> = std::iter::repeat_n("AAPL", 500).collect();
    let msg = serde_json::json!({"op": "subscribe", "symbols": repeated}).to_string();
    ws.send(Message::text(msg)).await.expect("send");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["symbol"].as_str()),
        (Some("snapshot"), Some("AAPL"))
    );
    // One snapshot, not 500: the next message is the answer to the next request.
    ws.send(Message::text(r#"{"op":"subscribe","symbols":["BTC-USD"]}"#))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["symbol"], "BTC-USD");
    ws.send(Message::text(r#"{"op":"subscribe","symbols":["ETH-USD"]}"#))
        .await
        .expect("send");
    expect_close(&mut ws, CloseCode::Policy, "too many subscriptions").await;
    assert!(sample(&state, "websocket_closed_total{code=\"1008\"}") >= 1.0);
}

#[tokio::test]
async fn a_message_over_the_limit_is_closed_1009_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, url) = server(&dir, &[("WS_MAX_MESSAGE_BYTES", "1024")]).await;
    let mut ws = connect(&url).await;
    let symbols: Vec<String> = (0..400).map(|i| format!("S{i}")).collect();
    let msg = serde_json::json!({"op": "subscribe", "symbols": symbols}).to_string();
    assert!(msg.len() > 1024);
    ws.send(Message::text(msg)).await.expect("send");
    expect_close(&mut ws, CloseCode::Size, "message too big").await;
    assert_eq!(sample(&state, "websocket_closed_total{code=\"1009\"}"), 1.0);
}
