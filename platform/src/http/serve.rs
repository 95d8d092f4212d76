//! The HTTP/1.1 server: accepting connections under caps, the per-connection timeouts, and the
//! graceful drain. It replaces `axum::serve`, which has no header-read or idle timeout, no cap on
//! connections and no header-size limit, so that ~1,000 idle or slow connections from one client
//! could exhaust the file descriptors (issue 11).
//!
//! What protects what (see `docs/resilience.md`, "Connections"):
//! - `MAX_CONNECTIONS` open connections in total and `MAX_CONNECTIONS_PER_IP` per peer address
//!   (always lower than the total, so one client cannot take every slot): a connection past a cap
//!   is closed as soon as it is accepted and counted in `http_connections_refused_total{reason}`.
//!   The total is also kept below `RLIMIT_NOFILE` minus [`FD_RESERVE`] descriptors, which stay
//!   for the database pool, Redis, files and the probes' own connections.
//! - `HEADER_READ_TIMEOUT_SECONDS`: a request head must be complete this long after its first
//!   byte, or the connection is closed (slowloris).
//! - `IDLE_TIMEOUT_SECONDS`: a connection with no request in flight and no byte in either
//!   direction for this long is closed (idle keep-alive, or a connection that never sends).
//! - `MAX_HEADER_BYTES`: a request head larger than this is answered 431 by hyper and closed.
//!
//! An upgraded connection (a WebSocket) keeps its slots until it closes ([`ConnectionSlot`]).
//!
//! The two timeouts are watched here rather than with hyper's `header_read_timeout`, because
//! hyper starts that timer whenever the connection waits for a head: it cannot tell an idle
//! keep-alive connection from a slow head, and hyper has no idle timeout at all.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// File descriptors kept out of `MAX_CONNECTIONS`: the database pool, Redis, the SQLite file,
/// logs, outgoing forwards, and room for the probes when every connection slot is taken.
pub const FD_RESERVE: u64 = 256;

