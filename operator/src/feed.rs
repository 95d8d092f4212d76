//! What the metadata watches of owned kinds tell the reconciler, so that a resync of an
//! unchanged TradingPlatform can be answered from memory instead of the API (issue 13).
//!
//! The watches (see `run::build_controller`) are metadata only and cache nothing; what they
//! report here is one `resourceVersion` per child and a count of Job events:
//! - a child whose desired object is what the operator last applied, and whose live
//!   `resourceVersion` (from its watch) is still the one that apply returned, is unchanged by
//!   anyone since: applying it again would be a no-op, so it is skipped
//!   ([`crate::apply::Applier::apply_unless_unchanged`]);
//! - the backup Jobs of a platform are listed again only after the Job watch saw an event
//!   (`crate::backup_jobs`).
//!
//! Staleness is handled conservatively: a watch error or the start of a relist forgets every
//! version of its kind (a relist refills them), a deleted child's version is forgotten, and any
//! event counts as a change. A change the watch has not delivered yet is caught by the
//! reconciliation that its event triggers when it arrives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};

/// The watches' reports; shared by the watch streams and the [`crate::controller::Context`].
#[derive(Debug, Default)]
pub struct WatchFeed {
    job_events: AtomicU64,
    /// `Kind/namespace/name` → the `resourceVersion` the kind's watch reported last.
    versions: Mutex<HashMap<String, String>>,
}

/// Per TradingPlatform (`ns/name`), per child ([`child_key`]): the hash of the object last
/// applied and the `resourceVersion` that apply returned.
pub type Applied = HashMap<String, HashMap<String, (u64, String)>>;

/// The key of one child in [`WatchFeed`] and in the context's applied versions.
pub fn child_key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

impl WatchFeed {
    /// Events the Job watch has seen (any Job, any event); a change means kept lists are stale.
    pub fn job_events(&self) -> u64 {
        self.job_events.load(Ordering::SeqCst)
    }

    /// The live `resourceVersion` of a child, as its watch last reported it.
    pub fn version(&self, key: &str) -> Option<String> {
        self.versions.lock().ok()?.get(key).cloned()
    }

    /// Records one item of `kind`'s watch stream.
    pub fn observe<K>(
        &self,
        kind: &str,
        item: &Result<Event<PartialObjectMeta<K>>, watcher::Error>,
    ) {
        if kind == "Job" {
            self.job_events.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(mut versions) = self.versions.lock() else {
            return;
        };
        let key_of = |o: &PartialObjectMeta<K>| {
            child_key(
                kind,
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default(),
            )
        };
        match item {
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => {
                match o.metadata.resource_version.clone() {
                    Some(rv) => versions.insert(key_of(o), rv),
                    None => versions.remove(&key_of(o)),
                };
            }
            Ok(Event::Delete(o)) => {
                versions.remove(&key_of(o));
            }
            Ok(Event::InitDone) => {}
            // A relist starts (what it does not list again is gone) or the watch failed (it may
            // have missed events): forget the kind until the relist reports it again.
            Ok(Event::Init) | Err(_) => {
                let prefix = format!("{kind}/");
                versions.retain(|k, _| !k.starts_with(&prefix));
            }
        }
    }
}
