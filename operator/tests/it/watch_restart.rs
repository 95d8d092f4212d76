//! The real Controller (run.rs's watches) against the fake API: after an API-server restart
//! (every watch answered with 410 Gone) a spec change made meanwhile is applied at once, even
//! while another watch keeps failing; readiness fails while a watch is not current and recovers;
//! liveness fails after the bound. Time is tokio's paused clock: the elapsed times asserted are
//! virtual and deterministic (they count the backoff sleeps), no wall-clock sleep is asserted.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::env::*;
use futures::StreamExt;
use http::Method;
use serde_json::json;
use tokio::time::Instant;
use tower::ServiceExt;
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::http::{HttpState, router};
use tradeplane_operator::metrics::Metrics;
use tradeplane_operator::run::build_controller;
use tradeplane_operator::watch::WatchHealth;

fn image(env: &Env) -> Option<String> {
    env.api.get(DEPLOY).and_then(|d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .map(str::to_string)
    })
}

/// Advances the paused clock in 10 ms steps until `f` holds; returns the virtual time it took.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "not within {limit:?} (virtual)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn status_of(state: &HttpState, path: &str) -> u16 {
    let resp = router(state.clone())
        .oneshot(
            http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(start_paused = true)]
async fn after_an_api_server_restart_a_missed_change_is_applied_at_once() {
    // The finalizer is already on: the fake's watches deliver no events of their own, so the
    // first reconciliation must apply the children.
    let mut tp = tp_json(json!({}));
    tp["metadata"]["finalizers"] = json!([controller::FINALIZER]);
    let env = Env::new(tp);
    let metrics = Metrics::new().unwrap();
    let health = WatchHealth::with_metrics(metrics.clone());
    let client = {
        // a second client on the same fake is not possible; reuse the context's
        env.ctx.client.clone()
    };
    let state = HttpState {
        metrics,
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        watches: health.clone(),
        stale_bound: Duration::from_secs(60),
    };
    let ctx: Arc<Context> = env.ctx.clone();
    let controller = build_controller(&client, "ns", &health, ctx.feed.clone()).run(
        controller::reconcile,
        controller::error_policy,
        ctx,
    );
    let task = tokio::spawn(controller.for_each(|_| async {}));

    until(Duration::from_secs(10), || {
        image(&env).as_deref() == Some("img:1")
    })
    .await;
    until(Duration::from_secs(10), || env.api.open_watches() == 12).await;
    assert_eq!(status_of(&state, "/health/ready").await, 200);

    // The API server restarts: a change lands that no watch delivers, the Deployments list keeps
    // failing for a while, and every open watch ends with 410 Gone.
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.api.fail_when(|m, p, _| {
        (m == Method::GET && p == "/apis/apps/v1/namespaces/ns/deployments").then_some(500)
    });
    env.api.end_watches(&[common::fake_api::gone_event()]);

    let took = until(Duration::from_secs(600), || {
        image(&env).as_deref() == Some("img:2")
    })
    .await;
    // kube-runtime's shared trigger backoff would pause every watch for at least 800 ms after
    // the first error (and longer with each further one); per-watch backoff and an immediate
    // relist on 410 apply the change without waiting for the failing Deployments watch.
    assert!(
        took < Duration::from_millis(500),
        "change applied after {took:?} (virtual)"
    );
    assert_eq!(
        status_of(&state, "/health/ready").await,
        503,
        "the Deployments watch is not current"
    );
    assert_eq!(
        status_of(&state, "/health/live").await,
        200,
        "within the bound"
    );

    // Still failing past the bound: liveness fails (the leader steps down, see run.rs).
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(status_of(&state, "/health/live").await, 503);
    let stale = health.stale_beyond(Duration::from_secs(60)).expect("stale");
    assert_eq!(stale.name, "Deployment");
    assert!(
        stale
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("(500 InternalError)"),
        "{stale:?}"
    );

    // The API server recovers: the watch is current again within its backoff. kube-runtime's
    // DefaultBackoff caps the delay at 30 s and then adds backon's jitter of up to the delay
    // itself, so the last wait can reach 60 s.
    env.api.heal();
    until(Duration::from_secs(61), || health.stale().is_empty()).await;
    assert_eq!(status_of(&state, "/health/ready").await, 200);
    assert_eq!(status_of(&state, "/health/live").await, 200);
    task.abort();
}
