//! The Controller's watches, each with its own backoff and a health record.
//!
//! Hand-written on top of kube-runtime's `watcher` because of two behaviours of kube-runtime 5:
//! `Controller::new(..).owns(..)` merges every watch into one stream and applies one
//! `trigger_backoff` to it, so a "resource version too old" error on any watch pauses *all* of
//! them (after an API-server restart, eleven watches took turns freezing each other for minutes);
//! and `StreamBackoff` backs off on every error, including 410 Gone, which only needs a relist.
//!
//! [`guarded`] wraps one watch: errors are logged at WARN, counted, and never reach the
//! Controller (so its shared backoff never fires); a 410 restarts the watch at once, any other
//! error after this watch's own exponential backoff (client-go's parameters). Every restart is a
//! fresh list, so "current again" has one unambiguous signal: the relist completed
//! (`Event::InitDone`). [`WatchHealth`] records which watches are current, for `/health/ready`,
//! `/health/live` and for stepping down as leader ([`WatchHealth::stale_beyond`]).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// State of one watch.
#[derive(Clone, Debug)]
struct WatchState {
    current: bool,
    /// When the watch last changed between current and not current.
    since: Instant,
    /// The last error, in words.
    last_error: Option<String>,
}

/// Which watches are current (listed and watching), shared by the watches and the HTTP endpoints.
#[derive(Clone, Default)]
pub struct WatchHealth {
    inner: Arc<Mutex<BTreeMap<&'static str, WatchState>>>,
    metrics: Option<Metrics>,
}

/// A watch that is not current, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleWatch {
    /// Kind watched.
    pub name: &'static str,
    /// For how long it has not been current.
    pub for_: Duration,
    /// The last error seen.
    pub last_error: Option<String>,
}

impl std::fmt::Display for StaleWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "watch of {} not current for {}s",
            self.name,
            self.for_.as_secs()
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last error: {e})")?;
        }
        Ok(())
    }
}

impl WatchHealth {
    /// A record that also sets `tradeplane_operator_watch_current{watch}`.
    pub fn with_metrics(metrics: Metrics) -> Self {
        Self {
            inner: Arc::default(),
            metrics: Some(metrics),
        }
    }

    fn update(&self, name: &'static str, current: bool, error: Option<String>) {
        let now = Instant::now();
        if let Ok(mut map) = self.inner.lock() {
            let st = map.entry(name).or_insert(WatchState {
                current,
                since: now,
                last_error: None,
            });
            if st.current != current {
                st.current = current;
                st.since = now;
            }
            if error.is_some() {
                st.last_error = error;
            }
        }
        if let Some(m) = &self.metrics {
            m.watch_current
                .with_label_values(&[name])
                .set(i64::from(current));
        }
    }

    /// Registers a watch as not current yet (it has not listed).
    pub fn register(&self, name: &'static str) {
        self.update(name, false, None);
    }

    /// The watch finished a list and is watching.
    pub fn mark_current(&self, name: &'static str) {
        self.update(name, true, None);
    }

    /// The watch failed and is recovering.
    pub fn mark_stale(&self, name: &'static str, error: String) {
        self.update(name, false, Some(error));
    }

    /// Every watch that is not current (empty: all current, or none registered, as on a standby).
    pub fn stale(&self) -> Vec<StaleWatch> {
        let now = Instant::now();
        let Ok(map) = self.inner.lock() else {
            return Vec::new();
        };
        map.iter()
            .filter(|(_, s)| !s.current)
            .map(|(name, s)| StaleWatch {
                name,
                for_: now.saturating_duration_since(s.since),
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// The first watch that has not been current for longer than `bound`.
    pub fn stale_beyond(&self, bound: Duration) -> Option<StaleWatch> {
        self.stale().into_iter().find(|s| s.for_ > bound)
    }

    /// Resolves once some watch has not been current for longer than `bound` (checked every second).
    pub async fn wait_stale_beyond(&self, bound: Duration) -> StaleWatch {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(s) = self.stale_beyond(bound) {
                return s;
            }
        }
    }
}

/// True for the errors that mean "relist now": 410 Gone (resource version too old, also 410 on a
/// list or watch request).
pub fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

struct Guard<S, F> {
    name: &'static str,
    make: F,
    inner: Pin<Box<S>>,
    backoff: DefaultBackoff,
    health: WatchHealth,
}

/// One watch of the Controller: `make` builds the kube-runtime watcher stream (called again for
/// every restart). The returned stream never yields an error; see the module doc.
pub fn guarded<K, S, F>(
    name: &'static str,
    health: WatchHealth,
    make: F,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    F: Fn() -> S + Send + 'static,
{
    health.register(name);
    let g = Guard {
        name,
        inner: Box::pin(make()),
        make,
        backoff: DefaultBackoff::default(),
        health,
    };
    futures::stream::unfold(g, |mut g| async move {
        loop {
            match g.inner.next().await {
                None => {
                    // The watcher never ends on its own; restart rather than stop watching.
                    g.inner = Box::pin((g.make)());
                }
                Some(Ok(ev)) => {
                    if matches!(ev, Event::InitDone) {
                        let was_stale = g.health.stale().iter().any(|s| s.name == g.name);
                        g.health.mark_current(g.name);
                        g.backoff = DefaultBackoff::default();
                        if was_stale {
                            info!(watch = g.name, "watch is current again");
                        }
                    }
                    return Some((Ok(ev), g));
                }
                Some(Err(e)) => {
                    let gone = is_gone(&e);
                    let words = watch_error_words(&e);
                    g.health.mark_stale(g.name, words.clone());
                    if let Some(m) = &g.health.metrics {
                        m.watch_errors
                            .with_label_values(&[g.name, if gone { "gone" } else { "other" }])
                            .inc();
                    }
                    if gone {
                        warn!(watch = g.name, error = %words, "watch desynchronised (410 Gone); relisting now");
                    } else {
                        let delay = g.backoff.next().unwrap_or(Duration::from_secs(30));
                        warn!(watch = g.name, error = %words, retry_in_ms = delay.as_millis() as u64, "watch failed; relisting after this watch's backoff");
                        tokio::time::sleep(delay).await;
                    }
                    g.inner = Box::pin((g.make)());
                }
            }
        }
    })
}

/// A watch error in words (no debug dump).
pub fn watch_error_words(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k) => {
            format!("list failed: {}", crate::errors::kube_error_words(k))
        }
        watcher::Error::WatchStartFailed(k) => {
            format!(
                "watch request failed: {}",
                crate::errors::kube_error_words(k)
            )
        }
        watcher::Error::WatchError(s) => format!(
            "the API server ended the watch: {}",
            crate::errors::status_words(s)
        ),
        watcher::Error::WatchFailed(k) => {
            format!("watch stream broke: {}", crate::errors::kube_error_words(k))
        }
        watcher::Error::NoResourceVersion => {
            "the list had no resourceVersion (does the resource support watch?)".to_string()
        }
    }
}

impl Debug for WatchHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHealth")
            .field("stale", &self.stale())
            .finish()
    }
}
