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

mod batch;
pub mod fanout;
pub mod market;
mod matcher;
mod metrics;
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
            Refusal::DatabaseDown(m) => ApiError::DependencyUnavailable(m),
            Refusal::Expired => ApiError::Status {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout",
                message: "the command was not executed: it waited too long for the matcher".into(),
            },
            Refusal::Unavailable(m) => ApiError::Unavailable(m),
            Refusal::Internal(m) => ApiError::Internal(anyhow::anyhow!(m)),
        }
    }
}

/// What a command asks the matcher to do.
#[derive(Debug, Clone)]
pub(crate) enum Request {
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
}

impl Request {
    fn symbol(&self) -> &str {
        match self {
            Request::Place { order, .. } => &order.symbol,
            Request::Cancel { symbol, .. }
            | Request::SetStatus { symbol, .. }
            | Request::Credit { symbol, .. } => symbol,
        }
    }

    /// The account whose balances the command uses, if any.
    fn account(&self) -> Option<i64> {
        match self {
            Request::Place { account, .. } | Request::Cancel { account, .. } => Some(*account),
            Request::SetStatus { .. } | Request::Credit { .. } => None,
        }
    }
}

/// What a command produced.
#[derive(Debug, Clone)]
pub(crate) enum Done {
    /// The order after placing or cancelling.
    Order(Box<OrderView>),
    /// A status change was applied.
    Status,
    /// An asset deposit was applied; the new position quantity.
    Credited(Qty),
}

/// The matcher's answer to one command.
pub(crate) type Reply = Result<Done, Refusal>;

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
}

impl Default for TradingOptions {
    fn default() -> Self {
        TradingOptions {
            request_timeout: std::time::Duration::from_secs(30),
            db_timeout: std::time::Duration::from_secs(2),
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

/// Handle to the trading service; cheap to clone.
#[derive(Clone)]
pub struct Trading {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<MarketEvent>>,
    instruments: Arc<BTreeMap<String, Instrument>>,
    store: Store,
    metrics: TradingMetrics,
    origin: Arc<str>,
    database_down: Arc<std::sync::atomic::AtomicBool>,
    options: TradingOptions,
}

impl Trading {
    /// Starts the matcher task for `instruments` on `store`.
    pub fn start(
        store: Store,
        instruments: Vec<Instrument>,
        metrics: TradingMetrics,
        options: TradingOptions,
    ) -> anyhow::Result<Trading> {
        let engine =
            Engine::new(instruments.clone()).map_err(|e| anyhow::anyhow!("INSTRUMENTS: {e}"))?;
        let (commands, rx) = mpsc::channel(QUEUE_DEPTH);
        let (events, _) = broadcast::channel(BROADCAST_DEPTH);
        let origin: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let database_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let matcher = matcher::Matcher::new(
            engine,
            store.matcher_pool(options.db_timeout),
            rx,
            events.clone(),
            metrics.clone(),
            origin.to_string(),
            database_down.clone(),
            options.db_timeout,
        );
        tokio::spawn(matcher.run());
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
        })
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

    /// Whether the matcher currently sees its database as unreachable (orders are refused
    /// at once with 503 until it answers again).
    pub fn database_down(&self) -> bool {
        self.database_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sends a command and waits for its answer. A command the matcher never started is
    /// dropped at its deadline and answered 408; one it started is waited for (its COMMIT may be
    /// in flight) and answered 504 `outcome_unknown` only if even that takes too long.
    async fn call(&self, request: Request) -> Result<Done, ApiError> {
        if self.database_down() {
            return Err(ApiError::DependencyUnavailable(
                "the database is unreachable; nothing was executed, retry later".into(),
            ));
        }
        let (queue_wait, grace) = self.options.waits();
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
        let deadline = tokio::time::Instant::now() + queue_wait;
        self.commands
            .try_send(Command {
                request,
                reply,
                ticket: ticket.clone(),
                deadline,
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
            Err(_) if ticket.abandon() => return Err(Refusal::Expired.into()),
            Err(_) => match tokio::time::timeout(grace, &mut rx).await {
                Ok(answer) => answer,
                Err(_) => {
                    self.metrics.outcome_unknown.inc();
                    return Err(ApiError::Status {
                        status: axum::http::StatusCode::GATEWAY_TIMEOUT,
                        code: "outcome_unknown",
                        message:
                            "the command reached the database but its outcome is not known yet; \
                                  look the order up (GET /api/v1/orders?…, or retry with the same \
                                  client_order_id, which never executes twice)"
                                .into(),
                    });
                }
            },
        };
        answer
            .map_err(|_| ApiError::Unavailable("the matcher stopped before answering".into()))?
            .map_err(ApiError::from)
    }

    /// Places an order for `account`; returns once its effects are committed.
    pub async fn place(
        &self,
        account: i64,
        order: PlaceOrder,
        request_id: Option<String>,
    ) -> Result<OrderView, ApiError> {
        if let Some(id) = &order.client_order_id
            && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ApiError::Unprocessable {
                code: "invalidClientOrderId",
                message: "client_order_id must be 1 to 64 printable ASCII characters".into(),
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
        if !order.is_open() {
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
