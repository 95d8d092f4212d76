//! The analysis from a Prometheus server (`spec.rollout.canary.prometheus`) instead of the pods'
//! own metrics: three instant queries per measurement (canary error ratio, stable error ratio,
//! canary p99) over the step so far. No baseline is kept: `rate(…[window])` is the step.
//!
//! The queries go through [`Context::scraper`] like a pod scrape (a GET returning a body), so
//! the controller tests feed both the same way.

use crate::controller::Context;
use crate::crd::PrometheusAnalysis;
use crate::resources::Parent;
use crate::rollout::Analysis;

/// Error ratio (5xx / all) of `{{pods}}`, health probes and scrapes left out.
pub const DEFAULT_ERROR_RATIO_QUERY: &str = r#"sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{pods}}",status=~"5..",route!~"/health.*|/metrics"}[{{window}}])) / sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{pods}}",route!~"/health.*|/metrics"}[{{window}}]))"#;
/// p99 latency of `{{pods}}`.
pub const DEFAULT_P99_QUERY: &str = r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{namespace}}",pod=~"{{pods}}",route!~"/health.*|/metrics"}[{{window}}])))"#;
/// The shortest window a query gets (a rate needs two samples).
pub const MIN_WINDOW_SECONDS: i64 = 30;

/// Names of the canary's pods (`<name>-canary-<rs hash>-<suffix>`), as a PromQL regex.
pub fn canary_pods(parent: &Parent) -> String {
    format!("{}-canary-[a-z0-9]+-[a-z0-9]+", parent.name)
}

/// Names of the stable pods (`<name>-<rs hash>-<suffix>`): exactly two segments after the name,
/// so neither the canary's nor a Job's pods match (PromQL regexes are anchored).
pub fn stable_pods(parent: &Parent) -> String {
    format!("{}-[a-z0-9]+-[a-z0-9]+", parent.name)
}

/// The query with its placeholders filled in.
pub fn render(query: &str, namespace: &str, pods: &str, window_seconds: i64) -> String {
    query
        .replace("{{namespace}}", namespace)
        .replace("{{pods}}", pods)
        .replace(
            "{{window}}",
            &format!("{}s", window_seconds.max(MIN_WINDOW_SECONDS)),
        )
}

/// `GET <base>/api/v1/query?query=…`, the query URL-encoded.
pub fn query_url(base: &str, query: &str) -> Result<String, String> {
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    reqwest::Url::parse_with_params(&endpoint, &[("query", query)])
        .map(String::from)
        .map_err(|e| format!("{endpoint}: {e}"))
}

/// The number in an instant-query answer (a one-element vector or a scalar); `None` for no
/// data or NaN (e.g. 0/0 without requests).
pub fn parse_value(body: &str) -> Result<Option<f64>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v["status"] != "success" {
        let why = v["error"].as_str().unwrap_or("no error message");
        return Err(format!("Prometheus refused the query: {why}"));
    }
    let data = &v["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => return Ok(None),
            Some([one]) => &one["value"],
            Some(many) => {
                return Err(format!(
                    "the query returned {} series; it must return one number (aggregate with sum)",
                    many.len()
                ));
            }
        },
        Some("scalar") => &data["result"],
        other => return Err(format!("unexpected result type {other:?}")),
    };
    let text = value[1]
        .as_str()
        .ok_or_else(|| "a sample without a value".to_string())?;
    let n: f64 = text
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))?;
    Ok((!n.is_nan()).then_some(n))
}

async fn run(ctx: &Context, p: &PrometheusAnalysis, query: String) -> Result<Option<f64>, String> {
    let url = query_url(&p.url, &query)?;
    let body = (ctx.scraper)(url).await?;
    parse_value(&body)
}

/// The measurements over the step so far (`elapsed` seconds), or why there are none yet.
pub async fn analyse(
    ctx: &Context,
    p: &PrometheusAnalysis,
    namespace: &str,
    parent: &Parent,
    elapsed: i64,
) -> Result<Option<(Analysis, Option<f64>)>, String> {
    let er = p
        .error_ratio_query
        .as_deref()
        .unwrap_or(DEFAULT_ERROR_RATIO_QUERY);
    let p99 = p.p99_query.as_deref().unwrap_or(DEFAULT_P99_QUERY);
    let canary = canary_pods(parent);
    let canary_er = run(ctx, p, render(er, namespace, &canary, elapsed)).await?;
    let stable_er = run(ctx, p, render(er, namespace, &stable_pods(parent), elapsed)).await?;
    let p99 = run(ctx, p, render(p99, namespace, &canary, elapsed)).await?;
    let Some(error_ratio) = canary_er else {
        return Ok(None);
    };
    let a = Analysis {
        error_ratio,
        p99_seconds: p99.unwrap_or(0.0),
        stable_error_ratio: stable_er.unwrap_or(0.0),
        ready: true,
    };
    Ok(Some((a, stable_er)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_one_number() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.0125"]}]}}"#;
        assert_eq!(parse_value(vector), Ok(Some(0.0125)));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_value(empty), Ok(None));
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(parse_value(nan), Ok(None));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(parse_value(two).unwrap_err().contains("2 series"));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(parse_value(bad).unwrap_err().contains("parse error"));
    }

    #[test]
    fn queries_are_filled_in_and_encoded() {
        let parent = Parent {
            name: "x".into(),
            namespace: None,
            owner: None,
            version: None,
        };
        let q = render(DEFAULT_P99_QUERY, "ns", &canary_pods(&parent), 10);
        assert!(
            q.contains(r#"namespace="ns",pod=~"x-canary-[a-z0-9]+-[a-z0-9]+""#),
            "{q}"
        );
        assert!(q.contains("[30s]"), "at least the minimum window: {q}");
        let url = query_url("http://prom:9090/", "sum(up{a=\"b\"})").unwrap();
        assert_eq!(
            url,
            "http://prom:9090/api/v1/query?query=sum%28up%7Ba%3D%22b%22%7D%29"
        );
    }
}
