//! The reconciler: applies the children with server-side apply, deletes the ones no longer
//! wanted, derives the status from the children, records Events, runs the finalizer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, warn};

use crate::apply::{Applier, ChildFailure, RecreatedAt};
use crate::crd::{
    BACKUP_NOW_ANNOTATION, CONDITION_BACKUP_HEALTHY, CONDITION_DEGRADED, CONDITION_PROGRESSING,
    CONDITION_READY, ClaimRetentionPolicy, TradingPlatform, TradingPlatformStatus,
};
use crate::events::{EventRecorder, Occurrence};
use crate::metrics::Metrics;
use crate::resources::{self, BuildError, Desired, MANAGER, Parent};
use crate::schedule::CronSchedule;

/// Finalizer the operator puts on every TradingPlatform it reconciles.
///
/// Owner references delete owned children, but the backup claim is deliberately not owned (so
/// backups survive by default). The finalizer applies `backup.storage.retentionPolicy` at
/// deletion time (delete the claim, or keep it and say so in an Event).
pub const FINALIZER: &str = "tradeplane.io/backup-claim";

/// Periodic re-check, so `BackupHealthy` ages even when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {}", crate::errors::kube_error_words(.0))]
    Kube(#[from] kube::Error),
    /// Some children could not be applied (the others were); already reported in the status.
    #[error("{} could not be applied: {}", children_count(.0), join_failures(.0))]
    Children(Vec<ChildFailure>),
    /// The spec cannot be turned into objects.
    #[error("{0}")]
    Build(#[from] BuildError),
    /// Adding, running or removing the finalizer failed.
    #[error("finalizer {FINALIZER}: {}", finalizer_words(.0))]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The resource has no namespace (it is namespaced; should not happen).
    #[error("the TradingPlatform has no namespace")]
    NoNamespace,
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Children(_) => "child_apply",
            Error::Build(_) => "invalid_spec",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// Children that could not be applied make the TradingPlatform `Degraded`, naming each one and
/// why (the others were applied all the same).
fn report_child_failures(
    status: &mut TradingPlatformStatus,
    failures: &[ChildFailure],
    generation: Option<i64>,
    now: Timestamp,
) {
    if failures.is_empty() {
        return;
    }
    let message = truncate(
        &format!(
            "{} could not be applied; the others were: {}",
            children_count(failures),
            join_failures(failures)
        ),
        2048,
    );
    set_condition(
        &mut status.conditions,
        CONDITION_DEGRADED,
        "True",
        REASON_CHILD_APPLY_FAILED,
        &message,
        generation,
        now,
    );
    status.phase = Some("Degraded".to_string());
}

fn children_count(f: &[ChildFailure]) -> String {
    match f.len() {
        1 => "1 child".to_string(),
        n => format!("{n} children"),
    }
}

fn join_failures(f: &[ChildFailure]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn finalizer_words(e: &kube::runtime::finalizer::Error<Error>) -> String {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e.to_string(),
        F::AddFinalizer(k) => format!("cannot add it: {}", crate::errors::kube_error_words(k)),
        F::RemoveFinalizer(k) => {
            format!("cannot remove it: {}", crate::errors::kube_error_words(k))
        }
        other => other.to_string(),
    }
}

/// Shared state of every reconciliation.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: EventRecorder,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Consecutive failures per resource, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Clock, replaceable in tests.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// When each child was last deleted and re-created (cooldown, see `apply`).
    pub recreated: Mutex<RecreatedAt>,
    /// When each resource's next requeue is due and why, to label the next reconciliation.
    pub scheduled: Mutex<HashMap<String, (Timestamp, &'static str)>>,
    /// Per TradingPlatform (`ns/name`): the newest succeeded backup Job whose pod was read, and
    /// the result found in its termination message (see `crate::backup_metrics`).
    pub backup_results: Mutex<BackupResults>,
    /// Fetches a pod's `/metrics` for the canary analysis (replaced in tests).
    pub scraper: crate::analysis::ScrapeFn,
    /// Per TradingPlatform: the counters at the start of the canary step (`crate::canary`).
    pub canary_baselines: Mutex<crate::canary::Baselines>,
    /// Per TradingPlatform: when its pods' archive metrics were last read (`crate::archive_status`).
    pub archive_scrapes: Mutex<crate::archive_status::LastScrapes>,
    /// Per TradingPlatform and clean-up (`prune`): the state it last completed
    /// for (see [`Context::cleanup_due`]).
    pub cleaned: Mutex<HashMap<(String, &'static str), u64>>,
    /// What the watches of owned kinds report, set by [`Context::with_watch_feed`]; `None` when
    /// no watch feeds this context, and then every reconciliation applies every child and lists
    /// its backup Jobs.
    pub feed: Option<Arc<crate::feed::WatchFeed>>,
    /// The backup Jobs last listed per TradingPlatform (see `crate::backup_jobs`).
    pub job_lists: Mutex<crate::backup_jobs::JobLists>,
    /// Per TradingPlatform (`ns/name`), per child ([`crate::feed::child_key`]): the hash of the
    /// object last applied and the `resourceVersion` the apply returned.
    pub applied: Mutex<crate::feed::Applied>,
}

/// See [`Context::backup_results`].
pub type BackupResults = HashMap<String, (String, Option<crate::backup_metrics::BackupResult>)>;

impl Context {
    /// A context with the real clock.
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), MANAGER, instance),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            clock: Arc::new(Timestamp::now),
            recreated: Mutex::new(RecreatedAt::new()),
            scheduled: Mutex::new(HashMap::new()),
            backup_results: Mutex::new(HashMap::new()),
            scraper: crate::analysis::http_scraper(),
            canary_baselines: Mutex::new(HashMap::new()),
            archive_scrapes: Mutex::new(HashMap::new()),
            cleaned: Mutex::new(HashMap::new()),
            feed: None,
            job_lists: Mutex::new(HashMap::new()),
            applied: Mutex::new(HashMap::new()),
        }
    }

    /// The same context, fed by the watches: pass [`Context::feed`] to `run::build_controller`.
    /// Unchanged children are then not applied again and backup Jobs are listed only after the
    /// Job watch saw a change (see `crate::feed`).
    pub fn with_watch_feed(mut self) -> Self {
        self.feed = Some(Default::default());
        self
    }

    /// Whether the clean-up `what` (listing children to delete the unwanted ones) has to run for
    /// `tp` in the state `stamp`. Unwanted children appear only when what the operator wants
    /// changes: a new generation of the spec, new labels or annotations (see [`state_stamp`]), a
    /// new image for the migration Jobs. So a clean-up that completed for a state is not run
    /// again for it by this process: the 5-minute resync of an unchanged TradingPlatform lists
    /// nothing for it (issue 13). A new operator process (restart, new leader) runs each once.
    pub fn cleanup_due(&self, tp: &TradingPlatform, what: &'static str, stamp: u64) -> bool {
        self.cleaned
            .lock()
            .map(|c| c.get(&(key(tp), what)) != Some(&stamp))
            .unwrap_or(true)
    }

    /// Records that the clean-up `what` completed for `tp` in the state `stamp`.
    pub fn cleanup_done(&self, tp: &TradingPlatform, what: &'static str, stamp: u64) {
        if let Ok(mut c) = self.cleaned.lock() {
            c.insert((key(tp), what), stamp);
        }
    }

    /// Forgets the clean-ups of a deleted TradingPlatform.
    fn forget_cleanups(&self, tp: &TradingPlatform) {
        let k = key(tp);
        if let Ok(mut c) = self.cleaned.lock() {
            c.retain(|(name, _), _| *name != k);
        }
    }

    /// The current time (the test clock in tests).
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// When the child `key` was last re-created.
    pub fn recreated_at(&self, key: &str) -> Option<Timestamp> {
        self.recreated.lock().ok()?.get(key).copied()
    }

    /// Records a re-creation of the child `key`.
    pub fn remember_recreated(&self, key: String, at: Timestamp) {
        if let Ok(mut m) = self.recreated.lock() {
            m.insert(key, at);
        }
    }

    /// Publishes an Event about `tp` (failures to publish are logged, never fatal).
    pub async fn event(
        &self,
        tp: &TradingPlatform,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let what = Occurrence {
            type_,
            reason,
            action,
            note: &note,
        };
        let regarding = tp.object_ref(&());
        if let Err(e) = self.recorder.publish(&what, &regarding, self.now()).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// The `namespace/name` key of a TradingPlatform in the context's per-platform maps.
pub fn key(tp: &TradingPlatform) -> String {
    format!("{}/{}", tp.namespace().unwrap_or_default(), tp.name_any())
}

/// Reconciles one TradingPlatform (the `Controller`'s reconcile function).
pub async fn reconcile(tp: Arc<TradingPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        tp = %tp.name_any(),
        namespace = %tp.namespace().unwrap_or_default(),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        k8s.namespace.name = %tp.namespace().unwrap_or_default(),
        tradingplatform.name = %tp.name_any(),
        children.applied = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    async move {
        let timer = std::time::Instant::now();
        let trigger = classify_trigger(&tp, &ctx);
        ctx.metrics.triggers.with_label_values(&[trigger]).inc();
        let result = Box::pin(reconcile_inner(tp.clone(), ctx.clone())).await;
        if let Ok(action) = &result {
            schedule(&tp, &ctx, action);
        }
        let label = if result.is_ok() { "ok" } else { "error" };
        let current = tracing::Span::current();
        current.record("outcome", label);
        if result.is_err() {
            current.record("otel.status_code", "ERROR");
        }
        ctx.metrics
            .reconciliations
            .with_label_values(&[label])
            .inc();
        ctx.metrics
            .duration
            .with_label_values(&[label])
            .observe(timer.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                if let Ok(mut f) = ctx.failures.lock() {
                    f.remove(&key(&tp));
                }
            }
            Err(e) => {
                warn!(error = %e, "reconcile failed");
                ctx.metrics
                    .errors
                    .with_label_values(&[e.metric_label()])
                    .inc();
                // Child failures are already in the status and in one Event per child.
                if !matches!(e, Error::Children(_)) {
                    report_degraded(&tp, &ctx, e).await;
                }
            }
        }
        result
    }
    .instrument(span)
    .await
}

