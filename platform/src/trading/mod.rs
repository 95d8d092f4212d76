//! The trading service: runs the pure [`tradeplane_engine::Engine`] against the database.
//!
//! One matcher task per process owns the engine. Requests send it [`Command`]s over a channel;
//! it drains whatever is queued (up to [`MAX_BATCH`]) and handles the whole batch in **one**
//! database transaction with a fixed number of set-based statements ([`batch`] plans the rows in
//! memory, [`crate::store::matching`] writes them), so throughput comes from batching rather than
//! one commit per order. An order is acknowledged only after that transaction commits; if the
//! commit fails the engine's batch is rolled back too, so memory never runs ahead of the
//! database.
//!
//! Every command carries a deadline and a ticket: the matcher only starts commands whose client
//! is still waiting, and a client is told "not executed" only for a command the matcher never
//! started. When a COMMIT's reply is lost, the matcher asks PostgreSQL whether that transaction
//! committed before it does anything else (see [`matcher`]).
//!
//! Several replicas can share one PostgreSQL: each batch locks the rows of the symbols it
//! touches (`SELECT … FOR UPDATE` on `symbols`) and, at the end, every account it changes, in id
//! order. A replica whose in-memory sequence for a symbol differs from the stored one reloads
//! that symbol's book before matching, and one whose remembered account version differs reloads
//! that account. With SQLite the platform runs as a single replica.

pub mod approvals;
mod batch;
pub mod fanout;
pub mod forward;
pub mod market;
mod matcher;
mod metrics;
pub mod ownership;
pub use crate::store::views;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tradeplane_engine::Engine;
use tradeplane_engine::instrument::{Instrument, TradingStatus};
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::{OrderType, Side, TimeInForce};

pub use crate::store::market::status_from_str as persist_status;
pub use market::MarketEvent;
pub use metrics::TradingMetrics;
pub use views::OrderView;

use crate::error::ApiError;
use crate::store::Store;

/// Most commands handled in one transaction.
pub const MAX_BATCH: usize = 256;
/// Commands waiting for the matcher before new requests are refused with 503.
const QUEUE_DEPTH: usize = 4096;
/// Market-data events buffered per subscriber before it counts as too slow.
const BROADCAST_DEPTH: usize = 4096;

/// Body of `POST /api/v1/orders`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "60000", "qty": "0.01", "tif": "GTC", "client_order_id": "my-order-0001"}))]
pub struct PlaceOrder {
    /// Instrument symbol, e.g. `BTC-USD`.
    #[schema(value_type = crate::http::openapi::Symbol)]
    pub symbol: String,
    /// `buy` or `sell`.
    #[schema(value_type = crate::http::openapi::Side)]
    pub side: Side,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::http::openapi::OrderType)]
    pub order_type: OrderType,
    /// Limit price as a decimal string; required for limit orders, absent for market orders.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::UnsignedDecimal>)]
    pub price: Option<Price>,
    /// Quantity as a decimal string.
    #[schema(value_type = crate::http::openapi::UnsignedDecimal)]
    pub qty: Qty,
    /// `GTC` (default for limit), `IOC` (default for market) or `FOK`.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::TimeInForce>)]
    pub tif: Option<TimeInForce>,
    /// Caller's id for idempotent retries: the same id on the same account returns the
    /// original order instead of placing a new one. 1 to 64 visible ASCII characters (no space).
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::ClientOrderId>)]
    pub client_order_id: Option<String>,
}

