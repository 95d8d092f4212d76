//! Scale benchmarks (issue 13 "Scale and quiet"), `#[ignore]`d: run them with
//! `scripts/bench-operator.sh`. Both use the tests' fake API with N TradingPlatforms (default
//! 1,000) and print, next to the goals:
//! - the time until every TradingPlatform has `status.observedGeneration == metadata.generation`
//!   (goal < 60 s),
//! - the peak RSS (`VmHWM`; goal < 40 MiB for the operator),
//! - the API requests made during a quiet period after that (goal: 0 until the resync, 5 min).
//!
//! `reconcile_1000_platforms_then_stay_quiet` runs the real Controller (run.rs's watches, the
//! reconciler, the per-watch backoff) in this process against the in-process fake: its peak RSS
//! includes the fake API (its store, request handling), so the operator's own share is smaller
//! than the figure printed (the store is measured separately).
//!
//! `operator_process_rss_at_1000_platforms` runs the operator binary itself (`tradeplane-operator
//! run`, leader election on, built in the benchmark's profile) as a child process against the
//! same fake served over plain HTTP on 127.0.0.1 (a kubeconfig without TLS or credentials), and
//! reads the child's `VmHWM` and `VmRSS`: the operator's memory apart from the fake's. The Lease
//! renewals (about one PATCH and one GET every 10 s) are counted apart from the quiet-period goal.
//! `VmHWM` is a per-process peak, so the script runs each benchmark in a process of its own.
//!
//! What they do not model: API-server latency (the fake answers at once, one request at a time;
//! over HTTP only loopback TCP is added), TLS and authentication (the real client does a TLS
//! handshake and keeps rustls state per connection), API priority and fairness / client-side
//! throttling, watch events (the fake's watches stay open and
//! never deliver, so each platform is reconciled from the initial list only and starts with the
//! finalizer already on: the finalizer's own round trip is not measured; after convergence both
//! benchmarks end every watch with a 410 Gone, whose relist reports the children's versions that
//! a real server's events would have reported, and then measure the quiet period and the resync), real pods, ReplicaSets
//! and Jobs (the migration Job is completed at once), admission and etcd. The operator binary is
//! built with glibc and, unless the script's `FEATURES=mimalloc` is set, its allocator (the
//! release image: musl + mimalloc). The fake pages lists (`limit`/`continue`), and the objects
//! carry `managedFields` and kubectl's annotation as a real server's do (see `platform`).

#[path = "it/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_api::{FakeApi, Logged};
use futures::StreamExt;
use serde_json::json;
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::metrics::Metrics;
use tradeplane_operator::run::build_controller;
use tradeplane_operator::watch::WatchHealth;

const TPS: &str = "/apis/tradeplane.io/v1alpha1/namespaces/ns/tradingplatforms";

fn proc_status_kib(field: &str) -> Option<u64> {
    pid_status_kib("self", field)
}

/// A `kB` field of `/proc/<pid>/status` (`pid` may be `self`).
/// User plus system CPU time of process `pid` (`/proc/<pid>/stat`, in clock ticks of 1/100 s,
/// the value of `getconf CLK_TCK` on Linux).
fn pid_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn pid_status_kib(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One line of a benchmark's table: the figure, the measured value and the goal.
fn row(
    figure: impl std::fmt::Display,
    measured: impl std::fmt::Display,
    goal: impl std::fmt::Display,
) {
    println!("{figure:<48} {measured:>14} {goal:>12}");
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

/// A TradingPlatform as a real API server returns one that was made by `kubectl apply` and has
/// been reconciled once: with kubectl's `last-applied-configuration` annotation and the
/// `managedFields` of kubectl, of the finalizer patch and of the status writes. Those are most
/// of a real object's size (the operator drops them from its cache, see `run::build_controller`).
fn platform(i: usize) -> serde_json::Value {
    let spec = json!({
        "image": "ghcr.io/tradeplane/tradeplane:0.1.0",
        "replicas": 2,
        "database": {"name": "sec", "key": "db"},
        "jwtSecret": {"name": "sec", "key": "jwt"}
    });
    let applied = json!({"apiVersion": "tradeplane.io/v1alpha1", "kind": "TradingPlatform",
        "metadata": {"annotations": {}, "name": format!("tp-{i}"), "namespace": "ns"}, "spec": spec});
    let condition = json!({".": {}, "f:lastTransitionTime": {}, "f:message": {},
        "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}});
    let conditions: serde_json::Map<String, serde_json::Value> =
        ["Ready", "Progressing", "Degraded", "BackupHealthy"]
            .iter()
            .map(|t| (format!("k:{{\"type\":\"{t}\"}}"), condition.clone()))
            .collect();
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": format!("tp-{i}"), "namespace": "ns", "uid": format!("tp-uid-{i}"),
            "generation": 1, "resourceVersion": "1", "finalizers": [controller::FINALIZER],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")
            },
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update",
                 "apiVersion": "tradeplane.io/v1alpha1", "time": "2026-12-04T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:annotations": {".": {},
                        "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                    "f:spec": {".": {}, "f:image": {}, "f:replicas": {},
                        "f:database": {".": {}, "f:key": {}, "f:name": {}},
                        "f:jwtSecret": {".": {}, "f:key": {}, "f:name": {}}}}},
                {"manager": "tradeplane-operator", "operation": "Update",
                 "apiVersion": "tradeplane.io/v1alpha1", "time": "2026-12-04T10:00:01Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:finalizers": {".": {},
                        format!("v:\"{}\"", controller::FINALIZER): {}}}}},
                {"manager": "tradeplane-operator", "operation": "Update",
                 "apiVersion": "tradeplane.io/v1alpha1", "time": "2026-12-04T10:00:02Z",
                 "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {
                    "f:status": {".": {}, "f:conditions": conditions, "f:observedGeneration": {},
                        "f:phase": {}, "f:readyReplicas": {}, "f:replicas": {},
                        "f:endpoint": {}, "f:image": {}}}}
            ]},
        "spec": spec
    })
}

