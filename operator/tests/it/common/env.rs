//! The controller test environment: a fake API with one TradingPlatform `ns/x` and a context.
#![allow(dead_code)]

use std::sync::Arc;

use http::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use tradeplane_operator::controller::{self, Context};
use tradeplane_operator::crd::TradingPlatform;
use tradeplane_operator::metrics::Metrics;

use super::fake_api::{self, FakeApi, Logged};

pub const TP: &str = "/apis/tradeplane.io/v1alpha1/namespaces/ns/tradingplatforms/x";
pub const DEPLOY: &str = "/apis/apps/v1/namespaces/ns/deployments/x";
pub const SERVICE: &str = "/api/v1/namespaces/ns/services/x";
pub const SA: &str = "/api/v1/namespaces/ns/serviceaccounts/x";
pub const CM: &str = "/api/v1/namespaces/ns/configmaps/x-config";
pub const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/x";
pub const HPA: &str = "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers/x";
pub const PVC: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/x-backups";
pub const CRON: &str = "/apis/batch/v1/namespaces/ns/cronjobs/x-backup";
pub const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/x";
pub const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/x";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

pub fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

pub fn tp_json(spec_extra: Value) -> Value {
    let mut spec = json!({
        "image": "img:1",
        "database": {"name": "sec", "key": "db"},
        "jwtSecret": {"name": "sec", "key": "jwt"}
    });
    fake_api::merge_patch(&mut spec, &spec_extra);
    json!({
        "apiVersion": "tradeplane.io/v1alpha1",
        "kind": "TradingPlatform",
        "metadata": {"name": "x", "namespace": "ns", "uid": "tp-uid", "generation": 1, "resourceVersion": "1"},
        "spec": spec
    })
}

pub struct Env {
    pub api: FakeApi,
    pub ctx: Arc<Context>,
}

impl Env {
    pub fn new(tp: Value) -> Self {
        Self::build(tp, false)
    }

    /// As [`Env::new`], with a context fed by the watches (pass `ctx.feed` to
    /// `build_controller`): unchanged children are not applied again, backup Jobs are listed
    /// again only after a Job event.
    pub fn with_watch_feed(tp: Value) -> Self {
        Self::build(tp, true)
    }

    fn build(tp: Value, job_watch: bool) -> Self {
        let (api, client) = FakeApi::start();
        api.put(TP, tp);
        let mut ctx = Context::new(client, Metrics::new().unwrap(), Some("test".into()));
        if job_watch {
            ctx = ctx.with_watch_feed();
        }
        ctx.clock = Arc::new(now);
        Self {
            api,
            ctx: Arc::new(ctx),
        }
    }

    pub fn tp(&self) -> Arc<TradingPlatform> {
        Arc::new(serde_json::from_value(self.api.get(TP).expect("tp exists")).expect("tp parses"))
    }

    pub async fn reconcile(&self) -> Result<kube::runtime::controller::Action, controller::Error> {
        controller::reconcile(self.tp(), self.ctx.clone()).await
    }

    /// Reconciles until the finalizer is on and the children are applied.
    pub async fn converge(&self) {
        for _ in 0..2 {
            self.reconcile().await.expect("reconcile succeeds");
        }
    }

    pub fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit(TP, |tp| {
            f(&mut tp["spec"]);
            let g = tp["metadata"]["generation"].as_i64().unwrap();
            tp["metadata"]["generation"] = json!(g + 1);
        });
    }

    pub fn condition(&self, t: &str) -> Value {
        let tp = self.api.get(TP).unwrap();
        tp["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn make_deployment_available(&self, n: i64) {
        self.api.edit(DEPLOY, |d| {
            let g = d["metadata"]["generation"].clone();
            d["status"] = json!({"observedGeneration": g, "replicas": n, "readyReplicas": n,
                "updatedReplicas": n, "availableReplicas": n});
        });
    }
}

pub fn writes(log: &[Logged]) -> Vec<String> {
    log.iter()
        .filter(|l| l.method != Method::GET)
        .map(|l| format!("{} {}", l.method, l.path))
        .collect()
}
