//! Scale benchmark (issue 13 "Scale and quiet"), `#[ignore]`d: run it with
//! `scripts/bench-operator.sh`. The real Controller (run.rs's watches, the reconciler, the
//! per-watch backoff) runs against the in-process fake API of the tests with N TradingPlatforms
//! (default 1,000), and prints next to the goals:
//! - the time until every TradingPlatform has `status.observedGeneration == metadata.generation`
//!   (goal < 60 s),
//! - the peak RSS of the process (`VmHWM`; goal < 40 MiB), with the fake API's own store
//!   measured separately because it lives in the same process,
//! - the API requests made during a quiet period after that (goal: 0 until the resync, 5 min).
//!
//! What it does not model: network and API-server latency (the fake answers in-process, one
//! request at a time), API priority and fairness / client-side throttling, watch events (the
//! fake's watches stay open and never deliver, so each platform is reconciled from the initial
//! list only and starts with the finalizer already on: the finalizer's own round trip is not
//! measured), real pods, ReplicaSets and Jobs (the migration Job is completed at once), admission
//! and etcd. The peak RSS includes the fake API (its store, request handling), so the operator's
//! own share is smaller than the figure printed.

#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_api::FakeApi;
use futures::StreamExt;
use serde_json::json;
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::metrics::Metrics;
use tradeplane_operator::run::build_controller;
use tradeplane_operator::watch::WatchHealth;

const TPS: &str = "/apis/tradeplane.io/v1alpha1/namespaces/ns/tradingplatforms";

fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn platform(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": format!("tp-{i}"), "namespace": "ns", "uid": format!("tp-uid-{i}"),
            "generation": 1, "resourceVersion": "1", "finalizers": [controller::FINALIZER]},
        "spec": {
            "image": "ghcr.io/tradeplane/tradeplane:0.1.0",
            "replicas": 2,
            "database": {"name": "sec", "key": "db"},
            "jwtSecret": {"name": "sec", "key": "jwt"}
        }
    })
}

fn observed(api: &FakeApi) -> usize {
    let st = api.state.lock().unwrap();
    st.store
        .iter()
        .filter(|(k, v)| {
            k.starts_with(TPS)
                && v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && !v["status"]["observedGeneration"].is_null()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench-operator.sh"]
async fn reconcile_1000_platforms_then_stay_quiet() {
    let n: usize = env_or("BENCH_PLATFORMS", 1000);
    let quiet = Duration::from_secs(env_or("BENCH_QUIET_SECONDS", 20));
    let hwm_start = proc_status_kib("VmHWM:").unwrap_or(0);
    let (api, client) = FakeApi::start();
    for i in 0..n {
        api.put(&format!("{TPS}/tp-{i}"), platform(i));
    }
    let metrics = Metrics::new().unwrap();
    let health = WatchHealth::with_metrics(metrics.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Some("bench".into()),
    ));
    let started = Instant::now();
    let controller = build_controller(&client, "ns", &health).run(
        controller::reconcile,
        controller::error_policy,
        ctx,
    );
    let task = tokio::spawn(controller.for_each(|_| async {}));

    let mut requests = 0usize;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    let limit = Duration::from_secs(env_or("BENCH_LIMIT_SECONDS", 600));
    let done = loop {
        // The log is drained as we go, so it does not grow with the run.
        for l in api.take_log() {
            requests += 1;
            let kind = if l.path.ends_with("/status") {
                "PATCH status".to_string()
            } else if l.path.contains("/events") {
                format!("{} events", l.method)
            } else {
                format!(
                    "{} {}",
                    l.method,
                    if l.query.contains("labelSelector") && l.method == http::Method::GET {
                        "list"
                    } else {
                        "object"
                    }
                )
            };
            *by_kind.entry(kind).or_default() += 1;
        }
        let count = observed(&api);
        if count == n {
            break Some(started.elapsed());
        }
        if started.elapsed() > limit {
            eprintln!("only {count}/{n} observed after {limit:?}");
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hwm_reconciled = proc_status_kib("VmHWM:").unwrap_or(0);
    let store_bytes: usize = {
        let st = api.state.lock().unwrap();
        st.store
            .values()
            .map(|v| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0))
            .sum()
    };
    let objects = api.state.lock().unwrap().store.len();

    // Quiet period: nothing changes; anything requested now is beyond the resync.
    let _ = api.take_log();
    tokio::time::sleep(quiet).await;
    let quiet_log = api.take_log();
    let hwm_end = proc_status_kib("VmHWM:").unwrap_or(0);
    let rss_end = proc_status_kib("VmRSS:").unwrap_or(0);
    task.abort();
    // The fake's store lives in this process too: a copy of it shows about what it takes.
    let before_copy = proc_status_kib("VmRSS:").unwrap_or(0);
    let copy = api.state.lock().unwrap().store.clone();
    let store_kib = proc_status_kib("VmRSS:")
        .unwrap_or(0)
        .saturating_sub(before_copy);
    drop(copy);

    let secs = done.map(|d| d.as_secs_f64());
    println!();
    println!(
        "operator scale benchmark: {n} TradingPlatforms, fake in-process API ({objects} objects at the end, {:.1} MiB of JSON)",
        store_bytes as f64 / 1048576.0
    );
    println!("{:<48} {:>14} {:>12}", "figure", "measured", "goal");
    println!(
        "{:<48} {:>14} {:>12}",
        "time until all observedGeneration == generation",
        secs.map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "not reached".into()),
        "< 60 s"
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "peak RSS (VmHWM), operator + fake API",
        format!("{:.1} MiB", mib(hwm_end)),
        "< 40 MiB"
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "  VmHWM before the fake was filled",
        format!("{:.1} MiB", mib(hwm_start)),
        ""
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "  VmHWM when all were observed",
        format!("{:.1} MiB", mib(hwm_reconciled)),
        ""
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "  VmRSS at the end",
        format!("{:.1} MiB", mib(rss_end)),
        ""
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "  of which the fake's store (RSS of a copy)",
        format!("~{:.1} MiB", mib(store_kib)),
        ""
    );
    println!(
        "{:<48} {:>14} {:>12}",
        format!("API requests in {} s of quiet after", quiet.as_secs()),
        quiet_log.len(),
        "0"
    );
    println!(
        "{:<48} {:>14} {:>12}",
        "API requests until all observed",
        format!("{requests} ({:.1}/tp)", requests as f64 / n.max(1) as f64),
        ""
    );
    for (k, v) in &by_kind {
        println!("    {k:<44} {v:>14}");
    }
    for l in quiet_log.iter().take(10) {
        println!("    quiet: {} {}?{}", l.method, l.path, l.query);
    }
    assert!(done.is_some(), "not every platform was reconciled");
}
