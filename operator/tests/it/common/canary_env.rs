//! The environment of the canary controller tests: the fake API with one TradingPlatform, a
//! context with a test clock and a scraper serving each pod IP's `/metrics` text from a map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use http::Method;
use serde_json::{Value, json};
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::metrics::Metrics;

use super::env::{DEPLOY, EVENTS, TP, now, tp_json};
use super::fake_api::FakeApi;

/// The canary Deployment of `ns/x`.
pub const CANARY: &str = "/apis/apps/v1/namespaces/ns/deployments/x-canary";
/// Key in `served` that makes the scraper the operator's real HTTP client.
pub const REAL_HTTP: &str = "real-http";
/// The canary's ConfigMap.
pub const CANARY_CM: &str = "/api/v1/namespaces/ns/configmaps/x-canary-config";
/// The pods of `ns`.
pub const PODS: &str = "/api/v1/namespaces/ns/pods";

/// The platform's `/metrics` lines for `ok` 200s (fast), `errors` 500s and `slow` 200s of 0.9 s,
/// in the format of tests/fixtures/platform-metrics.txt, plus health probes that must not count.
pub fn metrics_text(ok: u64, errors: u64, slow: u64) -> String {
    let mut t = String::from(
        "# HELP http_requests_total HTTP requests served, by method, route template and status.\n# TYPE http_requests_total counter\n",
    );
    t += "http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 5000\n";
    t += "http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"503\"} 40\n";
    t += &format!(
        "http_requests_total{{method=\"GET\",route=\"/api/v1/markets\",status=\"200\"}} {}\n",
        ok + slow
    );
    t += &format!(
        "http_requests_total{{method=\"POST\",route=\"/api/v1/orders\",status=\"500\"}} {errors}\n"
    );
    t += "# HELP http_request_duration_seconds HTTP request latency in seconds.\n# TYPE http_request_duration_seconds histogram\n";
    let fast = ok + errors;
    for (le, n) in [
        ("0.05", fast),
        ("0.5", fast),
        ("1", fast + slow),
        ("+Inf", fast + slow),
    ] {
        t += &format!(
            "http_request_duration_seconds_bucket{{method=\"GET\",route=\"/api/v1/markets\",status=\"200\",le=\"{le}\"}} {n}\n"
        );
    }
    t += "http_request_duration_seconds_sum{method=\"GET\",route=\"/api/v1/markets\",status=\"200\"} 1\n";
    t += &format!(
        "http_request_duration_seconds_count{{method=\"GET\",route=\"/api/v1/markets\",status=\"200\"}} {}\n",
        fast + slow
    );
    t
}

pub struct Env {
    pub api: FakeApi,
    pub ctx: Arc<Context>,
    pub clock: Arc<AtomicI64>,
    /// Metrics text by pod IP.
    pub served: Arc<Mutex<HashMap<String, String>>>,
}

impl Env {
    pub fn new(tp: Value) -> Self {
        let (api, client) = FakeApi::start();
        api.put(TP, tp);
        Self::with(
            api,
            client,
            Arc::new(AtomicI64::new(0)),
            Arc::new(Mutex::new(HashMap::new())),
        )
    }

    /// A fresh operator (new context, no memory) on the same cluster: a restart.
    pub fn restart(&self) -> Self {
        let (api, client) = (self.api.clone(), self.client());
        Self::with(api, client, self.clock.clone(), self.served.clone())
    }

    pub fn client(&self) -> kube::Client {
        self.ctx.client.clone()
    }

    pub fn with(
        api: FakeApi,
        client: kube::Client,
        clock: Arc<AtomicI64>,
        served: Arc<Mutex<HashMap<String, String>>>,
    ) -> Self {
        let mut ctx = Context::new(client, Metrics::new().unwrap(), Some("test".into()));
        let c = clock.clone();
        ctx.clock = Arc::new(move || {
            now()
                .checked_add(jiff::SignedDuration::from_secs(c.load(Ordering::SeqCst)))
                .unwrap()
        });
        let s = served.clone();
        let http = tradeplane_operator::analysis::http_scraper();
        ctx.scraper = Arc::new(move |url: String| {
            if s.lock().unwrap().contains_key(REAL_HTTP) {
                return http(url);
            }
            let ip = url
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            let key = if ip == "prom" { prom_key(&url) } else { ip };
            let body = s.lock().unwrap().get(&key).cloned();
            Box::pin(async move { body.ok_or_else(|| format!("connection refused ({url})")) })
        });
        Self {
            api,
            ctx: Arc::new(ctx),
            clock,
            served,
        }
    }

