//! The trading service: runs the pure [`tradeplane_engine::Engine`] against the database.
//!
//! One matcher task per process owns the engine. Requests send it [`Command`]s over a channel;
//! it drains whatever is queued (up to [`MAX_BATCH`]) and handles the whole batch in **one**
//! database transaction, so throughput comes from batching rather than one commit per order.
//! An order is acknowledged only after that transaction commits; if the commit fails the
//! engine's batch is rolled back too, so memory never runs ahead of the database.
//!
//! Several replicas can share one PostgreSQL: each batch locks the rows of the symbols it
//! touches (`SELECT … FOR UPDATE` on `symbols`), and a replica whose in-memory sequence for a
//! symbol differs from the stored one reloads that symbol's book before matching. With SQLite
//! the platform runs as a single replica.

pub mod fanout;
pub mod market;
mod matcher;
mod metrics;
mod persist;
pub mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tradeplane_engine::Engine;
use tradeplane_engine::instrument::{Instrument, TradingStatus};
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::{OrderType, Side, TimeInForce};

pub use market::MarketEvent;
pub use metrics::TradingMetrics;
pub use persist::status_from_str as persist_status;
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Instrument symbol, e.g. `BTC-USD`.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: Side,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Limit price as a decimal string; required for limit orders, absent for market orders.
    #[serde(default)]
    pub price: Option<Price>,
    /// Quantity as a decimal string.
    pub qty: Qty,
    /// `GTC` (default for limit), `IOC` (default for market) or `FOK`.
    #[serde(default)]
    pub tif: Option<TimeInForce>,
    /// Caller's id for idempotent retries: the same id on the same account returns the
    /// original order instead of placing a new one. 1 to 64 printable ASCII characters.
    #[serde(default)]
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
    /// The batch could not be committed (503); nothing was applied.
    Unavailable(String),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Rule { code, message } => ApiError::Unprocessable { code, message },
            Refusal::NotFound(m) => ApiError::NotFound(m),
            Refusal::Conflict(m) => ApiError::Conflict(m),
            Refusal::Unavailable(m) => ApiError::Unavailable(m),
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

/// A command and where to send its answer.
pub(crate) struct Command {
    request: Request,
    reply: oneshot::Sender<Reply>,
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
}

impl Trading {
    /// Starts the matcher task for `instruments` on `store`.
    pub fn start(
        store: Store,
        instruments: Vec<Instrument>,
        metrics: TradingMetrics,
    ) -> anyhow::Result<Trading> {
        let engine =
            Engine::new(instruments.clone()).map_err(|e| anyhow::anyhow!("INSTRUMENTS: {e}"))?;
        let (commands, rx) = mpsc::channel(QUEUE_DEPTH);
        let (events, _) = broadcast::channel(BROADCAST_DEPTH);
        let origin: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let matcher = matcher::Matcher::new(
            engine,
            store.clone(),
            events.clone(),
            metrics.clone(),
            origin.to_string(),
        );
        tokio::spawn(matcher.run(rx));
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

    async fn call(&self, request: Request) -> Result<Done, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .try_send(Command { request, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    ApiError::Unavailable("the matching queue is full, retry later".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Unavailable("the matcher has stopped".into())
                }
            })?;
        rx.await
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
                symbol: order.symbol,
                order_id,
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