/// The row of the request table a logged request is counted in.
fn kind_of(l: &Logged) -> String {
    if l.path.contains("/leases/") {
        format!("{} lease", l.method)
    } else if l.path.ends_with("/status") {
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
    }
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
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), Some("bench".into())).with_watch_feed(),
    );
    let started = Instant::now();
    let controller = build_controller(&client, "ns", &health, ctx.feed.clone()).run(
        controller::reconcile,
        controller::error_policy,
        ctx.clone(),
    );
    let task = tokio::spawn(controller.for_each(|_| async {}));

    let mut requests = 0usize;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    let limit = Duration::from_secs(env_or("BENCH_LIMIT_SECONDS", 600));
    let done = loop {
        // The log is drained as we go, so it does not grow with the run.
        for l in api.take_log() {
            requests += 1;
            *by_kind.entry(kind_of(&l)).or_default() += 1;
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

    relist_and_settle(
        &api,
        || api.end_watches(&[common::fake_api::gone_event()]),
        || api.open_watches(),
        12,
    )
    .await;

    // Quiet period: nothing changes; anything requested now is beyond the resync.
    let _ = api.take_log();
    tokio::time::sleep(quiet).await;
    let quiet_log = api.take_log();
    let hwm_end = proc_status_kib("VmHWM:").unwrap_or(0);
    let rss_end = proc_status_kib("VmRSS:").unwrap_or(0);
    // The 5-minute resync of every platform, nothing having changed: each is reconciled once
    // more by the same context, 16 at once as the Controller does.
    let tps: Vec<Arc<TradingPlatform>> = {
        let st = api.state.lock().unwrap();
        st.store
            .iter()
            .filter(|(k, _)| k.starts_with(TPS))
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .map(Arc::new)
            .collect()
    };
    futures::stream::iter(tps)
        .for_each_concurrent(16, |tp| {
            let ctx = ctx.clone();
            async move {
                let _ = controller::reconcile(tp, ctx).await;
            }
        })
        .await;
    let mut resync: std::collections::BTreeMap<String, usize> = Default::default();
    let resync_log = api.take_log();
    for l in &resync_log {
        *resync.entry(kind_of(l)).or_default() += 1;
    }
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
    row("figure", "measured", "goal");
    row(
        "time until all observedGeneration == generation",
        secs.map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "not reached".into()),
        "< 60 s",
    );
    row(
        "peak RSS (VmHWM), operator + fake API",
        format!("{:.1} MiB", mib(hwm_end)),
        "< 40 MiB",
    );
    row(
        "  VmHWM before the fake was filled",
        format!("{:.1} MiB", mib(hwm_start)),
        "",
    );
    row(
        "  VmHWM when all were observed",
        format!("{:.1} MiB", mib(hwm_reconciled)),
        "",
    );
    row("  VmRSS at the end", format!("{:.1} MiB", mib(rss_end)), "");
    row(
        "  of which the fake's store (RSS of a copy)",
        format!("~{:.1} MiB", mib(store_kib)),
        "",
    );
    row(
        format!("API requests in {} s of quiet after", quiet.as_secs()),
        quiet_log.len(),
        "0",
    );
    row(
        "API requests until all observed",
        format!("{requests} ({:.1}/tp)", requests as f64 / n.max(1) as f64),
        "",
    );
    for (k, v) in &by_kind {
        println!("    {k:<44} {v:>14}");
    }
    for l in quiet_log.iter().take(10) {
        println!("    quiet: {} {}?{}", l.method, l.path, l.query);
    }
    row(
        "API requests of one resync of every platform",
        format!(
            "{} ({:.1}/tp)",
            resync_log.len(),
            resync_log.len() as f64 / n.max(1) as f64
        ),
        "",
    );
    for (k, v) in &resync {
        println!("    {k:<44} {v:>14}");
    }
    assert!(done.is_some(), "not every platform was reconciled");
}