/// Backoff for failed reconciliations (the `Controller`'s error policy): 5s doubling to 5 min.
pub fn error_policy(tp: Arc<TradingPlatform>, _error: &Error, ctx: Arc<Context>) -> Action {
    let n = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key(&tp)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(n);
    if let (Ok(mut m), Ok(d)) = (ctx.scheduled.lock(), jiff::SignedDuration::try_from(delay)) {
        m.insert(
            key(&tp),
            (ctx.now().saturating_add(d).unwrap_or(ctx.now()), "requeue"),
        );
    }
    Action::requeue(delay)
}

/// What most likely triggered this reconciliation, for `tradeplane_operator_reconcile_triggers_total`:
/// a spec the status has not observed yet, a due requeue or resync, else a watch event (a child
/// or the resource's metadata changed).
fn classify_trigger(tp: &TradingPlatform, ctx: &Context) -> &'static str {
    let observed = tp.status.as_ref().and_then(|s| s.observed_generation);
    if observed != tp.meta().generation {
        return "spec_change";
    }
    let due = ctx
        .scheduled
        .lock()
        .ok()
        .and_then(|m| m.get(&key(tp)).copied());
    match due {
        Some((at, why)) if ctx.now().as_second() + 1 >= at.as_second() => why,
        _ => "child_change",
    }
}

fn schedule(tp: &TradingPlatform, ctx: &Context, action: &Action) {
    let Ok(mut m) = ctx.scheduled.lock() else {
        return;
    };
    if *action == Action::await_change() {
        m.remove(&key(tp));
        return;
    }
    let (delay, why) = if *action == Action::requeue(RESYNC) {
        (RESYNC, "resync")
    } else {
        (BACKUP_NOW_RETRY, "requeue")
    };
    if let Ok(d) = jiff::SignedDuration::try_from(delay) {
        m.insert(
            key(tp),
            (ctx.now().saturating_add(d).unwrap_or(ctx.now()), why),
        );
    }
}

