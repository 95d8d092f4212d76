//! Traces over OTLP end to end: the real binary exports to an OTLP/HTTP receiver run by this
//! test (its protobuf decoded with the `opentelemetry-proto` types the exporter itself uses).
//! An order sent with a W3C `traceparent` yields, in that trace: the HTTP server span under the
//! caller's span, the matcher's queue wait and batch under the request, and the batch's
//! database statements under the batch; the JSON log lines of the request carry the trace id.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use common::process;

type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// `POST /v1/traces`: decodes the export request, keeps every span with its service name.
async fn receive(State(spans): State<Received>, body: Bytes) -> (axum::http::StatusCode, Vec<u8>) {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut kept = spans.lock().expect("spans");
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                kept.push((service.clone(), span));
            }
        }
    }
    (
        axum::http::StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            Some(AnyValue::IntValue(i)) => Some(i.to_string()),
            Some(AnyValue::BoolValue(b)) => Some(b.to_string()),
            _ => None,
        })
}

/// One JSON request with extra headers; returns the status and JSON body.
async fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = client
        .request(req.body(payload).expect("request"))
        .await
        .expect("platform answers");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_order_with_a_traceparent_is_traced_through_the_matcher_to_the_database() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let collector = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let receiver = tokio::spawn(axum::serve(listener, app).into_future());

    let dir = tempfile::tempdir().expect("tempdir");
    let port = process::spare_port();
    let endpoint = format!("http://{collector}");
    let mut child = process::start(
        dir.path(),
        port,
        &[
            ("LOG_FORMAT", "json"),
            // The request's "finished processing request" line is at DEBUG.
            (
                "RUST_LOG",
                "info,tradeplane_platform::http::middleware=debug",
            ),
            ("ADMIN_USERNAME", "root"),
            ("ADMIN_PASSWORD", "root-password-long"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "tradeplane-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    process::wait_ready(port, Duration::from_secs(60)).await;

    let (status, user) = call(
        port,
        "POST",
        "/api/v1/auth/register",
        None,
        &[],
        Some(json!({"username": "tracy", "password": "tracy-password"})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let account = user["account_id"].as_i64().expect("account");
    let (_, admin) = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        &[],
        Some(json!({"username": "root", "password": "root-password-long"})),
    )
    .await;
    let admin = admin["access_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let (status, _) = call(
        port,
        "POST",
        &format!("/api/v1/admin/accounts/{account}/deposits"),
        Some(&admin),
        &[],
        Some(json!({"amount": "100000"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, tokens) = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        &[],
        Some(json!({"username": "tracy", "password": "tracy-password"})),
    )
    .await;
    let token = tokens["access_token"].as_str().expect("token").to_owned();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let (status, order) = call(
        port,
        "POST",
        "/api/v1/orders",
        Some(&token),
        &[("traceparent", &traceparent), ("tracestate", "vendor=x")],
        Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "150", "qty": "1"})),
    )
    .await;
    assert_eq!(status, 201, "{order}");

    // Wait for the request span, the batch and a statement under it to arrive.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let deadline = Instant::now() + Duration::from_secs(15);
    let spans: Vec<(String, Span)> = loop {
        let ours: Vec<(String, Span)> = received
            .lock()
            .expect("spans")
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        let names: Vec<&str> = ours.iter().map(|(_, s)| s.name.as_str()).collect();
        if names.contains(&"POST /api/v1/orders")
            && names.contains(&"matcher.batch")
            && names.iter().any(|n| n.starts_with("batch_"))
        {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace so far: {names:?}; all: {:?}",
            received
                .lock()
                .expect("spans")
                .iter()
                .map(|(_, s)| s.name.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    };
    assert!(spans.iter().all(|(svc, _)| svc == "tradeplane-under-test"));

    let request = find("POST /api/v1/orders");
    assert_eq!(
        hex(&request.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(
        attr(request, "http.route").as_deref(),
        Some("/api/v1/orders")
    );
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(request.trace_state, "vendor=x", "tracestate kept");

    let wait = find("matcher.queue_wait");
    assert_eq!(wait.parent_span_id, request.span_id);
    let batch = find("matcher.batch");
    assert_eq!(batch.parent_span_id, request.span_id);
    assert_eq!(attr(batch, "batch.size").as_deref(), Some("1"));
    let statements: u32 = attr(batch, "batch.statements")
        .and_then(|s| s.parse().ok())
        .expect("batch.statements");
    let db: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| attr(s, "db.operation.name").is_some())
        .filter(|s| s.parent_span_id == batch.span_id)
        .collect();
    assert!(
        db.iter().any(|s| s.name == "batch_write"),
        "{:?}",
        db.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(db.iter().all(|s| s.kind == 3), "SPAN_KIND_CLIENT");
    assert!(
        statements as usize >= db.len(),
        "{statements} < {}",
        db.len()
    );
    // Every span of the trace starts within the request.
    for (_, s) in &spans {
        if s.span_id != request.span_id {
            assert!(
                s.start_time_unix_nano >= request.start_time_unix_nano,
                "{}",
                s.name
            );
            assert!(
                s.start_time_unix_nano <= request.end_time_unix_nano,
                "{}",
                s.name
            );
        }
    }

    // The request's log line carries the trace and its span.
    let log = process::log(dir.path(), port);
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["trace_id"] == trace_id)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "finished processing request"
                && l["span_id"] == hex(&request.span_id)),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["span_id"].as_str().is_some_and(|s| s.len() == 16)),
        "{lines:?}"
    );

    process::sigterm(&child);
    let status = process::wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    receiver.abort();
}
