//! Password hashing under a memory bound.
//!
//! Each argon2 hash or verification (the crate's default parameters: 19 MiB, 2 passes) allocates
//! about 19 MiB for its duration, and anyone can POST a login or a registration. Unbounded, a
//! burst of 32 registrations took the process from 15 MiB to 600-700 MiB (issue 11). So at most
//! `PASSWORD_HASH_CONCURRENCY` hashes run at once, on as many dedicated threads; up to
//! `PASSWORD_HASH_QUEUE` more requests wait for a slot, and past that a request is shed at once
//! with 503 `overloaded` and `Retry-After` instead of queueing into its timeout. The memory that
//! hashing can take is then `PASSWORD_HASH_CONCURRENCY × 19 MiB` (see `docs/resilience.md`).
//!
//! Each hashing thread allocates its 19 MiB of argon2 memory once and reuses it for every hash
//! (`hash_password_into_with_memory`), on dedicated threads rather than tokio's blocking pool.
//! Allocating and freeing 19 MiB per hash fragmented glibc's arenas: measured under a flood of
//! 64 logins, 2 slots on the blocking pool still peaked at 365 MiB, 2 dedicated threads that
//! allocate per hash at 234 MiB, and the allocator kept it. Hand-written (a channel and N
//! threads) because no dependency of the workspace offers a fixed thread pool.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::{
    self, Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// A hashing job for the dedicated threads.
type Job = Box<dyn FnOnce() + Send>;

/// The bounded hashing pool; cheap to clone. Its threads end when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Passwords {
    /// Jobs for the `concurrency` hashing threads.
    jobs: mpsc::Sender<Job>,
    /// Slots of requests hashing or waiting to (concurrency + queue).
    admission: Arc<Semaphore>,
    shed: Option<IntCounter>,
}

impl Passwords {
    /// A pool of `concurrency` hashes at once and `queue` waiting requests, without metrics.
    pub fn new(concurrency: usize, queue: usize) -> Passwords {
        let concurrency = concurrency.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for i in 0..concurrency {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match inbox.lock() {
                            Ok(rx) => rx.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every Passwords clone is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Passwords {
            jobs,
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
        self.run(move || hash_reusing(&password))
            .await?
            .map_err(|e| HashError::Failed(anyhow::anyhow!("hashing password: {e}")))
    }

    /// Checks a password against a stored hash (`None`: against a dummy hash, so that an
    /// unknown username costs the same as a wrong password, and is `false`).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        self.run(move || match hash {
            Some(hash) => verify_reusing(&password, &hash),
            None => {
                verify_reusing(&password, &DUMMY_HASH);
                false
            }
        })
        .await
    }

    /// Runs `f` on a hashing thread once one is free, or sheds at once when every thread is
    /// busy and the queue is full too.
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| HashError::Failed(anyhow::anyhow!("the hashing threads are gone")))?;
        rx.await
            .map_err(|_| HashError::Failed(anyhow::anyhow!("a hashing job was dropped")))
    }
}

/// Runs `f` on this thread's argon2 memory, grown to what `params` need and kept for the next
/// hash. Parameters larger than the defaults (a legacy hash) get memory of their own instead.
fn with_blocks<T>(params: &Params, f: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    let needed = params.block_count();
    if needed > Params::default().block_count() {
        return f(&mut vec![Block::new(); needed]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < needed {
            blocks.resize(needed, Block::new());
        }
        f(&mut blocks[..needed])
    })
}

/// [`crate::auth::hash_password`] on this thread's reused memory: the same PHC string format
/// and parameters (argon2id, v19, the crate's defaults).
fn hash_reusing(password: &str) -> Result<String, password_hash::Error> {
    let argon = Argon2::default();
    let params = argon.params().clone();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(output_len, |out| {
        with_blocks(&params, |blocks| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
        })
        .map_err(password_hash::Error::from)
    })?;
    Ok(PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// [`crate::auth::verify_password`] on this thread's reused memory: the stored hash's own
/// algorithm, version and parameters; a malformed hash never verifies.
fn verify_reusing(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map(Option::unwrap_or_default),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let computed = Output::init_with(expected.len(), |out| {
        with_blocks(&params, |blocks| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
        })
        .map_err(password_hash::Error::from)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|c| c == expected)
}

/// A valid argon2 hash of a random password, verified against when the username is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::auth::hash_password(&crate::auth::new_refresh_token()).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_memory_hashes_are_the_standard_ones() {
        for _ in 0..2 {
            let ours = hash_reusing("correct horse").expect("hash");
            assert!(
                ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
                "{ours}"
            );
            assert!(crate::auth::verify_password("correct horse", &ours));
            assert!(!crate::auth::verify_password("correct horsf", &ours));
            let theirs = crate::auth::hash_password("battery staple").expect("hash");
            assert!(verify_reusing("battery staple", &theirs));
            assert!(!verify_reusing("battery stapl", &theirs));
            assert!(!verify_reusing("battery staple", "not a hash"));
        }
    }

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