/// Delay after the `n`th consecutive failure.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

async fn reconcile_inner(tp: Arc<TradingPlatform>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = tp.namespace().ok_or(Error::NoNamespace)?;
    if tp.spec.paused && tp.meta().deletion_timestamp.is_none() {
        return reconcile_paused(&tp, &ctx, &ns).await;
    }
    let api: Api<TradingPlatform> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, tp, |event| async {
        match event {
            FinalizerEvent::Apply(tp) => Box::pin(apply(&tp, &ctx, &ns)).await,
            FinalizerEvent::Cleanup(tp) => cleanup(&tp, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(inner)
        | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// The clean-up of unwanted children (see [`Context::cleanup_due`]).
const PRUNE: &str = "prune";

/// A fingerprint of what the operator wants for `tp`: its identity, spec generation, labels and
/// annotations (what [`resources::desired`] reads besides the spec).
pub fn state_stamp(tp: &TradingPlatform) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tp.uid().hash(&mut h);
    tp.metadata.generation.hash(&mut h);
    tp.metadata.labels.hash(&mut h);
    // kubectl's copy of the applied object changes only with the spec (the generation), and the
    // cache drops it (`run::prune`): left out so that both copies of an object stamp alike.
    for (k, v) in tp.metadata.annotations.iter().flatten() {
        if k != "kubectl.kubernetes.io/last-applied-configuration" {
            (k, v).hash(&mut h);
        }
    }
    h.finish()
}

/// Deletes every child kind's unwanted objects; one result per kind.
async fn prune_all(
    tp: &TradingPlatform,
    ctx: &Context,
    ns: &str,
    parent: &Parent,
    desired: &Desired,
) -> Vec<(&'static str, Result<(), Error>)> {
    vec![
        (
            <HorizontalPodAutoscaler as k8s_openapi::Resource>::KIND,
            prune::<HorizontalPodAutoscaler>(tp, ctx, ns, parent, name_of(&desired.hpa), true)
                .await,
        ),
        (
            <PodDisruptionBudget as k8s_openapi::Resource>::KIND,
            prune::<PodDisruptionBudget>(tp, ctx, ns, parent, name_of(&desired.pdb), true).await,
        ),
        (
            <CronJob as k8s_openapi::Resource>::KIND,
            prune::<CronJob>(tp, ctx, ns, parent, name_of(&desired.backup_cronjob), true).await,
        ),
        (
            <Ingress as k8s_openapi::Resource>::KIND,
            prune::<Ingress>(tp, ctx, ns, parent, name_of(&desired.ingress), true).await,
        ),
        (
            <NetworkPolicy as k8s_openapi::Resource>::KIND,
            prune::<NetworkPolicy>(tp, ctx, ns, parent, name_of(&desired.network_policy), true)
                .await,
        ),
        (
            <PersistentVolumeClaim as k8s_openapi::Resource>::KIND,
            if tp.spec.backup.storage.retention_policy == ClaimRetentionPolicy::Delete {
                // Unowned by design; only pruned when the user asked for claims to be deleted.
                prune::<PersistentVolumeClaim>(
                    tp,
                    ctx,
                    ns,
                    parent,
                    name_of(&desired.backup_claim),
                    false,
                )
                .await
            } else {
                Ok(())
            },
        ),
    ]
}

/// Lists this instance's objects of kind `K` (by the operator's labels) and deletes those not
/// named in `keep`. Returns how many objects of the kind remain wanted.
async fn prune<K>(
    tp: &TradingPlatform,
    ctx: &Context,
    ns: &str,
    parent: &Parent,
    keep: Option<String>,
    owned: bool,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&parent.instance_selector()))
        .await?;
    let uid = tp.uid();
    for obj in list.items {
        let name = obj.name_any();
        if Some(&name) == keep.as_ref() {
            continue;
        }
        // Only delete what this resource owns (labels can be copied by hand).
        if owned
            && !obj
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        let kind = K::kind(&());
        info!(%kind, %name, "deleted object no longer wanted");
        ctx.event(
            tp,
            EventType::Normal,
            "Deleted",
            "Prune",
            format!("deleted {kind} {name}: no longer wanted by the spec"),
        )
        .await;
    }
    Ok(())
}

fn name_of<K: Resource>(o: &Option<K>) -> Option<String> {
    o.as_ref().and_then(|o| o.meta().name.clone())
}

/// Re-check delay while a backup-now request waits for a running backup, or while a backup-now
/// Job runs (the CronJob stays suspended until it ends).
pub const BACKUP_NOW_RETRY: Duration = Duration::from_secs(30);

/// Field manager that holds `spec.replicas` at its live value while the operator stops setting it
/// (the handover to the HPA in the Kubernetes server-side apply docs).
pub const HANDOVER_MANAGER: &str = "tradeplane-operator-handover";

async fn apply(tp: &TradingPlatform, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let mut desired = resources::desired(tp)?;
    let parent = Parent::of(tp)?;
    let mut a = Applier::new(ctx, tp, ns);

    // `spec.restore` first: nothing but the restore Job (and what it needs) exists until it
    // succeeded (see `crate::restore` for why it precedes the migration gate).
    let mut restored = None;
    if crate::restore::pending(tp) {
        match Box::pin(apply_restoring(tp, ctx, ns, &desired, &mut a)).await? {
            Ok(status) => restored = status,
            Err(action) => return action,
        }
    }

    let jobs = if tp.spec.backup.enabled {
        match crate::backup_jobs::list(ctx, ns, &parent).await {
            Ok(j) => j,
            Err(e) => {
                a.fail(
                    <Job as k8s_openapi::Resource>::KIND,
                    &format!("{} (list)", parent.backup_name()),
                    crate::errors::kube_error_words(&e),
                )
                .await;
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    // A running backup-now Job suspends the CronJob, so a scheduled run never overlaps it.
    let manual_running = jobs.iter().any(|j| is_manual(j) && is_active(j));
    if manual_running && let Some(cj) = desired.backup_cronjob.as_mut() {
        cj.spec.suspend = Some(true);
    }

    a.apply_unless_unchanged(&desired.service_account).await;
    // With `spec.rollout.strategy: canary`, a new pod template runs as a canary first; the
    // shared ConfigMap keeps the stable pods' settings meanwhile.
    let plan = crate::canary::plan(&mut a, ctx, tp, ns, desired.deployment.clone()).await?;
    if !plan.holds_config() {
        a.apply_unless_unchanged(&desired.config_map).await;
    }
    a.apply_unless_unchanged(&desired.service).await;
    // A new image reaches the Deployment only after its migration Job succeeded.
    let (gate, migrated_image) = crate::migrate::gate(&mut a, ctx, tp, ns).await?;
    match gate.held() {
        None => {}
        Some(Some(live)) => desired.deployment = Some(resources::deployment_with_image(tp, live)?),
        Some(None) => desired.deployment = None,
    }
    // Backups keep the image that passed its migration (the live one, else the recorded one).
    if let Some(live) = gate.held() {
        let safe = live.map(str::to_owned).or_else(|| migrated_image.clone());
        if let (Some(image), Some(cj)) = (safe, desired.backup_cronjob.as_mut()) {
            resources::backup::set_image(cj, &image);
        }
    }
    let open = gate == crate::migrate::Gate::Open;
    let canary = Box::pin(crate::canary::reconcile(
        &mut a,
        ctx,
        tp,
        ns,
        plan,
        open,
        &mut desired,
    ))
    .await?;
    // The HPA before the Deployment: the Deployment stops carrying replicas only once it exists.
    let hpa = a.apply_unless_unchanged(&desired.hpa).await;
    let deployment = Box::pin(apply_deployment(
        &mut a,
        ctx,
        tp,
        ns,
        &desired,
        hpa.is_some(),
    ))
    .await;
    a.apply_unless_unchanged(&desired.pdb).await;
    a.apply_unless_unchanged(&desired.backup_claim).await;
    let mut cronjob = a.apply(&desired.backup_cronjob).await;
    a.apply_unless_unchanged(&desired.ingress).await;
    a.apply_unless_unchanged(&desired.network_policy).await;
    if a.terminating {
        return Ok(Action::await_change());
    }
    if cronjob.is_none() && desired.backup_cronjob.is_some() {
        cronjob = Api::<CronJob>::namespaced(ctx.client.clone(), ns)
            .get_opt(&parent.backup_name())
            .await
            .ok()
            .flatten();
    }

    let stamp = state_stamp(tp);
    let prunes = if ctx.cleanup_due(tp, PRUNE, stamp) {
        prune_all(tp, ctx, ns, &parent, &desired).await
    } else {
        Vec::new()
    };
    let pruned = prunes.iter().all(|(_, r)| r.is_ok());
    for (kind, r) in prunes {
        if let Err(e) = r {
            a.fail(kind, "(unwanted objects)", format!("cannot delete: {e}"))
                .await;
        }
    }
    if pruned {
        ctx.cleanup_done(tp, PRUNE, stamp);
    }

    let mut status = derive_status(
        tp,
        &desired,
        deployment.as_ref(),
        cronjob.as_ref(),
        &jobs,
        ctx.now(),
    );
    let mut action = Action::requeue(RESYNC);
    status.migrated_image = migrated_image;
    if restored.is_some() {
        status.restore = restored;
    }
    if let Some((type_, reason, message)) = gate.condition(&tp.spec.image) {
        set_condition(
            &mut status.conditions,
            type_,
            "True",
            reason,
            &message,
            tp.meta().generation,
            ctx.now(),
        );
        if type_ == CONDITION_DEGRADED {
            status.phase = Some("Degraded".to_string());
        } else if status.phase.as_deref() != Some("Degraded") {
            status.phase = Some("Progressing".to_string());
        }
    }
    if matches!(gate, crate::migrate::Gate::Migrating { .. }) {
        // The Job is watched too; this re-check covers a missed event.
        action = Action::requeue(BACKUP_NOW_RETRY);
    }
    if let Some(d) = canary.requeue {
        action = Action::requeue(d);
    }
    canary.write(&mut status, tp.meta().generation, ctx.now());
    let backup = BackupNow {
        live_cronjob: cronjob.as_ref(),
        desired_cronjob: desired.backup_cronjob.as_ref(),
        jobs: &jobs,
    };
    if Box::pin(handle_backup_now(tp, ctx, backup, &mut status, &mut a)).await || manual_running {
        action = Action::requeue(BACKUP_NOW_RETRY);
    }
    if a.terminating {
        return Ok(Action::await_change());
    }
    let failures = std::mem::take(&mut a.failures);
    report_child_failures(&mut status, &failures, tp.meta().generation, ctx.now());
    crate::archive_status::update(ctx, tp, ns, &mut status).await;
    record_managed(ctx, tp, &desired);
    crate::backup_metrics::record(ctx, tp, ns, &status, cronjob.as_ref(), &jobs).await;
    write_status(tp, ctx, ns, status).await?;
    if failures.is_empty() {
        Ok(action)
    } else {
        Err(Error::Children(failures))
    }
}

/// While `spec.restore` has not completed: applies what the restore Job needs (service account,
/// ConfigMap, Service), runs [`crate::restore::step`] and, unless the restore is done, writes
/// the status and returns the reconciliation's result (`Err`); `Ok` carries the
/// `status.restore` to record on the normal path.
#[allow(clippy::type_complexity)]
async fn apply_restoring(
    tp: &TradingPlatform,
    ctx: &Context,
    ns: &str,
    desired: &Desired,
    a: &mut Applier<'_>,
) -> Result<Result<Option<crate::crd::RestoreStatus>, Result<Action, Error>>, Error> {
    use crate::restore::{REASON_RESTORE_FAILED, REASON_RESTORING, Step};
    a.apply(&desired.service_account).await;
    a.apply(&desired.config_map).await;
    a.apply(&desired.service).await;
    let step = crate::restore::step(a, ctx, tp, ns, &desired.restore_job).await?;
    if a.terminating {
        return Ok(Err(Ok(Action::await_change())));
    }
    let (restore, failed) = match step {
        Step::Done(status) => return Ok(Ok(status)),
        Step::Running(r) => (r, false),
        Step::Failed(r) => (r, true),
    };
    let job = restore.job_name.clone().unwrap_or_default();
    let generation = tp.meta().generation;
    let now = ctx.now();
    let mut status = derive_status(tp, desired, None, None, &[], now);
    let mut set = |t: &str, s: &str, r: &str, m: &str| {
        set_condition(&mut status.conditions, t, s, r, m, generation, now);
    };
    let why = restore.message.clone().unwrap_or_default();
    set(
        CONDITION_READY,
        "Unknown",
        REASON_RESTORING,
        "the platform starts once the restore of spec.restore succeeded",
    );
    if failed {
        let message = truncate(&crate::restore::failed_message(&job, &why), 2048);
        set(
            CONDITION_PROGRESSING,
            "False",
            REASON_RESTORE_FAILED,
            &format!("restore Job {job} failed; nothing else is started"),
        );
        set(CONDITION_DEGRADED, "True", REASON_RESTORE_FAILED, &message);
    } else {
        set(CONDITION_PROGRESSING, "True", REASON_RESTORING, &why);
        set(
            CONDITION_DEGRADED,
            "False",
            "AsExpected",
            "the last reconciliation succeeded",
        );
    }
    status.phase = Some(if failed { "Degraded" } else { "Progressing" }.to_string());
    status.restore = Some(restore);
    let failures = std::mem::take(&mut a.failures);
    report_child_failures(&mut status, &failures, generation, now);
    write_status(tp, ctx, ns, status).await?;
    if !failures.is_empty() {
        return Ok(Err(Err(Error::Children(failures))));
    }
    // The Job is watched too; the re-check while it runs covers a missed event.
    let action = if failed {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(BACKUP_NOW_RETRY)
    };
    Ok(Err(Ok(action)))
}

/// Condition reason: the spec passed admission but cannot be turned into objects (a check the
/// API server cannot make, e.g. a cron schedule that never fires); the message names the field.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// Condition reason: some children were refused by the API server (the message names each).
pub const REASON_CHILD_APPLY_FAILED: &str = "ChildApplyFailed";

/// True while `obj`'s field manager `manager` owns `spec.replicas` through an apply.
pub fn owns_replicas(d: &Deployment, manager: &str) -> bool {
    d.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(manager)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|s| s.get("f:replicas"))
                .is_some()
    })
}

/// Applies the Deployment; with autoscaling, hands `spec.replicas` to the HPA without a drop:
/// until the HPA exists the Deployment keeps the live count; then a second field manager applies
/// the live count once and the operator stops sending the field, so the value stays until the
/// HPA changes it (https://kubernetes.io/docs/reference/using-api/server-side-apply/#transferring-ownership).
async fn apply_deployment(
    a: &mut Applier<'_>,
    ctx: &Context,
    tp: &TradingPlatform,
    ns: &str,
    desired: &Desired,
    hpa_applied: bool,
) -> Option<Deployment> {
    let mut dep = desired.deployment.clone()?;
    let name = dep.metadata.name.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let kind = <Deployment as k8s_openapi::Resource>::KIND;
    if tp.spec.autoscaling.enabled && !a.terminating {
        let live = match api.get_opt(&name).await {
            Ok(l) => l,
            Err(e) => {
                a.fail(
                    kind,
                    &name,
                    format!(
                        "cannot read it to hand spec.replicas to the HPA: {}",
                        crate::errors::kube_error_words(&e)
                    ),
                )
                .await;
                return None;
            }
        };
        match live {
            Some(live) if owns_replicas(&live, MANAGER) => {
                let current = live.spec.replicas.unwrap_or(1);
                if !hpa_applied || handover(&api, &name, current).await.is_err() {
                    dep.spec.replicas = Some(current);
                }
            }
            Some(_) => {} // the HPA (or another manager) owns it: leave it alone
            // A new Deployment starts at minReplicas (not the API default of 1); the field is
            // handed over on the next reconciliation like any other.
            None => dep.spec.replicas = Some(tp.spec.autoscaling.min_replicas),
        }
    }
    let wanted = Some(dep);
    match a.apply(&wanted).await {
        Some(d) => Some(d),
        None if a.terminating => None,
        None => api.get_opt(&name).await.ok().flatten(),
    }
}

/// Applies only `spec.replicas = current` under [`HANDOVER_MANAGER`] (not forced: a conflict
/// means the HPA controller already owns the field, which is what we want).
async fn handover(api: &Api<Deployment>, name: &str, current: i32) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": current}
    });
    match api
        .patch(
            name,
            &PatchParams::apply(HANDOVER_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            warn!(error = %crate::errors::kube_error_words(&e), "cannot hand spec.replicas to the HPA; keeping it this time");
            Err(e)
        }
    }
}

