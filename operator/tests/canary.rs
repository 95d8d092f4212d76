//! Canary rollouts (issue 13 "Level 5") against the fake API: the canary Deployment applied at
//! each step while the stable one keeps its template, promotion, automatic rollback on bad
//! metrics, the promote/abort annotations, pause, and an operator restart mid-rollout. The pods'
//! `/metrics` come from a scraper fed by the test, in the platform's own format.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use common::env::{CM, DEPLOY, EVENTS, TP, now, tp_json};
use common::fake_api::FakeApi;
use http::Method;
use serde_json::{Value, json};
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::metrics::Metrics;

const CANARY: &str = "/apis/apps/v1/namespaces/ns/deployments/x-canary";
const PODS: &str = "/api/v1/namespaces/ns/pods";

/// The platform's `/metrics` lines for `ok` 200s (fast), `errors` 500s and `slow` 200s of 0.9 s,
/// in the format of tests/fixtures/platform-metrics.txt, plus health probes that must not count.
fn metrics_text(ok: u64, errors: u64, slow: u64) -> String {
    let mut t = String::from(
        "# HELP http_requests_total HTTP requests served, by method, route template and status.\n# TYPE http_requests_total counter\n",
    );
    t += &format!(
        "http_requests_total{{method=\"GET\",route=\"/health/live\",status=\"200\"}} 5000\n"
    );
    t += &format!(
        "http_requests_total{{method=\"GET\",route=\"/health/ready\",status=\"503\"}} 40\n"
    );
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
    t += &format!(
        "http_request_duration_seconds_sum{{method=\"GET\",route=\"/api/v1/markets\",status=\"200\"}} 1\n"
    );
    t += &format!(
        "http_request_duration_seconds_count{{method=\"GET\",route=\"/api/v1/markets\",status=\"200\"}} {}\n",
        fast + slow
    );
    t
}

struct Env {
    api: FakeApi,
    ctx: Arc<Context>,
    clock: Arc<AtomicI64>,
    /// Metrics text by pod IP.
    served: Arc<Mutex<HashMap<String, String>>>,
}

impl Env {
    fn new(tp: Value) -> Self {
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
    fn restart(&self) -> Self {
        let (api, client) = (self.api.clone(), self.client());
        Self::with(api, client, self.clock.clone(), self.served.clone())
    }

    fn client(&self) -> kube::Client {
        self.ctx.client.clone()
    }

    fn with(
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
        ctx.scraper = Arc::new(move |url: String| {
            let ip = url
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            let body = s.lock().unwrap().get(&ip).cloned();
            Box::pin(async move { body.ok_or_else(|| format!("connection refused ({url})")) })
        });
        Self {
            api,
            ctx: Arc::new(ctx),
            clock,
            served,
        }
    }

    fn at(&self, seconds: i64) {
        self.clock.store(seconds, Ordering::SeqCst);
    }

    fn tp(&self) -> Arc<TradingPlatform> {
        Arc::new(serde_json::from_value(self.api.get(TP).unwrap()).unwrap())
    }

    async fn reconcile(&self) {
        controller::reconcile(self.tp(), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }

    fn rollout(&self) -> Value {
        self.api.get(TP).unwrap()["status"]["rollout"].clone()
    }

    fn condition(&self, t: &str) -> Value {
        let tp = self.api.get(TP).unwrap();
        tp["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }

    fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit(TP, |tp| {
            f(&mut tp["spec"]);
            let g = tp["metadata"]["generation"].as_i64().unwrap();
            tp["metadata"]["generation"] = json!(g + 1);
        });
    }

    fn annotate(&self, k: &str, v: &str) {
        self.api
            .edit(TP, |tp| tp["metadata"]["annotations"] = json!({k: v}));
    }

    fn available(&self, path: &str) {
        self.api.edit(path, |d| {
            let g = d["metadata"]["generation"].clone();
            let n = d["spec"]["replicas"].clone();
            d["status"] = json!({"observedGeneration": g, "replicas": n, "readyReplicas": n,
                "updatedReplicas": n, "availableReplicas": n});
        });
    }

    /// A pod as its ReplicaSet would make it: the template's labels, an IP, ready or not.
    fn pod(&self, name: &str, of: &str, ip: &str, ready: bool) {
        let labels = self.api.get(of).unwrap()["spec"]["template"]["metadata"]["labels"].clone();
        let status = if ready { "True" } else { "False" };
        self.api.put(
            &format!("{PODS}/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "labels": labels},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": status}]}}),
        );
    }

    fn serve(&self, ip: &str, ok: u64, errors: u64, slow: u64) {
        self.served
            .lock()
            .unwrap()
            .insert(ip.to_string(), metrics_text(ok, errors, slow));
    }

    fn events(&self) -> Vec<Value> {
        self.api
            .take_log()
            .into_iter()
            .filter(|l| l.method != Method::GET && l.path.starts_with(EVENTS))
            .filter_map(|l| l.body)
            .collect()
    }
}

fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A platform of 4 replicas with the canary strategy, installed and serving `img:1`, with two
/// stable pods answering on 10.0.0.1 and 10.0.0.2.
async fn installed() -> Env {
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
async fn at_step_one() -> Env {
    let env = installed().await;
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    env.pod("x-canary-c-1", CANARY, "10.0.1.1", true);
    env.serve("10.0.1.1", 0, 0, 0);
    env.at(10);
    env.reconcile().await;
    env
}

#[tokio::test]
async fn a_new_image_starts_the_canary_at_the_first_weight_and_leaves_the_stable_alone() {
    let env = installed().await;
    assert_eq!(env.rollout()["phase"], "Stable");
    let stable_rev =
        env.api.get(DEPLOY).unwrap()["metadata"]["annotations"]["tradeplane.io/revision"].clone();
    assert!(
        stable_rev.is_string(),
        "the stable revision is recorded on the Deployment"
    );
    assert!(
        env.api.get(CANARY).is_none(),
        "no canary without a new revision"
    );
    env.api.take_log();

    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    let canary = env.api.get(CANARY).expect("canary Deployment applied");
    assert_eq!(image(&canary), "img:2");
    assert_eq!(canary["spec"]["replicas"], 1, "ceil(10 % of 4)");
    assert_eq!(
        canary["spec"]["selector"]["matchLabels"]["tradeplane.io/track"],
        "canary"
    );
    let pod_labels = &canary["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["tradeplane.io/track"], "canary");
    let service = env.api.get(common::env::SERVICE).unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the Service selects the canary pods too");
    }
    let stable = env.api.get(DEPLOY).unwrap();
    assert_eq!(
        image(&stable),
        "img:1",
        "the stable pods keep the old template"
    );
    assert_eq!(stable["spec"]["replicas"], 4, "and their count");
    assert_eq!(
        stable["metadata"]["annotations"]["tradeplane.io/revision"],
        stable_rev
    );
    assert!(
        stable["spec"]["selector"]["matchLabels"]
            .get("tradeplane.io/track")
            .is_none()
    );
    let r = env.rollout();
    assert_eq!(
        (
            r["phase"].as_str(),
            r["step"].as_i64(),
            r["weight"].as_i64()
        ),
        (Some("Analysing"), Some(1), Some(10))
    );
    assert_eq!(r["canaryReplicas"], 1);
    assert_eq!(r["decision"], "SetWeight");
    assert_eq!(r["stableRevision"], stable_rev);
    assert_ne!(r["canaryRevision"], stable_rev);
    assert_eq!(env.condition("Progressing")["reason"], "CanaryAnalysing");
    let ev = env.events();
    assert!(ev.iter().any(|e| e["reason"] == "CanaryStep"), "{ev:#?}");
}

#[tokio::test]
async fn good_metrics_advance_each_step_then_promote_and_remove_the_canary() {
    let env = at_step_one().await;
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("baseline"),
        "{}",
        env.rollout()
    );
    // 100 good requests on the canary, the stable pods keep a 0.1 % error ratio
    env.serve("10.0.1.1", 100, 0, 0);
    env.serve("10.0.0.1", 2000, 2, 0);
    env.at(30);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["decision"].as_str()),
        (Some(1), Some("Wait")),
        "{r}"
    );
    assert_eq!(r["canaryRequests"], 100);
    assert_eq!(r["canaryErrorRatio"], 0.0);
    assert!(r["stableErrorRatio"].as_f64().unwrap() > 0.0);
    assert!(r["canaryP99Seconds"].as_f64().unwrap() <= 0.05);

    env.at(61);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["weight"].as_i64()),
        (Some(2), Some(50)),
        "{r}"
    );
    assert_eq!(
        env.api.get(CANARY).unwrap()["spec"]["replicas"],
        2,
        "ceil(50 % of 4)"
    );
    assert_eq!(image(&env.api.get(DEPLOY).unwrap()), "img:1");

    env.pod("x-canary-c-2", CANARY, "10.0.1.2", true);
    env.serve("10.0.1.2", 0, 0, 0);
    env.at(70);
    env.reconcile().await; // baseline of step 2
    env.serve("10.0.1.1", 300, 1, 0);
    env.serve("10.0.1.2", 200, 0, 0);
    env.at(122);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["phase"].as_str(), r["decision"].as_str()),
        (Some("Promoted"), Some("Promote")),
        "{r}"
    );
    let stable = env.api.get(DEPLOY).unwrap();
    assert_eq!(
        image(&stable),
        "img:2",
        "promotion gives the stable Deployment the new template"
    );
    assert_eq!(
        stable["metadata"]["annotations"]["tradeplane.io/revision"],
        r["canaryRevision"]
    );
    assert!(
        env.api.get(CANARY).is_some(),
        "the canary serves until the stable rollout finished"
    );
    assert!(env.events().iter().any(|e| e["reason"] == "CanaryPromoted"));

    env.at(130);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_some(), "still rolling");
    env.available(DEPLOY);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "canary removed once the stable rollout finished"
    );
    let r = env.rollout();
    assert_eq!(r["phase"], "Promoted");
    assert_eq!(r["stableRevision"], r["canaryRevision"]);
    assert!(r["canaryReplicas"].is_null());
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn bad_metrics_roll_back_at_once_and_the_revision_is_not_retried() {
    let env = at_step_one().await;
    env.api.take_log();
    env.serve("10.0.1.1", 80, 20, 0); // 20 % errors
    env.at(20);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none(), "canary deleted");
    assert_eq!(
        image(&env.api.get(DEPLOY).unwrap()),
        "img:1",
        "stable untouched"
    );
    let d = env.condition("Degraded");
    assert_eq!(
        (d["status"].as_str(), d["reason"].as_str()),
        (Some("True"), Some("CanaryFailed"))
    );
    let m = d["message"].as_str().unwrap();
    assert!(
        m.contains("step 1 (10 %)")
            && m.contains("error ratio 0.2000 is above the threshold 0.0100"),
        "{m}"
    );
    let r = env.rollout();
    assert_eq!(
        (r["phase"].as_str(), r["decision"].as_str()),
        (Some("RolledBack"), Some("RollBack"))
    );
    assert_eq!(
        r["canaryErrorRatio"], 0.2,
        "the failing measurement stays visible"
    );
    let ev = env.events();
    let warn = ev
        .iter()
        .find(|e| e["reason"] == "CanaryRolledBack")
        .expect("an Event");
    assert_eq!(warn["type"], "Warning");

    env.at(500);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "the failed revision is not retried"
    );
    assert_eq!(env.condition("Degraded")["reason"], "CanaryFailed");

    env.edit_spec(|s| s["image"] = json!("img:3"));
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(CANARY).expect("a new template is tried")),
        "img:3"
    );
    assert_eq!(env.rollout()["phase"], "Analysing");
    assert_eq!(env.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn a_slow_canary_or_one_worse_than_stable_rolls_back() {
    let env = at_step_one().await;
    env.serve("10.0.1.1", 50, 0, 50); // half the requests take 0.9 s
    env.at(20);
    env.reconcile().await;
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("p99 latency"), "{m}");

    let env = at_step_one().await;
    env.serve("10.0.1.1", 992, 8, 0); // 0.8 %: under 1 %, but stable is at 0.1 %
    env.at(20);
    env.reconcile().await;
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("exceeds the stable pods'"), "{m}");
}