    pub fn at(&self, seconds: i64) {
        self.clock.store(seconds, Ordering::SeqCst);
    }

    pub fn tp(&self) -> Arc<TradingPlatform> {
        Arc::new(serde_json::from_value(self.api.get(TP).unwrap()).unwrap())
    }

    pub async fn reconcile(&self) {
        controller::reconcile(self.tp(), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }

    pub fn rollout(&self) -> Value {
        self.api.get(TP).unwrap()["status"]["rollout"].clone()
    }

    pub fn condition(&self, t: &str) -> Value {
        let tp = self.api.get(TP).unwrap();
        tp["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit(TP, |tp| {
            f(&mut tp["spec"]);
            let g = tp["metadata"]["generation"].as_i64().unwrap();
            tp["metadata"]["generation"] = json!(g + 1);
        });
    }

    pub fn annotate(&self, k: &str, v: &str) {
        self.api
            .edit(TP, |tp| tp["metadata"]["annotations"] = json!({k: v}));
    }

    pub fn available(&self, path: &str) {
        self.api.edit(path, |d| {
            let g = d["metadata"]["generation"].clone();
            let n = d["spec"]["replicas"].clone();
            d["status"] = json!({"observedGeneration": g, "replicas": n, "readyReplicas": n,
                "updatedReplicas": n, "availableReplicas": n});
        });
    }

    /// A pod as its ReplicaSet would make it: the template's labels, an IP, ready or not.
    pub fn pod(&self, name: &str, of: &str, ip: &str, ready: bool) {
        let labels = self.api.get(of).unwrap()["spec"]["template"]["metadata"]["labels"].clone();
        let status = if ready { "True" } else { "False" };
        self.api.put(
            &format!("{PODS}/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "labels": labels},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": status}]}}),
        );
    }

    pub fn serve(&self, ip: &str, ok: u64, errors: u64, slow: u64) {
        self.served
            .lock()
            .unwrap()
            .insert(ip.to_string(), metrics_text(ok, errors, slow));
    }

    /// What the fake Prometheus answers: canary and stable error ratio, canary p99.
    pub fn prometheus(&self, canary: Option<f64>, stable: Option<f64>, p99: Option<f64>) {
        let mut m = self.served.lock().unwrap();
        m.insert("prom:canary".into(), prom_answer(canary));
        m.insert("prom:stable".into(), prom_answer(stable));
        m.insert("prom:p99".into(), prom_answer(p99));
    }

    pub fn events(&self) -> Vec<Value> {
        self.api
            .take_log()
            .into_iter()
            .filter(|l| l.method != Method::GET && l.path.starts_with(EVENTS))
            .filter_map(|l| l.body)
            .collect()
    }
}

/// Which answer of the fake Prometheus (`http://prom:9090`) a query URL wants: `prom:p99`,
/// `prom:canary` (error ratio) or `prom:stable`.
fn prom_key(url: &str) -> String {
    let q = url.split("query=").nth(1).unwrap_or("");
    let q = q.replace("%2D", "-").replace("%5B", "[");
    if q.contains("histogram_quantile") {
        "prom:p99".into()
    } else if q.contains("x-canary") {
        "prom:canary".into()
    } else {
        "prom:stable".into()
    }
}

/// An instant-query answer with one value (`None`: no data).
pub fn prom_answer(v: Option<f64>) -> String {
    match v {
        Some(v) => format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000,"{v}"]}}]}}}}"#
        ),
        None => r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
    }
}

pub fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A platform of 4 replicas with the canary strategy, installed and serving `img:1`, with two
/// stable pods answering on 10.0.0.1 and 10.0.0.2.
pub async fn installed() -> Env {
    let env = Env::new(tp_json(
        json!({"replicas": 4, "rollout": {"strategy": "canary"}}),
    ));
    env.reconcile().await;
    env.reconcile().await;
    env.available(DEPLOY);
    env.pod("x-s-1", DEPLOY, "10.0.0.1", true);
    env.pod("x-s-2", DEPLOY, "10.0.0.2", true);
    env.serve("10.0.0.1", 1000, 1, 0);
    env.serve("10.0.0.2", 1000, 1, 0);
    env.reconcile().await;
    env
}

/// `installed`, then `spec.image: img:2`: the canary runs at step 1 with one ready pod whose
/// baseline is taken at t=10.
pub async fn at_step_one() -> Env {
    let env = installed().await;
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    env.pod("x-canary-c-1", CANARY, "10.0.1.1", true);
    env.serve("10.0.1.1", 0, 0, 0);
    env.at(10);
    env.reconcile().await;
    env
}