/// Serves `api` over plain HTTP on a free port of 127.0.0.1, for an operator in another process.
/// Requests are answered from the store as `FakeApi::start`'s transport does; a watch gets its
/// headers and then a body that ends only with a 410 Gone event, sent to every open watch by
/// [`HttpWatches::gone`] (the in-process fake parks watches the same way, see `end_watches`).
async fn serve_http(api: FakeApi) -> (std::net::SocketAddr, HttpWatches) {
    use axum::body::{Body, Bytes};
    use axum::extract::Request;
    use axum::response::Response;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let watches = HttpWatches {
        open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        gone: Arc::new(tokio::sync::watch::channel(0u64).0),
    };
    let w = watches.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let api = api.clone();
        let w = w.clone();
        async move {
            let (parts, body) = req.into_parts();
            let q = parts.uri.query().unwrap_or("");
            if parts.method == http::Method::GET
                && (q.contains("watch=true") || q.contains("watch=1"))
            {
                let mut gone = w.gone.subscribe();
                let open = w.open.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let stream = futures::stream::once(async move {
                    let _ = gone.changed().await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    let mut line = serde_json::to_vec(&common::fake_api::gone_event()).unwrap();
                    line.push(b'\n');
                    Ok::<_, std::convert::Infallible>(Bytes::from(line))
                });
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from_stream(stream))
                    .unwrap();
            }
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let (head, body) = api.respond(parts, &bytes).into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            Response::from_parts(head, Body::from(bytes))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, watches)
}

/// The watches [`serve_http`] holds open.
#[derive(Clone)]
struct HttpWatches {
    open: Arc<std::sync::atomic::AtomicUsize>,
    gone: Arc<tokio::sync::watch::Sender<u64>>,
}

impl HttpWatches {
    /// Ends every open watch with a 410 Gone event.
    fn gone(&self) {
        self.gone.send_modify(|n| *n += 1);
    }

    fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The operator child process, killed when dropped (also when the benchmark panics).
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary the benchmark runs: `BENCH_OPERATOR_BIN` (for example a static musl build, as the
/// image ships), else the one cargo built beside the test.
fn operator_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_OPERATOR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tradeplane-operator").into())
}

/// The operator binary (`tradeplane-operator run`, built in the benchmark's profile) as its own
/// process against the fake served over HTTP, so its `VmHWM` is the operator's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench-operator.sh"]
async fn operator_process_rss_at_1000_platforms() {
    let n: usize = env_or("BENCH_PLATFORMS", 1000);
    let quiet = Duration::from_secs(env_or("BENCH_QUIET_SECONDS", 20));
    let limit = Duration::from_secs(env_or("BENCH_LIMIT_SECONDS", 600));
    let (api, _client) = FakeApi::start();
    for i in 0..n {
        api.put(&format!("{TPS}/tp-{i}"), platform(i));
    }
    let (addr, http_watches) = serve_http(api.clone()).await;

    let dir = std::env::temp_dir().join(format!("tradeplane-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: bench\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: bench\n    namespace: ns\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());

    let started = Instant::now();
    let mut child = Operator(
        std::process::Command::new(operator_binary())
            .args(["run", "--namespace", "ns", "--leader-election", "true"])
            .args([
                "--lease-name",
                "tradeplane-operator",
                "--pod-namespace",
                "ns",
            ])
            .args(["--pod-name", "bench", "--listen-addr", &listen])
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("LOG_FORMAT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the operator binary"),
    );
    let pid = child.0.id().to_string();

    let mut requests = 0usize;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    let done = loop {
        for l in api.take_log() {
            requests += 1;
            *by_kind.entry(kind_of(&l)).or_default() += 1;
        }
        let count = observed(&api);
        if count == n {
            break Some(started.elapsed());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            eprintln!("the operator exited ({status}) with {count}/{n} observed");
            break None;
        }
        if started.elapsed() > limit {
            eprintln!("only {count}/{n} observed after {limit:?}");
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hwm_reconciled = pid_status_kib(&pid, "VmHWM:").unwrap_or(0);
    let cpu_reconciled = pid_cpu_seconds(&pid).unwrap_or(0.0);
    let objects = api.state.lock().unwrap().store.len();

    let relist = relist_and_settle(&api, || http_watches.gone(), || http_watches.open(), 12).await;
    let hwm_relisted = pid_status_kib(&pid, "VmHWM:").unwrap_or(0);

    // Quiet period: nothing changes. The leader renews its Lease (every ~10 s, a PATCH and a
    // GET); anything else requested now is beyond the resync.
    let _ = api.take_log();
    tokio::time::sleep(quiet).await;
    let quiet_log = api.take_log();
    let (quiet_lease, quiet_other): (Vec<&Logged>, Vec<&Logged>) =
        quiet_log.iter().partition(|l| l.path.contains("/leases/"));
    let alive = matches!(child.0.try_wait(), Ok(None));
    let hwm_end = pid_status_kib(&pid, "VmHWM:").unwrap_or(0);
    let rss_end = pid_status_kib(&pid, "VmRSS:").unwrap_or(0);
    let threads = pid_status_kib(&pid, "Threads:").unwrap_or(0);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    let fake_hwm = proc_status_kib("VmHWM:").unwrap_or(0);

    let secs = done.map(|d| d.as_secs_f64());
    println!();
    println!(
        "operator process benchmark: {n} TradingPlatforms, operator binary ({}) against the fake API over HTTP ({objects} objects at the end)",
        std::env::var("BENCH_OPERATOR_BIN").unwrap_or_else(|_| if cfg!(debug_assertions) {
            "debug".into()
        } else {
            "release".into()
        })
    );
    row("figure", "measured", "goal");
    row(
        "time from exec until all observed",
        secs.map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "not reached".into()),
        "< 60 s",
    );
    row(
        "operator peak RSS (VmHWM of the child)",
        format!("{:.1} MiB", mib(hwm_end)),
        "< 40 MiB",
    );
    row(
        "  VmHWM when all were observed",
        format!("{:.1} MiB", mib(hwm_reconciled)),
        "",
    );
    row(
        "  VmHWM after a relist of every watch",
        format!("{:.1} MiB", mib(hwm_relisted)),
        "",
    );
    row("  VmRSS at the end", format!("{:.1} MiB", mib(rss_end)), "");
    row(
        "  API requests of that relist and its reconciles",
        relist,
        "",
    );
    row(
        "  operator CPU until all observed",
        format!("{cpu_reconciled:.2} s"),
        "",
    );
    row("  threads at the end", threads, "");
    row(
        format!(
            "API requests in {} s of quiet after (no Lease)",
            quiet.as_secs()
        ),
        quiet_other.len(),
        "0",
    );
    row(
        "  Lease requests in the quiet period",
        quiet_lease.len(),
        "",
    );
    row(
        "API requests until all observed",
        format!("{requests} ({:.1}/tp)", requests as f64 / n.max(1) as f64),
        "",
    );
    for (k, v) in &by_kind {
        println!("    {k:<44} {v:>14}");
    }
    row(
        "(this process: fake API + store, VmHWM)",
        format!("{:.1} MiB", mib(fake_hwm)),
        "",
    );
    for l in quiet_other.iter().take(10) {
        println!("    quiet: {} {}?{}", l.method, l.path, l.query);
    }
    assert!(done.is_some(), "not every platform was reconciled");
    assert!(alive, "the operator exited during the quiet period");
}

/// The fake delivers no watch events of its own, so after the start the operator's watches have
/// not reported the children's versions, as a real API server's events would have (see
/// `tradeplane_operator::feed`): a 410 Gone on every watch makes them relist, which reports
/// them, as after an API-server restart (`gone` ends every watch with one). Waits until `open`
/// counts the `watches` again and the
/// reconciliations the relist triggers are done (2 s without a request, Lease renewals aside);
/// returns the requests made meanwhile.
async fn relist_and_settle(
    api: &FakeApi,
    gone: impl Fn(),
    open: impl Fn() -> usize,
    watches: usize,
) -> usize {
    gone();
    let mut requests = 0;
    let mut quiet = 0;
    let start = Instant::now();
    while quiet < 4 || open() < watches {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} of {watches} watches open again after 300 s",
            open()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = api.take_log();
        let busy = log.iter().any(|l| !l.path.contains("/leases/"));
        requests += log.len();
        quiet = if busy { 0 } else { quiet + 1 };
    }
    requests
}