fn is_manual(j: &Job) -> bool {
    j.annotations().contains_key(BACKUP_NOW_ANNOTATION)
}

fn is_active(j: &Job) -> bool {
    let finished = j
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    !finished
        && (j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0
            || j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_none())
}

/// Starts the Job for a new `tradeplane.io/backup-now` value, unless a backup runs already.
/// Returns true when the request is deferred (re-checked after [`BACKUP_NOW_RETRY`]).
async fn handle_backup_now(
    tp: &TradingPlatform,
    ctx: &Context,
    backup: BackupNow<'_>,
    status: &mut TradingPlatformStatus,
    a: &mut Applier<'_>,
) -> bool {
    let BackupNow {
        live_cronjob: cronjob,
        desired_cronjob,
        jobs,
    } = backup;
    let Some(request) = tp.annotations().get(BACKUP_NOW_ANNOTATION).cloned() else {
        return false;
    };
    let handled = tp
        .status
        .as_ref()
        .and_then(|s| s.last_backup_now_request.clone());
    if handled.as_ref() == Some(&request) {
        status.last_backup_now_request = Some(request);
        return false;
    }
    if !tp.spec.backup.enabled {
        ctx.event(
            tp,
            EventType::Warning,
            "BackupNowIgnored",
            "Backup",
            format!("{BACKUP_NOW_ANNOTATION}={request} ignored: spec.backup.enabled is false"),
        )
        .await;
        status.last_backup_now_request = Some(request);
        return false;
    }
    let running = jobs
        .iter()
        .find(|j| is_active(j))
        .map(ResourceExt::name_any)
        .or_else(|| {
            cronjob
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.active.as_ref())
                .and_then(|a| a.first())
                .and_then(|r| r.name.clone())
        });
    let Some(cronjob) = cronjob.filter(|_| running.is_none()) else {
        let why = match running {
            Some(j) => format!("backup Job {j} is still running"),
            None => "the backup CronJob does not exist yet".to_string(),
        };
        ctx.event(
            tp,
            EventType::Normal,
            "BackupNowDeferred",
            "Backup",
            format!("{BACKUP_NOW_ANNOTATION}={request} waits: {why}; backups never overlap"),
        )
        .await;
        return true;
    };
    // Suspend the CronJob first, so no scheduled run starts while the manual one runs; the
    // CronJob is resumed by the first reconciliation after the Job ends.
    if let Some(mut cj) = desired_cronjob.cloned() {
        cj.spec.suspend = Some(true);
        if a.apply(&Some(cj)).await.is_none() {
            return true;
        }
    }
    let job = resources::backup::backup_now_job(cronjob, &request);
    let wanted = Some(job);
    if let Some(job) = a.apply(&wanted).await {
        ctx.event(
            tp,
            EventType::Normal,
            "BackupTriggered",
            "Backup",
            format!(
                "started backup Job {} for {BACKUP_NOW_ANNOTATION}={request}",
                job.name_any()
            ),
        )
        .await;
        status.last_backup_now_request = Some(request);
    }
    true
}