/// A rejection the matcher reports; cloneable so duplicate requests in one batch share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A rule refused it (422 with the rule's code).
    Rule {
        /// Stable code from the engine, e.g. `insufficientCash`.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// No such order for this account (404).
    NotFound(String),
    /// The order exists but cannot be cancelled (409).
    Conflict(String),
    /// The `client_order_id` names a different order (409 `idempotency_conflict`).
    IdempotencyConflict(String),
    /// The submitting account no longer exists (401).
    AccountGone,
    /// The database is unreachable; the command was not executed (503
    /// `dependency_unavailable`).
    DatabaseDown(String),
    /// The command's deadline passed before the matcher started it; it was not executed (408).
    Expired,
    /// Nothing was applied, for a reason the client cannot fix by retrying at once (503).
    Unavailable(String),
    /// An unexpected failure (500); nothing was applied, details are in the log.
    Internal(String),
    /// This replica does not own the command's symbol (any more): it is routed again, and never
    /// reaches a client unless the handover outlasts the deadline (503).
    NotOwner,
    /// A forwarded command's reply was lost; it may have executed (504 `outcome_unknown`).
    OutcomeUnknown,
    /// The order is not held for approval (any more): decided, cancelled, expired (409
    /// `order_not_pending`).
    NotPending(String),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        use axum::http::StatusCode;
        match r {
            Refusal::Rule { code, message } => ApiError::Unprocessable { code, message },
            Refusal::NotFound(m) => ApiError::NotFound(m),
            Refusal::Conflict(m) => ApiError::Conflict(m),
            Refusal::IdempotencyConflict(message) => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "idempotency_conflict",
                message,
            },
            Refusal::AccountGone => {
                ApiError::Unauthorized("the account of this token no longer exists".into())
            }
            // The same answer as `DependencyUnavailable`, without feeding the HTTP database
            // breaker: the matcher already refuses at once while its database is down and
            // probes it on its own cadence, so orders flow again as soon as it answers, instead
            // of waiting out the breaker's open period (BREAKER_OPEN_SECONDS).
            Refusal::DatabaseDown(message) => ApiError::Status {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "dependency_unavailable",
                message,
            },
            Refusal::Expired => ApiError::Status {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout",
                message: "the command was not executed: it waited too long for the matcher".into(),
            },
            Refusal::Unavailable(m) => ApiError::Unavailable(m),
            Refusal::Internal(m) => ApiError::Internal(anyhow::anyhow!(m)),
            Refusal::NotOwner => ApiError::Unavailable(
                "the symbol is moving to another replica; nothing was executed, retry".into(),
            ),
            Refusal::OutcomeUnknown => outcome_unknown(),
            Refusal::NotPending(message) => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "order_not_pending",
                message,
            },
        }
    }
}

/// What a command asks the matcher to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Place {
        account: i64,
        order: PlaceOrder,
        request_id: Option<String>,
    },
    Cancel {
        account: i64,
        symbol: String,
        order_id: i64,
        /// The order as read before the cancel was sent; the reply is built from it.
        view: Box<OrderView>,
        request_id: Option<String>,
    },
    SetStatus {
        symbol: String,
        status: TradingStatus,
        actor: String,
        request_id: Option<String>,
    },
    /// Credits instrument units to an account (an asset deposit), at `cost` per unit.
    Credit {
        account: i64,
        symbol: String,
        qty: Qty,
        cost: Price,
        actor: String,
        request_id: Option<String>,
    },
    /// Approves an order held for approval (admin `admin`, a user id): it enters matching
    /// now, risk-checked again ([`approvals`]).
    Approve {
        order_id: i64,
        /// The held order as read before the command was sent.
        view: Box<OrderView>,
        admin: i64,
        request_id: Option<String>,
    },
    /// Rejects a held order with the admin's reason; its reservation is released.
    Reject {
        order_id: i64,
        view: Box<OrderView>,
        admin: i64,
        reason: String,
        request_id: Option<String>,
    },
    /// Releases a held order past its expiry (the sweeper of the symbol's owner).
    Expire { order_id: i64, view: Box<OrderView> },
    /// Answered once the matcher has run every command queued before it (a handover's
    /// barrier). Never forwarded.
    #[serde(skip)]
    Barrier,
}

impl Request {
    fn symbol(&self) -> &str {
        match self {
            Request::Place { order, .. } => &order.symbol,
            Request::Cancel { symbol, .. }
            | Request::SetStatus { symbol, .. }
            | Request::Credit { symbol, .. } => symbol,
            Request::Approve { view, .. }
            | Request::Reject { view, .. }
            | Request::Expire { view, .. } => &view.symbol,
            Request::Barrier => "",
        }
    }

    /// The account whose balances the command uses, if any.
    fn account(&self) -> Option<i64> {
        match self {
            Request::Place { account, .. } | Request::Cancel { account, .. } => Some(*account),
            // The held order's owner: its reservation is released, its cash may trade.
            Request::Approve { view, .. }
            | Request::Reject { view, .. }
            | Request::Expire { view, .. } => Some(view.account_id),
            Request::SetStatus { .. } | Request::Credit { .. } | Request::Barrier => None,
        }
    }

