//! The reconcile span reaches an OTLP/HTTP receiver run by this test (decoded with the
//! `opentelemetry-proto` types): named `reconcile`, with the resource's name and namespace, the
//! children applied and the outcome.
//!
//! A test binary of its own, not a module of `it`: tracing's callsite interest and its global
//! maximum level are process-wide, and with `it`'s other tests reconciling on other threads
//! without a subscriber while this one installs its thread's subscriber, the `reconcile` span was
//! now and then never created (about 1 run in 8, measured with a counting layer: 0 spans created,
//! not 0 exported).

#[path = "it/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use common::env::{Env, tp_json};

type Received = Arc<Mutex<Vec<Span>>>;

async fn receive(State(spans): State<Received>, body: Bytes) -> (axum::http::StatusCode, Vec<u8>) {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut kept = spans.lock().expect("spans");
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            kept.extend(ss.spans);
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
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reconcile_exports_a_span_with_its_object_children_and_outcome() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let receiver = tokio::spawn(axum::serve(listener, app).into_future());

    let (layer, guard) =
        tradeplane_operator::otel::layer_to(&format!("http://{addr}/v1/traces")).expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    {
        // The reconciles run on this thread (awaited here), under this subscriber.
        let _default = tracing::subscriber::set_default(subscriber);
        // Other tests of this binary hit the same callsites at the same time without a
        // subscriber; recompute every callsite's cached interest now that this thread has one,
        // so none stays cached as "never" from a registration that raced with `set_default`.
        tracing::callsite::rebuild_interest_cache();
        let env = Env::new(tp_json(json!({})));
        env.reconcile().await.expect("finalizer added");
        env.reconcile().await.expect("children applied");
    }
    // Flushing blocks until the export finished: off the runtime's threads.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .expect("flushed");

    let spans = received.lock().expect("spans").clone();
    let reconciles: Vec<&Span> = spans.iter().filter(|s| s.name == "reconcile").collect();
    assert_eq!(
        reconciles.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for s in &reconciles {
        assert_eq!(attr(s, "tradingplatform.name").as_deref(), Some("x"));
        assert_eq!(attr(s, "k8s.namespace.name").as_deref(), Some("ns"));
        assert_eq!(attr(s, "outcome").as_deref(), Some("ok"));
        assert!(s.end_time_unix_nano > s.start_time_unix_nano);
    }
    let applied: Vec<Option<String>> = reconciles
        .iter()
        .map(|s| attr(s, "children.applied"))
        .collect();
    // The first reconcile only adds the finalizer; the second applies the eight children and
    // the migration Job.
    assert!(applied.contains(&Some("9".to_owned())), "{applied:?}");
    receiver.abort();
}
