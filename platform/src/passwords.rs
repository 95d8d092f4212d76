//! Password hashing under a memory bound.
//!
//! Each argon2 hash or verification (the crate's default parameters: 19 MiB, 2 passes) allocates
//! about 19 MiB for its duration, and anyone can POST a login or a registration. Unbounded, a
//! burst of 32 registrations took the process from 15 MiB to 600-700 MiB (issue 11). So at most
//! `PASSWORD_HASH_CONCURRENCY` hashes run at once, on the blocking pool; up to
//! `PASSWORD_HASH_QUEUE` more requests wait for a slot, and past that a request is shed at once
//! with 503 `overloaded` and `Retry-After` instead of queueing into its timeout. The memory that
//! hashing can take is then `PASSWORD_HASH_CONCURRENCY × 19 MiB` (see `docs/resilience.md`).

use std::sync::Arc;

use prometheus::{IntCounter, Registry};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Why a hash was not computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot and queue place is taken: shed (503 `overloaded`).
    #[error("too many password checks at once, retry shortly")]
    Overloaded,
    /// The hashing task failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> ApiError {
        match e {
            e @ HashError::Overloaded => ApiError::Overloaded(e.to_string()),
            HashError::Failed(e) => ApiError::Internal(e),
        }
    }
}

/// The bounded hashing pool; cheap to clone.
#[derive(Clone, Debug)]
pub struct Passwords {
    /// Slots of hashes computed at once.
    work: Arc<Semaphore>,
    /// Slots of requests hashing or waiting to (work + queue).
    admission: Arc<Semaphore>,
    shed: Option<IntCounter>,
}

impl Passwords {
    /// A pool of `concurrency` hashes at once and `queue` waiting requests, without metrics.
    pub fn new(concurrency: usize, queue: usize) -> Passwords {
        let concurrency = concurrency.max(1);
        Passwords {
            work: Arc::new(Semaphore::new(concurrency)),
            admission: Arc::new(Semaphore::new(concurrency + queue)),
            shed: None,
        }
    }

    /// Registers `password_hash_shed_total` (requests refused because hashing was saturated).
    pub fn with_metrics(mut self, registry: &Registry) -> Result<Passwords, prometheus::Error> {
        let shed = IntCounter::new(
            "password_hash_shed_total",
            "Logins and registrations refused with 503 overloaded because every password-hashing slot and queue place was taken.",
        )?;
        registry.register(Box::new(shed.clone()))?;
        self.shed = Some(shed);
        Ok(self)
    }

    /// Hashes a new password (argon2id, random salt).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || crate::auth::hash_password(&password))
            .await?
            .map_err(|e| HashError::Failed(anyhow::anyhow!("hashing password: {e}")))
    }

    /// Checks a password against a stored hash (`None`: against a dummy hash, so that an
    /// unknown username costs the same as a wrong password, and is `false`).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        self.run(move || match hash {
            Some(hash) => crate::auth::verify_password(&password, &hash),
            None => {
                crate::auth::verify_password(&password, &DUMMY_HASH);
                false
            }
        })
        .await
    }

    /// Runs `f` on the blocking pool once a slot is free, or sheds at once when the queue is
    /// full too.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(_admitted) = self.admission.clone().try_acquire_owned() else {
            if let Some(shed) = &self.shed {
                shed.inc();
            }
            return Err(HashError::Overloaded);
        };
        let slot = self
            .work
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HashError::Failed(e.into()))?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(slot);
            out
        })
        .await
        .map_err(|e| HashError::Failed(anyhow::anyhow!("hashing task: {e}")))
    }
}

/// A valid argon2 hash of a random password, verified against when the username is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::auth::hash_password(&crate::auth::new_refresh_token()).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_slots_and_the_queue_requests_are_shed() {
        let pool = Passwords::new(1, 1);
        let started = std::sync::Arc::new(std::sync::Barrier::new(2));
        let release = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (s, r) = (started.clone(), release.clone());
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    s.wait();
                    r.wait();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started.wait())
            .await
            .expect("the first hash runs");
        // One runs, one may wait, the third is shed.
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        tokio::task::yield_now().await;
        while pool.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.run(|| 0).await, Err(HashError::Overloaded)));
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .expect("release");
        busy.await.expect("task").expect("first");
        assert_eq!(queued.await.expect("task").expect("queued"), 7);
        assert_eq!(pool.run(|| 1).await.expect("free again"), 1);
    }
}
