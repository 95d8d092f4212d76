//! Applies each child on its own: one child the API server refuses no longer stops the others.
//!
//! Failures are collected (with the child, the field, the reason and what to do) for the status
//! and Events. What server-side apply cannot merge — a list-map key conflict with entries another
//! manager added (`Duplicate value: "http"` on a Service port) or a change to an immutable field
//! (a Deployment selector, a Job template) — is repaired by deleting the child and creating it
//! again from the desired state, at most once per [`RECREATE_COOLDOWN`] per child, never for the
//! backup claim (that would delete the backups). A request refused because the namespace is being
//! deleted stops every further write of the reconciliation.

use std::fmt::{self, Debug};

use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::controller::Context;
use crate::crd::TradingPlatform;
use crate::errors::{is_namespace_terminating, kube_error_words, needs_recreate};
use crate::feed::child_key;
use crate::resources::MANAGER;

/// A child is re-created at most once in this many seconds; a second failure is reported only.
pub const RECREATE_COOLDOWN_SECONDS: i64 = 600;
/// [`RECREATE_COOLDOWN_SECONDS`] as text for messages.
pub const RECREATE_COOLDOWN: &str = "10 minutes";

/// What an [`Applier`] can apply: a namespaced Kubernetes object with its typed metadata.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
{
}

/// One child the API server refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    /// Kind of the child.
    pub kind: &'static str,
    /// Name of the child.
    pub name: String,
    /// The refusal in words, with what to do.
    pub message: String,
}

impl fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.message)
    }
}

/// Applies children of one TradingPlatform, collecting failures.
pub struct Applier<'a> {
    ctx: &'a Context,
    tp: &'a TradingPlatform,
    ns: &'a str,
    /// Children that could not be applied.
    pub failures: Vec<ChildFailure>,
    /// Set once a request was refused because the namespace is being deleted.
    pub terminating: bool,
    /// Children applied so far (recorded on the reconcile span when the applier is dropped).
    pub applied: u32,
}

impl Drop for Applier<'_> {
    fn drop(&mut self) {
        tracing::Span::current().record("children.applied", self.applied);
    }
}

impl<'a> Applier<'a> {
    /// An applier for `tp`'s children in `ns`.
    pub fn new(ctx: &'a Context, tp: &'a TradingPlatform, ns: &'a str) -> Self {
        Self {
            ctx,
            tp,
            ns,
            failures: Vec::new(),
            terminating: false,
            applied: 0,
        }
    }

    /// Applies `obj` (if wanted) with server-side apply; `None` when absent, refused or skipped.
    pub async fn apply<K: Child>(&mut self, obj: &Option<K>) -> Option<K> {
        let obj = obj.as_ref()?;
        if self.terminating {
            return None;
        }
        let kind = <K as k8s_openapi::Resource>::KIND;
        let name = obj.meta().name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let err = match ssa(&api, &name, obj).await {
            Ok(o) => {
                self.applied += 1;
                return Some(o);
            }
            Err(e) => e,
        };
        if let kube::Error::Api(s) = &err {
            if is_namespace_terminating(s) {
                info!(%kind, %name, "namespace is being deleted; skipping every further write");
                self.terminating = true;
                return None;
            }
            if needs_recreate(s) {
                return Box::pin(self.recreate(&api, kind, &name, obj, &err)).await;
            }
        }
        self.fail(kind, &name, kube_error_words(&err)).await;
        None
    }

