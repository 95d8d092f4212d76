//! The operator's /metrics and /health endpoints over a real socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tradeplane_operator::http::{HttpState, router};
use tradeplane_operator::metrics::Metrics;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_and_health() {
    let metrics = Metrics::new().unwrap();
    metrics.reconciliations.with_label_values(&["ok"]).inc();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        watches: tradeplane_operator::watch::WatchHealth::default(),
        stale_bound: std::time::Duration::from_secs(60),
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert!(get(addr, "/health/live").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/health/ready").await.starts_with("HTTP/1.1 503"));
    ready.store(true, Ordering::Relaxed);
    assert!(get(addr, "/health/ready").await.starts_with("HTTP/1.1 200"));
    let body = get(addr, "/metrics").await;
    assert!(
        body.contains("tradeplane_operator_reconciliations_total{result=\"ok\"} 1"),
        "{body}"
    );
    for name in [
        "tradeplane_operator_reconciliations_total",
        "tradeplane_operator_leader",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
}