#[tokio::test]
async fn canary_pods_not_ready_after_the_interval_roll_back() {
    let env = at_step_one().await;
    env.pod("x-canary-c-1", CANARY, "10.0.1.1", false);
    env.at(30);
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_some(),
        "pods may start within the interval"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("0/1 canary pods ready")
    );
    env.at(61);
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    let m = env.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("not ready"), "{m}");
}

#[tokio::test]
async fn no_traffic_on_the_canary_does_not_advance() {
    let env = at_step_one().await;
    env.at(200);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(r["step"], 1, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no requests"),
        "{r}"
    );
}

#[tokio::test]
async fn abort_rolls_back_and_promote_skips_the_analysis() {
    let env = at_step_one().await;
    env.annotate("tradeplane.io/abort", "true");
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    assert!(
        env.condition("Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("aborted by tradeplane.io/abort=true")
    );

    let env = at_step_one().await;
    env.annotate("tradeplane.io/promote", "true");
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(DEPLOY).unwrap()),
        "img:2",
        "promoted without analysis"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("promoted by tradeplane.io/promote=true")
    );
}

#[tokio::test]
async fn pause_freezes_the_rollout() {
    let env = at_step_one().await;
    let before = env.rollout();
    env.edit_spec(|s| s["paused"] = json!(true));
    env.serve("10.0.1.1", 0, 100, 0); // would roll back
    env.at(300);
    env.api.take_log();
    env.reconcile().await;
    let writes: Vec<_> = env
        .api
        .take_log()
        .into_iter()
        .filter(|l| l.method != Method::GET && l.path.contains("/deployments"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(env.rollout(), before);
    assert!(env.api.get(CANARY).is_some());
    env.edit_spec(|s| s["paused"] = json!(false));
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "the analysis resumes with the pause lifted"
    );
}

#[tokio::test]
async fn a_restarted_operator_resumes_from_the_status() {
    let env = at_step_one().await;
    env.serve("10.0.1.1", 100, 0, 0);
    env.at(61);
    env.reconcile().await;
    let step2 = env.rollout();
    assert_eq!(step2["step"], 2);
    env.pod("x-canary-c-2", CANARY, "10.0.1.2", true);
    env.serve("10.0.1.2", 0, 0, 0);

    let env = env.restart();
    env.at(90);
    env.reconcile().await;
    let r = env.rollout();
    assert_eq!(
        (r["step"].as_i64(), r["stepStartedAt"].clone()),
        (Some(2), step2["stepStartedAt"].clone()),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("baseline"),
        "a new baseline after the restart"
    );
    env.serve("10.0.1.1", 200, 0, 0);
    env.serve("10.0.1.2", 100, 0, 0);
    env.at(121);
    env.reconcile().await;
    assert_eq!(
        env.rollout()["phase"],
        "Promoted",
        "the interval was not restarted"
    );
}

#[tokio::test]
async fn a_canary_waits_for_the_migration_gate() {
    let env = installed().await;
    env.api.hold_migrations();
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    assert!(
        env.api.get(CANARY).is_none(),
        "no new pod before the migration succeeded"
    );
    assert!(
        env.rollout()["message"]
            .as_str()
            .unwrap()
            .contains("migration")
    );
    let job = env
        .api
        .state
        .lock()
        .unwrap()
        .store
        .iter()
        .find(|(k, j)| k.contains("/jobs/x-migrate-") && image(j) == "img:2")
        .map(|(k, _)| k.clone())
        .unwrap();
    env.api.edit(
        &job,
        |j| {
            j["status"] =
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
        },
    );
    env.reconcile().await;
    assert_eq!(
        image(&env.api.get(CANARY).unwrap_or_else(|| panic!(
            "canary after the gate: {}",
            env.api.get(TP).unwrap()["status"]
        ))),
        "img:2"
    );
}

#[tokio::test]
async fn a_config_change_is_a_new_revision_and_rolling_removes_the_canary() {
    let env = installed().await;
    env.edit_spec(|s| s["settings"] = json!({"logLevel": "debug"}));
    env.reconcile().await;
    let canary = env
        .api
        .get(CANARY)
        .expect("a settings change rolls out as a canary too");
    let stable = env.api.get(DEPLOY).unwrap();
    let ck = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["tradeplane.io/config-checksum"].clone()
    };
    assert_ne!(
        ck(&canary),
        ck(&stable),
        "the stable pods keep the old checksum"
    );
    assert!(env.api.get(CM).is_some());

    env.edit_spec(|s| s["rollout"]["strategy"] = json!("rolling"));
    env.reconcile().await;
    assert!(env.api.get(CANARY).is_none());
    assert_eq!(
        ck(&env.api.get(DEPLOY).unwrap()),
        ck(&canary),
        "the Deployment rolls itself"
    );
    assert!(env.rollout().is_null());
}

#[tokio::test]
async fn with_the_hpa_the_canary_follows_the_live_stable_count() {
    let env = Env::new(tp_json(json!({"rollout": {"strategy": "canary"},
        "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 20, "targetCPUUtilizationPercentage": 70}})));
    env.reconcile().await;
    env.reconcile().await;
    env.api.state.lock().unwrap().hpa_scales(DEPLOY, 12);
    env.edit_spec(|s| s["image"] = json!("img:2"));
    env.reconcile().await;
    assert_eq!(
        env.api.get(CANARY).unwrap()["spec"]["replicas"],
        2,
        "ceil(10 % of 12)"
    );
    assert_eq!(
        env.api.get(DEPLOY).unwrap()["spec"]["replicas"],
        12,
        "the HPA keeps the stable count"
    );
}
