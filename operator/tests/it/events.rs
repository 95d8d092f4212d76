//! The operator's Event recorder against the fake API: a repeat is counted in the first Event's
//! series, a different message or an expired window starts a new Event, and an Event deleted
//! meanwhile is created again.

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use tradeplane_operator::events::{EventRecorder, Occurrence, SERIES_WINDOW};

use crate::common::env::EVENTS;
use crate::common::fake_api::{FakeApi, Logged};

fn regarding() -> ObjectReference {
    ObjectReference {
        api_version: Some("tradeplane.io/v1alpha1".into()),
        kind: Some("TradingPlatform".into()),
        namespace: Some("ns".into()),
        name: Some("x".into()),
        uid: Some("tp-uid".into()),
        ..Default::default()
    }
}

fn failed(note: &str) -> Occurrence<'_> {
    Occurrence {
        type_: EventType::Warning,
        reason: "ChildApplyFailed",
        action: "Apply",
        note,
    }
}

fn event_writes(log: Vec<Logged>) -> Vec<(Method, String, serde_json::Value)> {
    log.into_iter()
        .filter(|l| l.path.starts_with(EVENTS) && l.method != Method::GET)
        .map(|l| (l.method, l.path, l.body.unwrap_or_default()))
        .collect()
}

/// Publishes `failed(note)` about `regarding()` at `at`, which must succeed.
async fn publish(recorder: &EventRecorder, note: &str, at: Timestamp) {
    recorder
        .publish(&failed(note), &regarding(), at)
        .await
        .expect("published");
}

fn t0() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn a_repeat_is_counted_in_the_series_of_the_first_event() {
    let (api, client) = FakeApi::start();
    let recorder = EventRecorder::new(client, "tradeplane-operator", Some("pod-1".into()));
    let note = "the Service port is taken";
    publish(&recorder, note, t0()).await;
    let second = t0() + SignedDuration::from_secs(30);
    publish(&recorder, note, second).await;

    let w = event_writes(api.take_log());
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].0, Method::POST);
    let created = &w[0].2;
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("x."), "{name}");
    assert_eq!(created["reason"], "ChildApplyFailed");
    assert_eq!(created["type"], "Warning");
    assert_eq!(created["note"], note);
    assert_eq!(created["reportingController"], "tradeplane-operator");
    assert_eq!(created["reportingInstance"], "pod-1");
    assert_eq!(created["regarding"]["uid"], "tp-uid");
    assert!(created.get("series").is_none(), "{created}");

    assert_eq!(w[1].0, Method::PATCH);
    assert_eq!(w[1].1, format!("{EVENTS}/{name}"));
    let repeat = &w[1].2;
    assert_eq!(repeat["series"]["count"], 2);
    assert_eq!(repeat["eventTime"], created["eventTime"], "first time kept");
    assert_ne!(repeat["series"]["lastObservedTime"], created["eventTime"]);
    assert_eq!(repeat["note"], note);

    publish(&recorder, note, second + SignedDuration::from_secs(1)).await;
    let w = event_writes(api.take_log());
    assert_eq!(w[0].2["series"]["count"], 3, "{w:?}");
    assert_eq!(recorder.remembered(), 1);
}

#[tokio::test]
async fn another_message_or_an_expired_window_starts_a_new_event() {
    let (api, client) = FakeApi::start();
    let recorder = EventRecorder::new(client, "tradeplane-operator", None);
    publish(&recorder, "a", t0()).await;
    publish(&recorder, "b", t0()).await;
    let later = t0() + SERIES_WINDOW + SignedDuration::from_secs(1);
    publish(&recorder, "a", later).await;
    let w = event_writes(api.take_log());
    let methods: Vec<_> = w.iter().map(|(m, _, _)| m.clone()).collect();
    assert_eq!(methods, [Method::POST, Method::POST, Method::POST], "{w:?}");
    assert_eq!(w[0].2["reportingInstance"], "tradeplane-operator");
    assert_ne!(w[0].2["metadata"]["name"], w[2].2["metadata"]["name"]);
    // The expired ones were forgotten: only the last is remembered.
    assert_eq!(recorder.remembered(), 1);
}

#[tokio::test]
async fn an_event_deleted_meanwhile_is_created_again() {
    let (api, client) = FakeApi::start();
    let recorder = EventRecorder::new(client, "tradeplane-operator", None);
    publish(&recorder, "a", t0()).await;
    let w = event_writes(api.take_log());
    let name = w[0].2["metadata"]["name"].as_str().unwrap().to_string();
    api.remove(&format!("{EVENTS}/{name}"));
    let second = t0() + SignedDuration::from_secs(5);
    publish(&recorder, "a", second).await;
    let w = event_writes(api.take_log());
    let methods: Vec<_> = w.iter().map(|(m, _, _)| m.clone()).collect();
    assert_eq!(methods, [Method::PATCH, Method::POST], "{w:?}");
    assert!(w[1].2.get("series").is_none());
    assert!(
        api.get(&format!(
            "{EVENTS}/{}",
            w[1].2["metadata"]["name"].as_str().unwrap()
        ))
        .is_some()
    );
}