    fn request_id(&self) -> Option<&str> {
        match self {
            Request::Place { request_id, .. }
            | Request::Cancel { request_id, .. }
            | Request::SetStatus { request_id, .. }
            | Request::Credit { request_id, .. }
            | Request::Approve { request_id, .. }
            | Request::Reject { request_id, .. } => request_id.as_deref(),
            Request::Expire { .. } | Request::Barrier => None,
        }
    }
}

/// What a command produced.
#[derive(Debug, Clone)]
pub enum Done {
    /// The order after placing or cancelling.
    Order(Box<OrderView>),
    /// A status change was applied.
    Status,
    /// An asset deposit was applied; the new position quantity.
    Credited(Qty),
}

/// The matcher's answer to one command.
pub type Reply = Result<Done, Refusal>;

/// Where a command is in its life; shared by the waiting request and the matcher, so that
/// exactly one of them decides whether it runs.
mod ticket {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};

    const QUEUED: u8 = 0;
    const RUNNING: u8 = 1;
    const ABANDONED: u8 = 2;

    /// A command's state: queued, then either started by the matcher or abandoned by its client.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Ticket(Arc<AtomicU8>);

    impl Ticket {
        /// The matcher starts the command; false if its client gave up first.
        pub(crate) fn start(&self) -> bool {
            self.0
                .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        }

        /// The client gives up; false if the matcher already started the command.
        pub(crate) fn abandon(&self) -> bool {
            self.0
                .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .map_or_else(|state| state == ABANDONED, |_| true)
        }
    }
}
pub(crate) use ticket::Ticket;

/// A command, where to send its answer, and until when its client waits.
pub(crate) struct Command {
    request: Request,
    reply: oneshot::Sender<Reply>,
    ticket: Ticket,
    deadline: tokio::time::Instant,
    /// The span of the request that sent it (the batch's parent, or a link of it), and the span
    /// of its wait in the queue, closed when the matcher takes it; disabled spans without
    /// tracing.
    trace: Traced,
}

/// A command's spans (see [`Command`]).
pub(crate) struct Traced {
    origin: tracing::Span,
    wait: tracing::Span,
}

impl Traced {
    /// The current span, and a queue-wait span under it.
    fn here() -> Traced {
        if !crate::telemetry::otel::enabled() {
            return Traced::none();
        }
        let origin = tracing::Span::current();
        let wait = tracing::info_span!(parent: &origin, "matcher.queue_wait");
        Traced { origin, wait }
    }

    fn none() -> Traced {
        Traced {
            origin: tracing::Span::none(),
            wait: tracing::Span::none(),
        }
    }
}

/// Timing of the order path, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TradingOptions {
    /// How long a request may take in all (`REQUEST_TIMEOUT_SECONDS`): a command's deadline is
    /// set early enough that its client gets the matcher's own answer before this expires.
    pub request_timeout: std::time::Duration,
    /// Bound on the matcher's database calls (`MATCHER_DB_TIMEOUT_MS`): connecting, a batch's
    /// statements, its COMMIT.
    pub db_timeout: std::time::Duration,
    /// How long an order waits for approval before it expires (`APPROVAL_TIMEOUT_SECONDS`).
    pub approval_timeout: std::time::Duration,
    /// How often expired holds are looked for (`APPROVAL_SWEEP_INTERVAL_SECONDS`).
    pub approval_sweep_interval: std::time::Duration,
}

impl Default for TradingOptions {
    fn default() -> Self {
        TradingOptions {
            request_timeout: std::time::Duration::from_secs(30),
            db_timeout: std::time::Duration::from_secs(2),
            approval_timeout: std::time::Duration::from_secs(3600),
            approval_sweep_interval: std::time::Duration::from_secs(10),
        }
    }
}

impl TradingOptions {
    /// How long a queued command may wait before it is dropped unexecuted, and how long its
    /// client then waits for a command already started (its COMMIT's outcome).
    fn waits(&self) -> (std::time::Duration, std::time::Duration) {
        let grace = self.db_timeout * 2 + std::time::Duration::from_millis(500);
        let queue = self
            .request_timeout
            .saturating_sub(grace + std::time::Duration::from_millis(500))
            .max(std::time::Duration::from_millis(500));
        (queue, grace)
    }
}

