//! A TCP proxy in front of PostgreSQL that injects the faults a broken network produces: cut
//! (listener closed, every connection dropped) and restored on the same port, and a COMMIT
//! whose reply never arrives (forwarded to the server, then the connection is dropped before
//! the answer reaches the client) or that never arrives at all.
//!
//! Faults on COMMIT only hit connections whose start-up message names the given
//! `application_name` (the matcher's is `tradeplane-matcher`), so API transactions are spared.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What to do with the next COMMITs of the targeted connections.
#[derive(Debug, Default)]
struct Faults {
    /// COMMITs to forward whose reply is then dropped with the connection.
    drop_replies: AtomicU32,
    /// COMMITs to drop, with the connection, before they reach the server.
    drop_commits: AtomicU32,
    /// Faults injected so far.
    injected: AtomicU32,
}

/// The proxy; see the module documentation.
pub struct PgProxy {
    /// The port clients connect to.
    pub port: u16,
    target: String,
    application: Option<String>,
    faults: Arc<Faults>,
    tasks: Option<JoinSet<()>>,
}

impl PgProxy {
    /// Starts a proxy to `target` (`host:port`) on a spare loopback port. COMMIT faults hit the
    /// connections of `application` (every connection when `None`).
    pub async fn start(target: &str, application: Option<&str>) -> PgProxy {
        let mut p = PgProxy {
            port: 0,
            target: target.to_owned(),
            application: application.map(str::to_owned),
            faults: Arc::default(),
            tasks: None,
        };
        p.restore().await;
        p
    }

    /// Starts a proxy in front of the server of `db_url` (a `postgres://user@host:port/db` URL).
    pub async fn in_front_of(db_url: &str, application: Option<&str>) -> PgProxy {
        let target = db_url
            .split_once('@')
            .and_then(|(_, t)| t.split_once('/'))
            .map(|(hp, _)| hp.to_owned())
            .expect("url with user@host:port/db");
        PgProxy::start(&target, application).await
    }

    /// A `postgres://` URL for `db_url`'s database through the proxy.
    pub fn url_for(&self, db_url: &str) -> String {
        let (head, tail) = db_url.split_once('@').expect("url with user@host");
        let (_, name) = tail.split_once('/').expect("url with database");
        format!("{head}@127.0.0.1:{}/{name}", self.port)
    }

    /// Listens again (on the same port after a cut).
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind proxy");
        self.port = listener.local_addr().expect("addr").port();
        let target = self.target.clone();
        let application = self.application.clone();
        let faults = self.faults.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, application, faults) =
                    (target.clone(), application.clone(), faults.clone());
                conns.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        relay(inbound, outbound, application, faults).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Drops the listener and every proxied connection.
    pub fn cut(&mut self) {
        self.tasks = None;
    }

    /// The next `n` COMMITs reach the server, but their replies are lost with the connection.
    pub fn drop_commit_replies(&self, n: u32) {
        self.faults.drop_replies.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` COMMITs are lost, with the connection, before reaching the server.
    pub fn drop_commits(&self, n: u32) {
        self.faults.drop_commits.fetch_add(n, Ordering::SeqCst);
    }

    /// COMMIT faults injected so far.
    pub fn injected(&self) -> u32 {
        self.faults.injected.load(Ordering::SeqCst)
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    application: Option<String>,
    faults: Arc<Faults>,
) {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mute = AtomicBool::new(false);
    let mut targeted = application.is_none();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut first = true;
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if first {
                first = false;
                if let Some(app) = &application {
                    targeted = contains(chunk, app.as_bytes());
                }
            }
            // A simple-protocol COMMIT: 'Q', length, "COMMIT\0" (how sqlx commits).
            if targeted && contains(chunk, b"COMMIT\0") {
                if take(&faults.drop_commits) {
                    faults.injected.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if take(&faults.drop_replies) {
                    faults.injected.fetch_add(1, Ordering::SeqCst);
                    mute.store(true, Ordering::SeqCst);
                    let _ = server_write.write_all(chunk).await;
                    // Let the server finish the commit, then drop the connection unanswered.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if mute.load(Ordering::SeqCst) {
                continue;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {},
        () = downstream => {},
    }
}
