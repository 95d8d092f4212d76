//! Publishes Kubernetes Events (`events.k8s.io/v1`) about TradingPlatforms, counting repeats as
//! a series the way kube-runtime's `Recorder` and client-go's recorder do: the first occurrence
//! creates an Event, a repeat within six minutes patches that Event's `series` (count, last
//! observed time), so a reason that recurs does not flood etcd with Event objects.
//!
//! Why not kube-runtime's `Recorder` (which this replaced, same requests): it keeps every Event it
//! published for six minutes as a whole `Event` object in a `HashMap`, about 1.6 KB a slot before
//! the strings. At 1,000 TradingPlatforms the 2,000 Events of a start made its table the
//! operator's largest allocation, 8.9 MiB at its peak while the table grew (heaptrack on
//! `scripts/bench-operator.sh`). Here a remembered Event is its key's hash, its name and three
//! numbers; the Event is rebuilt from the call's arguments when a repeat patches it.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};

/// How long a published Event is remembered for counting repeats (kube-runtime's and
/// client-go's figure).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// One Event to publish: what happened to the object `regarding`.
#[derive(Debug, Clone)]
pub struct Occurrence<'a> {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Machine-readable reason (`ChildApplyFailed`, ...).
    pub reason: &'a str,
    /// What the operator did or failed to do (`Apply`, ...).
    pub action: &'a str,
    /// The human message.
    pub note: &'a str,
}

/// What is remembered of a published Event.
#[derive(Debug, Clone)]
struct Published {
    name: String,
    first: Timestamp,
    last: Timestamp,
    count: i32,
}

/// Creates Events and counts their repeats; one per operator process.
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<u64, Published>>,
    /// The last name suffix given out: names are `<object>.<nanoseconds, hex>` as client-go's,
    /// from the real clock (not the injectable one of the reconciler) and strictly increasing, so
    /// two Events in the same nanosecond still get two names.
    last_suffix: Mutex<i128>,
}

impl EventRecorder {
    /// A recorder reporting as `controller` (the field manager) from `instance` (the pod).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            published: Mutex::new(HashMap::new()),
            last_suffix: Mutex::new(0),
        }
    }

    /// Events remembered for counting repeats (for tests and the scale benchmark).
    pub fn remembered(&self) -> usize {
        self.published.lock().map(|p| p.len()).unwrap_or_default()
    }

    /// Publishes `what` about `regarding`: a new Event, or a repeat counted in the series of the
    /// same Event (same type, reason, action, note and object) published within
    /// [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        what: &Occurrence<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let key = key(what, regarding);
        let previous = self.published.lock().ok().and_then(|mut p| {
            p.retain(|_, e| e.last + SERIES_WINDOW > now);
            p.get(&key).cloned()
        });
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let published = match previous {
            Some(prev) => {
                let count = prev.count + 1;
                let event = self.event(what, regarding, &prev.name, prev.first, Some((count, now)));
                match api
                    .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&event))
                    .await
                {
                    Ok(_) => Published {
                        last: now,
                        count,
                        ..prev
                    },
                    // Deleted meanwhile (an Event's TTL in the API server is one hour by
                    // default, but anyone may delete it): start a new one.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.create(&api, what, regarding, now).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&api, what, regarding, now).await?,
        };
        if let Ok(mut p) = self.published.lock() {
            p.insert(key, published);
        }
        Ok(())
    }

    async fn create(
        &self,
        api: &Api<Event>,
        what: &Occurrence<'_>,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let base = regarding.name.as_deref().unwrap_or(&self.controller);
        let name = format!("{base}.{:x}", self.suffix());
        let event = self.event(what, regarding, &name, now, None);
        api.create(&PostParams::default(), &event).await?;
        Ok(Published {
            name,
            first: now,
            last: now,
            count: 1,
        })
    }

    fn suffix(&self) -> i128 {
        let real = Timestamp::now().as_nanosecond();
        match self.last_suffix.lock() {
            Ok(mut last) => {
                *last = real.max(*last + 1);
                *last
            }
            Err(_) => real,
        }
    }

    fn event(
        &self,
        what: &Occurrence<'_>,
        regarding: &ObjectReference,
        name: &str,
        first: Timestamp,
        series: Option<(i32, Timestamp)>,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(what.action.to_string()),
            reason: Some(what.reason.to_string()),
            note: Some(what.note.to_string()),
            event_time: Some(MicroTime(first)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            series: series.map(|(count, last)| EventSeries {
                count,
                last_observed_time: MicroTime(last),
            }),
            type_: Some(
                match what.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        }
    }
}

/// The identity of a repeat: the same type, reason, action and note about the same object.
fn key(what: &Occurrence<'_>, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    matches!(what.type_, EventType::Warning).hash(&mut h);
    what.reason.hash(&mut h);
    what.action.hash(&mut h);
    what.note.hash(&mut h);
    regarding.api_version.hash(&mut h);
    regarding.kind.hash(&mut h);
    regarding.namespace.hash(&mut h);
    regarding.name.hash(&mut h);
    regarding.uid.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(note: &str) -> Occurrence<'_> {
        Occurrence {
            type_: EventType::Warning,
            reason: "ChildApplyFailed",
            action: "Apply",
            note,
        }
    }

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("tradeplane.io/v1alpha1".into()),
            kind: Some("TradingPlatform".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("{name}-uid")),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_share_a_key_and_anything_else_does_not() {
        let a = key(&what("the Service port is taken"), &regarding("a"));
        assert_eq!(a, key(&what("the Service port is taken"), &regarding("a")));
        assert_ne!(a, key(&what("another message"), &regarding("a")));
        assert_ne!(a, key(&what("the Service port is taken"), &regarding("b")));
        let normal = Occurrence {
            type_: EventType::Normal,
            ..what("the Service port is taken")
        };
        assert_ne!(a, key(&normal, &regarding("a")));
    }
}