/// 504 `outcome_unknown`: the command may have executed.
fn outcome_unknown() -> ApiError {
    ApiError::Status {
        status: axum::http::StatusCode::GATEWAY_TIMEOUT,
        code: "outcome_unknown",
        message: "the command reached the matcher but its outcome is not known yet; look the \
                  order up (GET /api/v1/orders), or retry with the same client_order_id, which \
                  never executes twice"
            .into(),
    }
}

/// The refusal an error of [`Trading::local`] stands for, to answer a forwarding replica.
fn refusal_of(e: ApiError) -> Refusal {
    match e {
        ApiError::DependencyUnavailable(m) => Refusal::DatabaseDown(m),
        ApiError::Overloaded(m) | ApiError::Unavailable(m) => Refusal::Unavailable(m),
        ApiError::Status {
            code: "request_timeout",
            ..
        } => Refusal::Expired,
        ApiError::Status {
            code: "idempotency_conflict",
            message,
            ..
        } => Refusal::IdempotencyConflict(message),
        ApiError::Unprocessable { code, message } => Refusal::Rule { code, message },
        ApiError::NotFound(m) => Refusal::NotFound(m),
        ApiError::Conflict(m) => Refusal::Conflict(m),
        ApiError::Unauthorized(_) => Refusal::AccountGone,
        ApiError::Status {
            code: "outcome_unknown",
            ..
        } => Refusal::OutcomeUnknown,
        ApiError::Status {
            code: "order_not_pending",
            message,
            ..
        } => Refusal::NotPending(message),
        ApiError::Status {
            code: "dependency_unavailable",
            message,
            ..
        } => Refusal::DatabaseDown(message),
        other => Refusal::Internal(other.to_string()),
    }
}

/// Handle to the trading service; cheap to clone.
#[derive(Clone)]
pub struct Trading {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<MarketEvent>>,
    instruments: Arc<BTreeMap<String, Instrument>>,
    store: Store,
    metrics: TradingMetrics,
    origin: Arc<str>,
    database_down: Arc<matcher::DbFlag>,
    options: TradingOptions,
    ownership: ownership::Ownership,
    forwarder: Option<forward::Forwarder>,
    /// Cancelled when this replica starts handing its symbols over (a graceful shutdown).
    leaving: tokio_util::sync::CancellationToken,
}

impl Trading {
    /// Starts the matcher task for `instruments` on `store`.
    pub fn start(
        store: Store,
        instruments: Vec<Instrument>,
        metrics: TradingMetrics,
        options: TradingOptions,
        ownership: ownership::Ownership,
        forwarder: Option<forward::Forwarder>,
    ) -> anyhow::Result<Trading> {
        let engine =
            Engine::new(instruments.clone()).map_err(|e| anyhow::anyhow!("INSTRUMENTS: {e}"))?;
        let (commands, rx) = mpsc::channel(QUEUE_DEPTH);
        let (events, _) = broadcast::channel(BROADCAST_DEPTH);
        let origin: Arc<str> = ownership.me().id.as_str().into();
        let database_down = Arc::new(matcher::DbFlag::default());
        let matcher = matcher::Matcher::new(
            engine,
            store.matcher_pool(options.db_timeout),
            rx,
            events.clone(),
            metrics.clone(),
            origin.to_string(),
            database_down.clone(),
            options.db_timeout,
            ownership.clone(),
            options.approval_timeout,
        );
        matcher::spawn(matcher)?;
        Ok(Trading {
            commands,
            events,
            instruments: Arc::new(
                instruments
                    .into_iter()
                    .map(|i| (i.symbol.clone(), i))
                    .collect(),
            ),
            store,
            metrics,
            origin,
            database_down,
            options,
            ownership,
            forwarder,
            leaving: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Starts the lease task (PostgreSQL): see [`ownership`]. It ends when `stop` fires.
    pub fn spawn_leases(
        &self,
        pool: sqlx::PgPool,
        options: ownership::LeaseOptions,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let this = self.clone();
        let symbols = self.instruments.keys().cloned().collect();
        let gauge = self.metrics.owned_symbols.clone();
        let ownership = self.ownership.clone();
        let mut changes = ownership.subscribe();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                loop {
                    gauge.set(i64::try_from(ownership.owned()).unwrap_or(i64::MAX));
                    tokio::select! {
                        () = stop.cancelled() => return,
                        r = changes.changed() => if r.is_err() { return },
                    }
                }
            }
        });
        self.ownership.spawn_leases(
            pool,
            symbols,
            options,
            move || {
                let this = this.clone();
                async move { this.barrier().await }
            },
            self.leaving.clone(),
            stop,
        );
    }

