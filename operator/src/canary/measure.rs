//! Measuring a running canary: lists the canary and stable pods, scrapes each ready pod's
//! `/metrics` through [`Context::scraper`], and compares the counters with the baseline of the
//! step (kept in [`Context::canary_baselines`], in memory: after a restart the first scrape takes
//! a new one). Counting and parsing are the pure [`crate::analysis`].

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::key;
use crate::analysis::{self, Sample};
use crate::controller::Context;
use crate::crd::{CanarySpec, RolloutStatus, TradingPlatform};
use crate::errors::kube_error_words;
use crate::resources::Parent;
use crate::resources::canary as canary_res;
use crate::rollout::Analysis;

/// The step-baselines of the analyses, per TradingPlatform (`ns/name`).
pub type Baselines = HashMap<String, Baseline>;

/// The counters at the start of a step's measurement, pod by pod.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    /// Canary revision and step (index) this baseline belongs to.
    pub of: (String, usize),
    /// Canary pods' counters.
    pub canary: HashMap<String, Sample>,
    /// Stable pods' counters.
    pub stable: HashMap<String, Sample>,
}

/// The values a measurement adds to the status.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    canary_error_ratio: Option<f64>,
    stable_error_ratio: Option<f64>,
    canary_p99_seconds: Option<f64>,
    canary_requests: Option<i64>,
}

impl Measured {
    pub fn fill(&self, s: &mut RolloutStatus) {
        s.canary_error_ratio = self.canary_error_ratio.map(round);
        s.stable_error_ratio = self.stable_error_ratio.map(round);
        s.canary_p99_seconds = self.canary_p99_seconds.map(round);
        s.canary_requests = self.canary_requests;
    }
}

/// Six decimals: the status stays readable and does not change on float noise.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn url(p: &Pod, c: &CanarySpec) -> Option<String> {
    let ip = p.status.as_ref()?.pod_ip.clone()?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Some(format!(
        "http://{host}:{}{}",
        c.metrics_port, c.metrics_path
    ))
}

async fn scrape_all(
    ctx: &Context,
    pods: &[Pod],
    c: &CanarySpec,
) -> (HashMap<String, Sample>, Vec<String>) {
    let mut samples = HashMap::new();
    let mut failed = Vec::new();
    for p in pods.iter().filter(|p| ready(p)) {
        let name = p.name_any();
        let Some(u) = url(p, c) else {
            failed.push(format!("{name}: no pod IP"));
            continue;
        };
        match (ctx.scraper)(u).await.and_then(|t| analysis::parse(&t)) {
            Ok(s) => {
                samples.insert(name, s);
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    (samples, failed)
}

/// Measures the canary of `of` = (revision, step) `elapsed` seconds into its step. `None` while
/// there is nothing to judge yet (pods starting within the interval, a fresh baseline, no
/// requests), with the reason in words.
pub async fn measure(
    ctx: &Context,
    tp: &TradingPlatform,
    parent: &Parent,
    c: &CanarySpec,
    of: (&str, usize),
    elapsed: i64,
    want: i32,
) -> (Option<Analysis>, String, Measured) {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &tp.namespace().unwrap_or_default());
    let list = |sel: String| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(&sel))
                .await
                .map(|l| l.items)
        }
    };
    let (canary, stable) = match (
        list(canary_res::canary_pods(parent)).await,
        list(canary_res::stable_pods(parent)).await,
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            return (
                None,
                format!("cannot list the pods to analyse: {}", kube_error_words(&e)),
                Measured::default(),
            );
        }
    };
    let ready_n = canary.iter().filter(|p| ready(p)).count();
    let want_n = usize::try_from(want.max(1)).unwrap_or(1);
    if ready_n < want_n || ready_n < canary.len() {
        let words = format!("{ready_n}/{want_n} canary pods ready");
        if elapsed < i64::from(c.interval_seconds) {
            return (None, format!("waiting: {words}"), Measured::default());
        }
        let a = Analysis {
            error_ratio: 0.0,
            p99_seconds: 0.0,
            stable_error_ratio: 0.0,
            ready: false,
        };
        return (Some(a), words, Measured::default());
    }
    if let Some(p) = &c.prometheus {
        let ns = tp.namespace().unwrap_or_default();
        return match super::prometheus::analyse(ctx, p, &ns, parent, elapsed).await {
            Err(e) => (None, format!("cannot query Prometheus: {e}"), Measured::default()),
            Ok(None) => (
                None,
                "Prometheus has no requests to the canary pods yet in this step; waiting for traffic (or promote by hand)".into(),
                Measured::default(),
            ),
            Ok(Some((a, stable))) => {
                let m = Measured {
                    canary_error_ratio: Some(a.error_ratio),
                    stable_error_ratio: stable,
                    canary_p99_seconds: Some(a.p99_seconds),
                    canary_requests: None,
                };
                let note = format!(
                    "analysing (Prometheus): error ratio {:.4} (stable {:.4}), p99 {:.3} s",
                    a.error_ratio, a.stable_error_ratio, a.p99_seconds
                );
                (Some(a), note, m)
            }
        };
    }
    let (cur_canary, failed) = scrape_all(ctx, &canary, c).await;
    if !failed.is_empty() {
        return (
            None,
            format!("cannot read the canary's metrics: {}", failed.join("; ")),
            Measured::default(),
        );
    }
    let (cur_stable, _) = scrape_all(ctx, &stable, c).await;
    let Ok(mut all) = ctx.canary_baselines.lock() else {
        return (
            None,
            "internal: baseline lock poisoned".into(),
            Measured::default(),
        );
    };
    let of = (of.0.to_string(), of.1);
    let b = all.entry(key(tp)).or_default();
    if b.of != of {
        *b = Baseline {
            of,
            canary: cur_canary,
            stable: cur_stable,
        };
        return (
            None,
            "took the baseline of this step; measuring from now".into(),
            Measured::default(),
        );
    }
    let cs = analysis::over_step(&mut b.canary, &cur_canary);
    let ss = analysis::over_step(&mut b.stable, &cur_stable);
    drop(all);
    let m = Measured {
        canary_error_ratio: cs.error_ratio(),
        stable_error_ratio: ss.error_ratio(),
        canary_p99_seconds: cs.p99(),
        canary_requests: Some(cs.requests.round() as i64),
    };
    let (Some(er), p99) = (cs.error_ratio(), cs.p99()) else {
        return (None, "no requests reached the canary pods yet in this step; waiting for traffic (or promote by hand)".into(), m);
    };
    let a = Analysis {
        error_ratio: er,
        p99_seconds: p99.unwrap_or(0.0),
        stable_error_ratio: ss.error_ratio().unwrap_or(0.0),
        ready: true,
    };
    let note = format!(
        "analysing: error ratio {:.4} (stable {:.4}), p99 {:.3} s over {} requests",
        a.error_ratio, a.stable_error_ratio, a.p99_seconds, cs.requests
    );
    (Some(a), note, m)
}