/// The connection limits, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `HEADER_READ_TIMEOUT_SECONDS`.
    pub header_read_timeout: Duration,
    /// `IDLE_TIMEOUT_SECONDS`.
    pub idle_timeout: Duration,
    /// `MAX_HEADER_BYTES`.
    pub max_header_bytes: usize,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`.
    pub max_connections_per_ip: usize,
}

impl ServeOptions {
    /// The options of a configuration.
    pub fn from_config(config: &crate::config::Config) -> ServeOptions {
        ServeOptions {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_header_bytes: config.max_header_bytes,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
        }
    }
}

/// Metrics of the connection layer.
#[derive(Clone, Debug)]
pub struct ConnMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    closed: IntCounterVec,
}

impl ConnMetrics {
    /// Registers `http_connections_open`, `http_connections_refused_total{reason}` (`total`,
    /// `per_ip`) and `http_connections_closed_total{reason}` (`idle`, `header_timeout`).
    pub fn register(registry: &Registry) -> Result<ConnMetrics, prometheus::Error> {
        let open = IntGauge::new("http_connections_open", "HTTP connections open now.")?;
        let refused = IntCounterVec::new(
            Opts::new(
                "http_connections_refused_total",
                "Connections closed on accept because a cap was reached, by cap (total, per_ip).",
            ),
            &["reason"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "http_connections_closed_total",
                "Connections closed by the server's timeouts, by reason (idle, header_timeout).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        for r in ["total", "per_ip"] {
            refused.with_label_values(&[r]);
        }
        for r in ["idle", "header_timeout"] {
            closed.with_label_values(&[r]);
        }
        Ok(ConnMetrics {
            open,
            refused,
            closed,
        })
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connection cap actually applied: `MAX_CONNECTIONS`, lowered (with a warning) so that
/// [`FD_RESERVE`] descriptors stay free under `fd_limit`.
pub fn effective_max_connections(configured: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(FD_RESERVE).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    configured.min(room)
}

/// A running server: its task and the number of requests it is serving.
pub struct Served {
    /// Ends when the drain completed (every connection closed) or on a fatal accept error.
    pub task: tokio::task::JoinHandle<io::Result<()>>,
    /// Requests being served.
    pub in_flight: RequestCount,
}

/// Requests whose handler has not finished yet (what a forced drain cuts).
#[derive(Clone, Debug, Default)]
pub struct RequestCount(Arc<AtomicUsize>);

impl RequestCount {
    /// The count now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then stops accepting (the listener is
/// closed, so new connections are refused), lets every connection finish its current request
/// and closes it. The caller bounds the drain (`DRAIN_TIMEOUT_SECONDS`).
pub fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
) -> Served {
    let in_flight = RequestCount::default();
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        options,
        metrics,
        shutdown,
        in_flight.0.clone(),
    ));
    Served { task, in_flight }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
    in_flight: Arc<AtomicUsize>,
) -> io::Result<()> {
    let per_ip = PerIp::new(options.max_connections_per_ip);
    let total = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let tracker = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Watched by `watch_timeouts` instead (see the module documentation).
        .header_read_timeout(None)
        .max_header_size(options.max_header_bytes);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: wait instead of spinning, as axum::serve does.
                    tracing::warn!(error = %e, "accept failed; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(total_slot) = total.clone().try_acquire_owned() else {
            metrics.refused.with_label_values(&["total"]).inc();
            drop(stream);
            continue;
        };
        let Some(ip_slot) = per_ip.acquire(peer.ip()) else {
            metrics.refused.with_label_values(&["per_ip"]).inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics.open.inc();
        let slot = ConnectionSlot(Arc::new(SlotInner {
            _total: total_slot,
            _per_ip: ip_slot,
            open: metrics.open.clone(),
        }));
        let conn = Connection {
            slot,
            builder: builder.clone(),
            router: router.clone(),
            options: options.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            in_flight: in_flight.clone(),
            peer,
        };
        tracker.spawn(conn.run(stream));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Errors of one incoming connection that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The connection-cap slots of one TCP connection, released when the last clone is dropped.
/// Every request carries a clone in its extensions, so that a WebSocket handler can keep it
/// for the life of the upgraded connection: WebSockets count against `MAX_CONNECTIONS` and
/// `MAX_CONNECTIONS_PER_IP` (and in `http_connections_open`) like any connection.
#[derive(Clone, Debug)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    _total: tokio::sync::OwnedSemaphorePermit,
    _per_ip: PerIpGuard,
    open: IntGauge,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    slot: ConnectionSlot,
    builder: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    options: ServeOptions,
    metrics: ConnMetrics,
    shutdown: CancellationToken,
    in_flight: Arc<AtomicUsize>,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let router = self.router;
        let peer = self.peer;
        let in_flight = self.in_flight;
        let service_activity = activity.clone();
        let slot = self.slot.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let router = router.clone();
            let _request = InFlight::begin(&in_flight, &service_activity);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            async move {
                let response = router.oneshot(req).await;
                drop(_request);
                response
            }
        });
        let conn = self.builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
                    }
                    break;
                }
                _ = self.shutdown.cancelled(), if !draining => {
                    // Finish the request in flight, then close (at once when idle).
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                // Also while draining: a slow head must not hold the drain up.
                reason = watch_timeouts(&activity, &self.options) => {
                    // Only fires with no request in flight: nothing is cut.
                    self.metrics.closed.with_label_values(&[reason]).inc();
                    break;
                }
            }
        }
        drop(self.slot);
    }
}

/// Counts a request from the moment hyper hands it over until its handler finished.
struct InFlight {
    total: Arc<AtomicUsize>,
    activity: Arc<Activity>,
}

impl InFlight {
    fn begin(total: &Arc<AtomicUsize>, activity: &Arc<Activity>) -> InFlight {
        total.fetch_add(1, Ordering::SeqCst);
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        // The head is complete: the next one starts with the next byte after this request.
        activity.head_started.store(0, Ordering::SeqCst);
        InFlight {
            total: total.clone(),
            activity: activity.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.total.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the timeouts of one connection look at. Times are milliseconds since `start`; 0 in
/// `head_started` means no head is being read.
struct Activity {
    start: Instant,
    last: AtomicU64,
    head_started: AtomicU64,
    in_flight: AtomicUsize,
    /// Wakes [`watch_timeouts`] when a head starts, so it swaps the idle for the head deadline.
    head_begun: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_begun: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::SeqCst);
    }

    fn on_read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            // The first byte of a new head (stored +1 so that 0 keeps meaning "none").
            let began = self
                .head_started
                .compare_exchange(0, now + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if began {
                self.head_begun.notify_one();
            }
        }
    }
}

/// Resolves with the reason once the connection must be closed: a head not complete
/// `header_read_timeout` after its first byte, or no request in flight and no I/O for
/// `idle_timeout`. Never while a request is in flight.
async fn watch_timeouts(activity: &Activity, options: &ServeOptions) -> &'static str {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    loop {
        let now = activity.now();
        let (deadline, reason) = if activity.in_flight.load(Ordering::SeqCst) > 0 {
            (
                now + ms(options.idle_timeout.min(options.header_read_timeout)),
                "",
            )
        } else {
            match activity.head_started.load(Ordering::SeqCst) {
                0 => (
                    activity.last.load(Ordering::SeqCst) + ms(options.idle_timeout),
                    "idle",
                ),
                started => (
                    started - 1 + ms(options.header_read_timeout),
                    "header_timeout",
                ),
            }
        };
        if now >= deadline && !reason.is_empty() {
            return reason;
        }
        let wait = Duration::from_millis(deadline.saturating_sub(now).max(10));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = activity.head_begun.notified() => {}
        }
    }
}

/// A TCP stream that records its reads and writes in an [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per peer address, capped. Hand-written: a counter map is all it takes, and
/// the rate limiters of [`crate::resilience`] count requests, not open connections.
#[derive(Clone, Debug)]
pub struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    /// A cap of `max` open connections per address.
    pub fn new(max: usize) -> PerIp {
        PerIp {
            max,
            open: Arc::default(),
        }
    }

    /// Takes a slot for `ip`, or `None` when it holds `max` already. The slot is released when
    /// the guard is dropped.
    pub fn acquire(&self, ip: IpAddr) -> Option<PerIpGuard> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One slot of a [`PerIp`] cap.
#[derive(Debug)]
pub struct PerIpGuard {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_caps_each_address_and_releases_on_drop() {
        let caps = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let a1 = caps.acquire(a).expect("first");
        let _a2 = caps.acquire(a).expect("second");
        assert!(caps.acquire(a).is_none(), "third refused");
        assert!(caps.acquire(b).is_some(), "another address is not affected");
        drop(a1);
        assert!(caps.acquire(a).is_some(), "a slot came back");
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_in_reserve() {
        assert_eq!(effective_max_connections(4096, 1_048_576), 4096);
        assert_eq!(effective_max_connections(4096, 1024), 1024 - 256);
        assert_eq!(effective_max_connections(4096, 10), 1);
    }
}