    /// Hands every symbol this replica owns over to the others, waiting up to `limit` for it
    /// (a graceful shutdown). Without leases there is nobody to hand over to.
    pub async fn hand_over_all(&self, limit: std::time::Duration) {
        if !self.ownership.is_leased() {
            return;
        }
        self.leaving.cancel();
        let mut changes = self.ownership.subscribe();
        let until = tokio::time::Instant::now() + limit;
        while self.ownership.owned() > 0 {
            if tokio::time::timeout_at(until, changes.changed())
                .await
                .is_err()
            {
                tracing::warn!(
                    owned = self.ownership.owned(),
                    "stopping before every symbol was handed over; its lease will expire"
                );
                return;
            }
        }
        tracing::info!("handed every symbol over");
    }

    /// Who matches which symbol.
    pub fn ownership(&self) -> &ownership::Ownership {
        &self.ownership
    }

    /// The forwarder (and its key), when several replicas may run.
    pub fn forwarder(&self) -> Option<&forward::Forwarder> {
        self.forwarder.as_ref()
    }

    /// Returns once the matcher has run every command queued before this call (a handover).
    pub async fn barrier(&self) {
        let (reply, rx) = oneshot::channel();
        let command = Command {
            request: Request::Barrier,
            reply,
            ticket: Ticket::default(),
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(3600),
            trace: Traced::none(),
        };
        if self.commands.send(command).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// This replica's id, stamped on the market data it publishes.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The trading metrics (the WebSocket handler keeps the subscriber gauge).
    pub fn metrics(&self) -> &TradingMetrics {
        &self.metrics
    }

    /// The configured instruments by symbol.
    pub fn instruments(&self) -> &BTreeMap<String, Instrument> {
        &self.instruments
    }

    /// Subscribes to public market data published after each commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<MarketEvent>> {
        self.events.subscribe()
    }

    /// Publishes an event received from another replica to this replica's subscribers.
    pub fn republish(&self, event: Arc<MarketEvent>) {
        let _ = self.events.send(event);
    }

    /// Resolves the next time the matcher's database answers again after being down.
    pub async fn database_back(&self) {
        self.database_down.back().await;
    }

