//! Response compression through the real router and, for the WebSocket, a real listener.

mod common;

use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tradeplane_platform::http::router;

/// Sends a GET with the given `Accept-Encoding`; returns the status, `Content-Encoding` and body.
async fn get(
    app: &axum::Router,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut req = Request::builder().uri(path);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT_ENCODING, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let encoding = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, encoding, body)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

#[tokio::test]
async fn large_json_is_compressed_as_negotiated_small_and_unasked_bodies_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let app = router(state.clone());

    // The OpenAPI document: large JSON.
    let (status, encoding, plain) = get(&app, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding, None, "no Accept-Encoding: identity");
    assert!(plain.len() > 10_000, "{} bytes", plain.len());

    let (status, encoding, gz) = get(&app, "/api/v1/openapi.json", Some("gzip")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(
        gz.len() * 3 < plain.len(),
        "{} -> {} bytes",
        plain.len(),
        gz.len()
    );
    assert_eq!(gunzip(&gz), plain);

    let (_, encoding, br) = get(&app, "/api/v1/openapi.json", Some("gzip;q=0.5, br")).await;
    assert_eq!(encoding.as_deref(), Some("br"));
    assert_eq!(unbrotli(&br), plain);

    // An encoding the service does not speak: identity.
    let (_, encoding, body) = get(&app, "/api/v1/openapi.json", Some("zstd")).await;
    assert_eq!(encoding, None);
    assert_eq!(body, plain);

    // A small JSON body is not worth it.
    let (status, encoding, body) = get(&app, "/health/live", Some("gzip, br")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding, None);
    assert!(body.len() < usize::from(tradeplane_platform::http::compression::MIN_BYTES));

    // /metrics: identity unless the scraper asks.
    let (status, encoding, text) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding, None);
    assert!(String::from_utf8_lossy(&text).contains("http_requests_total"));
    let (_, encoding, gz) = get(&app, "/metrics", Some("gzip")).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(String::from_utf8_lossy(&gunzip(&gz)).contains("db_queries_total"));
}

#[tokio::test]
async fn a_websocket_upgrade_is_never_compressed() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());

    let mut req = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip, br".parse().expect("header"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
    ws.send(Message::text(r#"{"op":"subscribe","symbols":["AAPL"]}"#))
        .await
        .expect("send");
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("a reply in time")
        .expect("open")
        .expect("frame");
    let reply: serde_json::Value =
        serde_json::from_str(reply.to_text().expect("text frame")).expect("plain JSON frame");
    assert_eq!(reply["type"], "snapshot", "{reply}");
    server.abort();
}
