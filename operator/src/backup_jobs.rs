//! The backup Jobs of each TradingPlatform, listed once and then answered from memory until the
//! Job watch reports a change.
//!
//! Every reconciliation with backups enabled needs its platform's backup Jobs (the scheduled
//! ones the CronJob creates and the backup-now ones the operator creates): whether a backup-now
//! run is active (the CronJob is suspended meanwhile), the newest success and failure for
//! `BackupHealthy` and the backup metrics. Listing them each time made the 5-minute resync of an
//! unchanged platform send a LIST that the operator's own watch could answer (issue 13). The
//! Job watch (metadata only, like every owned kind) counts the events it sees
//! ([`crate::feed::WatchFeed`]); a list is kept with the count read before it was sent and is
//! reused while the count is unchanged. Any Job
//! event, of any platform, makes every kept list stale: coarse, but exact, and in steady state
//! (nothing changing) no Job events arrive, so a resync lists nothing. A watch restart relists,
//! which counts as events too. Without a Job watch (a context used outside the `Controller`,
//! as the tests' direct reconciles do), every call lists.
//!
//! Kept Jobs drop their `spec` and `managedFields`, which nothing here reads and which are most
//! of a Job's size.

use std::collections::HashMap;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

use crate::controller::Context;
use crate::resources::{self, Parent};

/// Per TradingPlatform (`ns/name`): its backup Jobs as last listed, with the Job watch's event
/// count read before the list was sent.
pub type JobLists = HashMap<String, (u64, Vec<Job>)>;

/// Backup Jobs of this instance (scheduled and backup-now), from memory when still current.
pub async fn list(ctx: &Context, ns: &str, parent: &Parent) -> Result<Vec<Job>, kube::Error> {
    let key = format!("{ns}/{}", parent.name);
    // Read before the list is sent: an event during the list makes the kept list stale.
    let seen = ctx.feed.as_ref().map(|f| f.job_events());
    if let Some(seen) = seen
        && let Ok(kept) = ctx.job_lists.lock()
        && let Some((at, jobs)) = kept.get(&key)
        && *at == seen
    {
        return Ok(jobs.clone());
    }
    let selector = format!(
        "{},{}={}",
        parent.instance_selector(),
        resources::LABEL_COMPONENT,
        resources::COMPONENT_BACKUP
    );
    let mut jobs = Api::<Job>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    for j in &mut jobs {
        j.spec = None;
        j.metadata.managed_fields = None;
    }
    if let Some(seen) = seen
        && let Ok(mut kept) = ctx.job_lists.lock()
    {
        kept.insert(key, (seen, jobs.clone()));
    }
    Ok(jobs)
}

/// Forgets the kept list of a deleted TradingPlatform.
pub fn forget(ctx: &Context, ns: &str, name: &str) {
    if let Ok(mut kept) = ctx.job_lists.lock() {
        kept.remove(&format!("{ns}/{name}"));
    }
}