    /// Whether the matcher currently sees its database as unreachable (orders are refused
    /// at once with 503 until it answers again).
    pub fn database_down(&self) -> bool {
        self.database_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs a command on the replica that owns its symbol: this one's matcher, or the owner's
    /// through its internal endpoint; while ownership moves (a handover, a failover) it waits
    /// for the new owner until the deadline.
    async fn call(&self, request: Request) -> Result<Done, ApiError> {
        let (queue_wait, _) = self.options.waits();
        let deadline = tokio::time::Instant::now() + queue_wait;
        let mut changes = self.ownership.subscribe();
        // Set once a forward of this order may have run (its reply was lost): from then on
        // running out of time means "outcome unknown", never "nothing was executed".
        let mut uncertain = false;
        loop {
            let reply = match self.ownership.route(request.symbol()) {
                ownership::Route::Local(_) => self.local(request.clone(), deadline).await?,
                ownership::Route::Remote(address) => self
                    .forward(&address, &request, deadline, &mut uncertain)
                    .await
                    .unwrap_or(Err(Refusal::NotOwner)),
                ownership::Route::Unknown => Err(Refusal::NotOwner),
            };
            if !matches!(reply, Err(Refusal::NotOwner)) {
                return reply.map_err(ApiError::from);
            }
            if tokio::time::Instant::now() >= deadline {
                if uncertain {
                    self.metrics.outcome_unknown.inc();
                    return Err(ApiError::from(Refusal::OutcomeUnknown));
                }
                return reply.map_err(ApiError::from);
            }
            // Wait for the next change of ownership, or a short while (the forward may just
            // have missed a takeover).
            let retry = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
            let _ = tokio::time::timeout_at(deadline.min(retry), changes.changed()).await;
        }
    }

    /// Sends `request` to the owner at `address`; `None` when it should be routed again (not
    /// delivered, or an idempotent order whose reply was lost: then `uncertain` is set).
    async fn forward(
        &self,
        address: &str,
        request: &Request,
        deadline: tokio::time::Instant,
        uncertain: &mut bool,
    ) -> Option<Reply> {
        let forwarder = self.forwarder.as_ref()?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let command = forward::Forwarded {
            request: request.clone(),
            timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        };
        self.metrics.forwarded.inc();
        match forwarder
            .send(address, &command, request.request_id())
            .await
        {
            Ok(Err(Refusal::NotOwner)) => None,
            Ok(reply) => Some(reply),
            Err(forward::ForwardError::NotSent(e)) => {
                tracing::debug!(error = %e, "forward not delivered; routing again");
                None
            }
            // An order with a client_order_id is safe to send again: whichever replica runs
            // it next finds the key if the first attempt committed (the key is looked up under
            // the symbol's lock, which a new owner only gets after the old one's batch ended).
            Err(forward::ForwardError::Unknown(e))
                if matches!(
                    request,
                    Request::Place { order, .. } if order.client_order_id.is_some()
                ) =>
            {
                tracing::info!(error = %e, "a forwarded order's reply was lost; sending it again under its client_order_id");
                *uncertain = true;
                None
            }
            Err(forward::ForwardError::Unknown(e)) => {
                tracing::warn!(error = %e, "a forwarded command's reply was lost");
                self.metrics.outcome_unknown.inc();
                Some(Err(Refusal::OutcomeUnknown))
            }
        }
    }

    /// Runs a command forwarded by another replica on this replica's matcher, never
    /// forwarding it again (the sender routes once more on [`Refusal::NotOwner`]).
    pub async fn run_forwarded(&self, command: forward::Forwarded) -> Reply {
        if matches!(command.request, Request::Barrier) {
            return Err(Refusal::Internal("barriers are not forwarded".into()));
        }
        if self.ownership.token(command.request.symbol()).is_none() {
            return Err(Refusal::NotOwner);
        }
        let (queue_wait, _) = self.options.waits();
        let wait = std::time::Duration::from_millis(command.timeout_ms).min(queue_wait);
        match self
            .local(command.request, tokio::time::Instant::now() + wait)
            .await
        {
            Ok(reply) => reply,
            Err(e) => Err(refusal_of(e)),
        }
    }

    /// Sends a command to this replica's matcher and waits for its answer. A command the
    /// matcher never started is dropped at `deadline` and answered 408; one it started is
    /// waited for (its COMMIT may be in flight) and answered 504 `outcome_unknown` only if even
    /// that takes too long.
    async fn local(
        &self,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, ApiError> {
        if self.database_down() {
            return Err(ApiError::DependencyUnavailable(
                "the database is unreachable; nothing was executed, retry later".into(),
            ));
        }
        let (_, grace) = self.options.waits();
        let (reply, mut rx) = oneshot::channel();
        let ticket = Ticket::default();
        // Dropped with the request (client gone, or the outer timeout): a command still queued
        // then never runs.
        struct AbandonOnDrop(Ticket);
        impl Drop for AbandonOnDrop {
            fn drop(&mut self) {
                self.0.abandon();
            }
        }
        let _guard = AbandonOnDrop(ticket.clone());
        self.commands
            .try_send(Command {
                request,
                reply,
                ticket: ticket.clone(),
                deadline,
                trace: Traced::here(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    ApiError::Overloaded("the matching queue is full, retry later".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Unavailable("the matcher has stopped".into())
                }
            })?;
        let answer = match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(answer) => answer,
            Err(_) if ticket.abandon() => return Ok(Err(Refusal::Expired)),
            Err(_) => match tokio::time::timeout(grace, &mut rx).await {
                Ok(answer) => answer,
                Err(_) => {
                    self.metrics.outcome_unknown.inc();
                    return Err(outcome_unknown());
                }
            },
        };
        answer.map_err(|_| ApiError::Unavailable("the matcher stopped before answering".into()))
    }

    /// Places an order for `account`; returns once its effects are committed.
    pub async fn place(
        &self,
        account: i64,
        order: PlaceOrder,
        request_id: Option<String>,
    ) -> Result<OrderView, ApiError> {
        if let Some(id) = &order.client_order_id {
            crate::input::client_order_id("client_order_id", id)?;
        }
        if !self.instruments.contains_key(&order.symbol) {
            // No replica owns a symbol that does not exist: refuse it here, with the audit
            // record the matcher would have written.
            let shown: String = order.symbol.chars().take(32).collect();
            let event = crate::store::NewAuditEvent {
                actor: format!("account:{account}"),
                action: "order.rejected".into(),
                subject: None,
                request_id,
                details: serde_json::json!({ "code": "unknownSymbol", "symbol": shown }),
            };
            if let Err(e) = self.store.append_audit(&event).await {
                tracing::warn!(error = %e, "could not record a rejected order in the audit trail");
            }
            return Err(ApiError::Unprocessable {
                code: "unknownSymbol",
                message: format!("unknown symbol {shown:?}"),
            });
        }
        match self
            .call(Request::Place {
                account,
                order,
                request_id,
            })
            .await?
        {
            Done::Order(view) => Ok(*view),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "matcher answered a place with something else"
            ))),
        }
    }

    /// Cancels a resting order of `account`.
    pub async fn cancel(
        &self,
        account: i64,
        order_id: i64,
        request_id: Option<String>,
    ) -> Result<OrderView, ApiError> {
        let order = self
            .store
            .order(order_id)
            .await?
            .filter(|o| o.account_id == account)
            .ok_or_else(|| ApiError::NotFound(format!("no order {order_id}")))?;
        if !order.is_open() && order.status != crate::store::market::PENDING_APPROVAL {
            return Err(ApiError::Conflict(format!(
                "order {order_id} is {} and cannot be cancelled",
                order.status
            )));
        }
        match self
            .call(Request::Cancel {
                account,
                symbol: order.symbol.clone(),
                order_id,
                view: Box::new(order),
                request_id,
            })
            .await?
        {
            Done::Order(view) => Ok(*view),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "matcher answered a cancel with something else"
            ))),
        }
    }

    /// Credits `qty` units of `symbol` to an account at `cost` per unit (an asset deposit).
    /// Positions change only under the symbol's lock, so this goes through the matcher.
    pub async fn credit(
        &self,
        account: i64,
        symbol: &str,
        qty: Qty,
        cost: Price,
        actor: String,
        request_id: Option<String>,
    ) -> Result<Qty, ApiError> {
        let inst = self
            .instruments
            .get(symbol)
            .ok_or_else(|| ApiError::NotFound(format!("no instrument {symbol}")))?;
        if qty.raw() <= 0 || !qty.is_multiple_of(inst.lot_size) {
            return Err(ApiError::Unprocessable {
                code: "invalidQuantity",
                message: format!(
                    "quantity must be positive and a multiple of the lot size {}",
                    inst.lot_size
                ),
            });
        }
        if cost.raw() < 0 {
            return Err(ApiError::Unprocessable {
                code: "invalidPrice",
                message: "cost must not be negative".into(),
            });
        }
        if i64::try_from(tradeplane_engine::num::notional(cost, qty).raw()).is_err() {
            return Err(ApiError::Unprocessable {
                code: "amountTooLarge",
                message: format!(
                    "the cost of this deposit ({qty} × {cost}) does not fit in an account"
                ),
            });
        }
        match self
            .call(Request::Credit {
                account,
                symbol: symbol.to_owned(),
                qty,
                cost,
                actor,
                request_id,
            })
            .await?
        {
            Done::Credited(qty) => Ok(qty),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "matcher answered a credit with something else"
            ))),
        }
    }

    /// Halts or resumes a symbol (admin).
    pub async fn set_status(
        &self,
        symbol: &str,
        status: TradingStatus,
        actor: String,
        request_id: Option<String>,
    ) -> Result<(), ApiError> {
        if !self.instruments.contains_key(symbol) {
            return Err(ApiError::NotFound(format!("no instrument {symbol}")));
        }
        self.call(Request::SetStatus {
            symbol: symbol.to_owned(),
            status,
            actor,
            request_id,
        })
        .await
        .map(|_| ())
    }
}