/// The backup objects `handle_backup_now` needs.
#[derive(Clone, Copy)]
struct BackupNow<'a> {
    live_cronjob: Option<&'a CronJob>,
    desired_cronjob: Option<&'a CronJob>,
    jobs: &'a [Job],
}

fn record_managed(ctx: &Context, tp: &TradingPlatform, d: &Desired) {
    let ns = tp.namespace().unwrap_or_default();
    ctx.metrics
        .platforms
        .set_managed(&ns, &tp.name_any(), &d.managed());
}

fn forget_managed(ctx: &Context, tp: &TradingPlatform) {
    let ns = tp.namespace().unwrap_or_default();
    ctx.metrics.platforms.clear_managed(&ns, &tp.name_any());
}

async fn reconcile_paused(tp: &TradingPlatform, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let desired = resources::desired(tp)?;
    let parent = Parent::of(tp)?;
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&parent.name)
        .await?;
    let cronjob = Api::<CronJob>::namespaced(ctx.client.clone(), ns)
        .get_opt(&parent.backup_name())
        .await?;
    let mut status = derive_status(
        tp,
        &desired,
        deployment.as_ref(),
        cronjob.as_ref(),
        &[],
        ctx.now(),
    );
    crate::canary::freeze(&mut status, ctx.now());
    write_status(tp, ctx, ns, status).await?;
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(tp: &TradingPlatform, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let parent = Parent::of(tp)?;
    let storage = &tp.spec.backup.storage;
    if storage.existing_claim.is_none() {
        let claim = parent.backup_claim_name();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        match storage.retention_policy {
            ClaimRetentionPolicy::Delete => {
                match api.delete(&claim, &DeleteParams::background()).await {
                    Ok(_) => {
                        ctx.event(
                            tp,
                            EventType::Normal,
                            "BackupClaimDeleted",
                            "Cleanup",
                            format!("deleted backup claim {claim} (retentionPolicy Delete)"),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ClaimRetentionPolicy::Retain => {
                if api.get_opt(&claim).await?.is_some() {
                    ctx.event(
                        tp,
                        EventType::Normal,
                        "BackupClaimRetained",
                        "Cleanup",
                        format!("kept backup claim {claim} with its backups (retentionPolicy Retain); delete it by hand when no longer needed"),
                    )
                    .await;
                }
            }
        }
    }
    forget_managed(ctx, tp);
    ctx.forget_cleanups(tp);
    crate::backup_jobs::forget(ctx, &tp.namespace().unwrap_or_default(), &tp.name_any());
    if let Ok(mut a) = ctx.applied.lock() {
        a.remove(&key(tp));
    }
    crate::backup_metrics::forget(ctx, tp);
    crate::canary::forget(ctx, tp);
    crate::archive_status::forget(ctx, tp);
    info!("cleanup done; owned children are removed by garbage collection");
    Ok(Action::await_change())
}

async fn write_status(
    tp: &TradingPlatform,
    ctx: &Context,
    ns: &str,
    status: TradingPlatformStatus,
) -> Result<(), Error> {
    let previous = tp.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(()); // nothing changed: write nothing
    }
    for c in &status.conditions {
        let before = previous.conditions.iter().find(|p| p.type_ == c.type_);
        let changed = before.map(|b| &b.status) != Some(&c.status);
        let degraded_news = c.type_ == CONDITION_DEGRADED
            && c.status == "True"
            && before.map(|b| (&b.status, &b.reason)) != Some((&c.status, &c.reason))
            // child failures have one Event per child already
            && c.reason != REASON_CHILD_APPLY_FAILED;
        if (changed
            && before.is_some()
            && (c.type_ == CONDITION_READY
                || c.type_ == CONDITION_BACKUP_HEALTHY
                || c.type_ == crate::crd::CONDITION_ARCHIVE_HEALTHY))
            || degraded_news
        {
            let good = if c.type_ == CONDITION_DEGRADED {
                c.status == "False"
            } else {
                c.status == "True"
            };
            let type_ = if good {
                EventType::Normal
            } else {
                EventType::Warning
            };
            ctx.event(
                tp,
                type_,
                &c.reason,
                "StatusChange",
                format!("{} is {}: {}", c.type_, c.status, c.message),
            )
            .await;
        }
    }
    let api: Api<TradingPlatform> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &tp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn report_degraded(tp: &TradingPlatform, ctx: &Context, error: &Error) {
    ctx.event(
        tp,
        EventType::Warning,
        "ReconcileFailed",
        "Reconcile",
        error.to_string(),
    )
    .await;
    let Some(ns) = tp.namespace() else { return };
    if tp.meta().deletion_timestamp.is_some() {
        return;
    }
    let mut status = tp.status.clone().unwrap_or_default();
    let generation = tp.meta().generation;
    let now = ctx.now();
    let message = truncate(&error.to_string(), 1024);
    let reason = match error {
        Error::Build(_) => REASON_INVALID_SPEC,
        _ => "ReconcileError",
    };
    set_condition(
        &mut status.conditions,
        CONDITION_DEGRADED,
        "True",
        reason,
        &message,
        generation,
        now,
    );
    for t in [
        CONDITION_READY,
        CONDITION_PROGRESSING,
        CONDITION_BACKUP_HEALTHY,
    ] {
        if !status.conditions.iter().any(|c| c.type_ == t) {
            set_condition(
                &mut status.conditions,
                t,
                "Unknown",
                "ReconcileError",
                "not known yet: the last reconciliation failed",
                generation,
                now,
            );
        }
    }
    status.phase = Some("Degraded".to_string());
    if let Err(e) = write_status(tp, ctx, &ns, status).await {
        warn!(error = %e, "cannot write Degraded status");
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change (so an
/// unchanged world produces an identical status and no write).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let new = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// Derives the status from the children as the API returned them. Pure, so it is unit-tested.
pub fn derive_status(
    tp: &TradingPlatform,
    desired: &Desired,
    deployment: Option<&Deployment>,
    cronjob: Option<&CronJob>,
    jobs: &[Job],
    now: Timestamp,
) -> TradingPlatformStatus {
    let previous = tp.status.clone().unwrap_or_default();
    let generation = tp.meta().generation;
    let parent_name = tp.name_any();
    let mut conditions = previous.conditions.clone();
    let mut set = |t: &str, s: &str, r: &str, m: &str| {
        set_condition(&mut conditions, t, s, r, m, generation, now);
    };

    let dep_status = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let want = deployment
        .and_then(|d| d.spec.replicas)
        .unwrap_or(tp.spec.replicas);
    let replicas = dep_status.replicas.unwrap_or(0);
    let ready = dep_status.ready_replicas.unwrap_or(0);
    let updated = dep_status.updated_replicas.unwrap_or(0);
    let available = dep_status.available_replicas.unwrap_or(0);
    let dep_generation = deployment.and_then(|d| d.metadata.generation);
    let observed = dep_status.observed_generation;
    let deadline = dep_status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let deadline_exceeded = deadline.is_some();
    let replica_failure = dep_status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True")
    });
    let rolled_out = deployment.is_some()
        && observed.is_some()
        && observed >= dep_generation
        && updated >= want
        && replicas == updated
        && available >= want;

    let pdb_note = desired
        .pdb_skipped_reason
        .as_ref()
        .map(|r| format!("; {r}"))
        .unwrap_or_default();

    // Ready
    if deployment.is_none() {
        set(
            CONDITION_READY,
            "Unknown",
            "DeploymentMissing",
            &format!("Deployment {parent_name} does not exist yet"),
        );
    } else if want == 0 {
        set(CONDITION_READY, "False", "ScaledToZero", "replicas is 0");
    } else if available >= want {
        set(
            CONDITION_READY,
            "True",
            "ReplicasAvailable",
            &format!("{available}/{want} replicas available{pdb_note}"),
        );
    } else {
        set(
            CONDITION_READY,
            "False",
            "ReplicasUnavailable",
            &format!("{available}/{want} replicas available{pdb_note}"),
        );
    }

    // Progressing and Degraded
    let paused = tp.spec.paused;
    if paused {
        set(
            CONDITION_PROGRESSING,
            "False",
            "Paused",
            "spec.paused is true: the operator makes no changes to this platform",
        );
    } else if let Some(f) = replica_failure {
        set(
            CONDITION_PROGRESSING,
            "False",
            REASON_REPLICA_FAILURE,
            &format!(
                "Deployment {parent_name} cannot create pods: {}",
                f.message.as_deref().unwrap_or("no message")
            ),
        );
    } else if deadline_exceeded {
        set(
            CONDITION_PROGRESSING,
            "False",
            "ProgressDeadlineExceeded",
            "the Deployment rollout exceeded its progress deadline",
        );
    } else if deployment.is_none() || !rolled_out {
        set(
            CONDITION_PROGRESSING,
            "True",
            "RollingOut",
            &format!("{updated}/{want} replicas updated, {available} available"),
        );
    } else {
        set(
            CONDITION_PROGRESSING,
            "False",
            "RolloutComplete",
            &format!("{want} replicas up to date"),
        );
    }
    let last_success_time = cronjob
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.last_successful_time.clone())
        .or(previous.last_successful_backup.clone());
    let failed_job = newest_failed_job(jobs, last_success_time.as_ref());
    if let Some(f) = replica_failure {
        set(
            CONDITION_DEGRADED,
            "True",
            REASON_REPLICA_FAILURE,
            &format!(
                "Deployment {parent_name}: {}: {}. The ReplicaSet cannot create pods: check the image reference, the pod spec and the namespace's quotas and admission policies (kubectl describe rs -l app.kubernetes.io/instance={parent_name})",
                f.reason.as_deref().unwrap_or("ReplicaFailure"),
                f.message.as_deref().unwrap_or("no message")
            ),
        );
    } else if let Some(d) = deadline {
        set(
            CONDITION_DEGRADED,
            "True",
            "ProgressDeadlineExceeded",
            &format!(
                "Deployment {parent_name}: {}. The rollout is stuck: check the pods' events and logs",
                d.message.as_deref().unwrap_or("progress deadline exceeded")
            ),
        );
    } else if let Some((name, reason, message)) = failed_job {
        set(
            CONDITION_DEGRADED,
            "True",
            REASON_BACKUP_JOB_FAILED,
            &format!(
                "backup Job {name} failed: {reason}: {message}. Check its logs (kubectl logs job/{name}); the next scheduled run retries"
            ),
        );
    } else {
        set(
            CONDITION_DEGRADED,
            "False",
            "AsExpected",
            "the last reconciliation succeeded",
        );
    }

    // BackupHealthy
    let cron_status = cronjob.and_then(|c| c.status.clone()).unwrap_or_default();
    let last_success = cron_status
        .last_successful_time
        .clone()
        .or(previous.last_successful_backup.clone());
    let last_scheduled = cron_status
        .last_schedule_time
        .clone()
        .or(previous.last_scheduled_backup.clone());
    let (bs, br, bm) = backup_health(tp, cronjob, last_success.as_ref(), now);
    set(CONDITION_BACKUP_HEALTHY, bs, br, &bm);

    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    let phase = if paused {
        "Paused"
    } else if find(CONDITION_DEGRADED).as_deref() == Some("True") {
        "Degraded"
    } else if find(CONDITION_PROGRESSING).as_deref() == Some("True") {
        "Progressing"
    } else if find(CONDITION_READY).as_deref() == Some("True") {
        "Ready"
    } else {
        "NotReady"
    };

    TradingPlatformStatus {
        observed_generation: generation,
        phase: Some(phase.to_string()),
        conditions,
        replicas,
        ready_replicas: ready,
        updated_replicas: updated,
        selector: Some(
            Parent {
                name: parent_name,
                namespace: None,
                owner: None,
                version: None,
            }
            .selector_string(),
        ),
        last_scheduled_backup: last_scheduled,
        last_successful_backup: last_success,
        last_backup_now_request: previous.last_backup_now_request,
        migrated_image: previous.migrated_image,
        rollout: previous.rollout,
        restore: previous.restore,
        archive: previous.archive,
    }
}

/// Condition reason: the Deployment reports `ReplicaFailure` (e.g. `FailedCreate`).
pub const REASON_REPLICA_FAILURE: &str = "ReplicaFailure";
/// Condition reason: the newest backup Job failed after the last successful backup.
pub const REASON_BACKUP_JOB_FAILED: &str = "BackupJobFailed";

/// The newest backup Job, if it failed and is newer than the last success: (name, reason, message).
fn newest_failed_job(
    jobs: &[Job],
    last_success: Option<&Time>,
) -> Option<(String, String, String)> {
    let newest = jobs
        .iter()
        .filter(|j| !is_active(j))
        .max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let failed = newest
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let failed_at = failed.last_transition_time.as_ref().map(|t| t.0).or(newest
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0));
    if let (Some(ok), Some(at)) = (last_success, failed_at)
        && ok.0 >= at
    {
        return None;
    }
    Some((
        newest.name_any(),
        failed
            .reason
            .clone()
            .unwrap_or_else(|| "Failed".to_string()),
        failed
            .message
            .clone()
            .unwrap_or_else(|| "no message".to_string()),
    ))
}

fn backup_health(
    tp: &TradingPlatform,
    cronjob: Option<&CronJob>,
    last_success: Option<&Time>,
    now: Timestamp,
) -> (&'static str, &'static str, String) {
    let b = &tp.spec.backup;
    if !b.enabled {
        return (
            "Unknown",
            "BackupsDisabled",
            "backups are disabled (spec.backup.enabled is false)".to_string(),
        );
    }
    let Some(cronjob) = cronjob else {
        return (
            "Unknown",
            "CronJobMissing",
            "the backup CronJob does not exist yet".to_string(),
        );
    };
    let schedule = match CronSchedule::parse(&b.schedule) {
        Ok(s) => s,
        Err(e) => return ("False", "InvalidSchedule", e),
    };
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let Some(interval) = schedule.max_interval_seconds(today) else {
        return (
            "False",
            "ScheduleNeverFires",
            format!("schedule {:?} never fires", b.schedule),
        );
    };
    let allowed = interval.saturating_mul(2);
    let suspended = if b.suspend {
        " (schedule suspended)"
    } else {
        ""
    };
    // Messages name times, not ages: an age would change the status at every reconciliation,
    // so each resync would write it (and send a watch event to every client).
    let at = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    match last_success {
        Some(t) => {
            let age = now.as_second() - t.0.as_second();
            let when = at(t.0);
            if age <= allowed {
                (
                    "True",
                    "BackupRecent",
                    format!(
                        "last successful backup at {when}, within twice the schedule interval ({allowed}s){suspended}"
                    ),
                )
            } else {
                (
                    "False",
                    "BackupOverdue",
                    format!(
                        "last successful backup at {when}, longer ago than twice the schedule interval ({allowed}s){suspended}"
                    ),
                )
            }
        }
        None => {
            let created = cronjob
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let age = now.as_second() - created.as_second();
            if age <= allowed {
                (
                    "Unknown",
                    "AwaitingFirstBackup",
                    format!(
                        "no backup has completed yet; the first is expected within {allowed}s of the CronJob's creation{suspended}"
                    ),
                )
            } else {
                (
                    "False",
                    "NoSuccessfulBackup",
                    format!(
                        "no successful backup since the CronJob was created at {}, longer ago than twice the schedule interval ({allowed}s){suspended}",
                        at(created)
                    ),
                )
            }
        }
    }
}