    /// As [`Applier::apply`], but a child that is unchanged since the operator last applied it
    /// (the same desired object, and its watch reports the `resourceVersion` that apply
    /// returned) is not sent again: `Some(obj)` (the desired object) is returned instead of the
    /// live one, so only call sites that read nothing from the answer use this. Without a watch
    /// feed (see `crate::feed`) it always applies.
    pub async fn apply_unless_unchanged<K: Child>(&mut self, obj: &Option<K>) -> Option<K> {
        let Some(feed) = self.ctx.feed.clone() else {
            return self.apply(obj).await;
        };
        let o = obj.as_ref()?;
        let kind = <K as k8s_openapi::Resource>::KIND;
        let child = child_key(kind, self.ns, o.meta().name.as_deref().unwrap_or_default());
        let hash = desired_hash(o);
        let parent = crate::controller::key(self.tp);
        let last = self
            .ctx
            .applied
            .lock()
            .ok()
            .and_then(|a| a.get(&parent)?.get(&child).cloned());
        if let Some((h, rv)) = last
            && h == hash
            && feed.version(&child).as_deref() == Some(rv.as_str())
        {
            return Some(o.clone());
        }
        let live = self.apply(obj).await;
        if let Ok(mut a) = self.ctx.applied.lock() {
            let mine = a.entry(parent).or_default();
            match live
                .as_ref()
                .and_then(|l| l.meta().resource_version.clone())
            {
                Some(rv) => mine.insert(child, (hash, rv)),
                None => mine.remove(&child),
            };
        }
        live
    }

    /// Records a failure of `kind`/`name` and publishes a Warning Event for it.
    pub async fn fail(&mut self, kind: &'static str, name: &str, message: String) {
        let f = ChildFailure {
            kind,
            name: name.to_string(),
            message,
        };
        warn!(%kind, %name, error = %f.message, "cannot apply child");
        self.ctx
            .event(
                self.tp,
                EventType::Warning,
                "ApplyFailed",
                "Apply",
                f.to_string(),
            )
            .await;
        self.failures.push(f);
    }

    async fn recreate<K>(
        &mut self,
        api: &Api<K>,
        kind: &'static str,
        name: &str,
        obj: &K,
        err: &kube::Error,
    ) -> Option<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let words = kube_error_words(err);
        if kind == <PersistentVolumeClaim as k8s_openapi::Resource>::KIND {
            self.fail(kind, name, format!("{words} The backup claim is never re-created automatically (it holds the backups): fix or delete it by hand.")).await;
            return None;
        }
        let key = format!("{}/{kind}/{name}", self.ns);
        let now = self.ctx.now();
        if let Some(last) = self.ctx.recreated_at(&key)
            && now.as_second() - last.as_second() < RECREATE_COOLDOWN_SECONDS
        {
            self.fail(kind, name, format!("{words} It was already re-created less than {RECREATE_COOLDOWN} ago, so it is not deleted again: fix or delete it by hand.")).await;
            return None;
        }
        self.ctx.remember_recreated(key, now);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                self.fail(
                    kind,
                    name,
                    format!(
                        "{words} Deleting it to re-create it failed too: {}",
                        kube_error_words(&e)
                    ),
                )
                .await;
                return None;
            }
        }
        self.ctx.metrics.recreated.with_label_values(&[kind]).inc();
        match ssa(api, name, obj).await {
            Ok(o) => {
                info!(%kind, %name, "re-created a child server-side apply could not merge");
                self.ctx
                    .event(
                        self.tp,
                        EventType::Normal,
                        "Recreated",
                        "Apply",
                        format!("deleted and re-created {kind} {name}: {words}"),
                    )
                    .await;
                Some(o)
            }
            Err(e) => {
                self.fail(
                    kind,
                    name,
                    format!(
                        "deleted to re-create it ({words}); creating it again failed: {} It is created by a later reconciliation once its deletion completes.",
                        kube_error_words(&e)
                    ),
                )
                .await;
                None
            }
        }
    }
}

/// Server-side apply under the operator's field manager, forced (the operator owns its fields).
pub async fn ssa<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// A hash of the object as it would be sent (its JSON), to tell a changed desired object.
fn desired_hash<K: Serialize>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // A serialization failure hashes as empty: then the next apply fails and says why.
    serde_json::to_vec(obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// When the last re-creation happened, for the cooldown.
pub type RecreatedAt = std::collections::HashMap<String, Timestamp>;
