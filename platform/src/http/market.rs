//! Public market data: instruments, book depth, recent trades and ticker (the WebSocket stream
//! is in [`super::ws`]).
//! REST reads come from the database, so every replica answers the same, through the two-level
//! market-data cache ([`crate::resilience::market_cache`]) that trades invalidate.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tradeplane_engine::instrument::{Instrument, TradingStatus};
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::Side;

use super::extract::{AdminUser, ApiPath, ApiQuery, RequestId, SymbolPath};
use super::orders::page_size;
use crate::error::ApiError;
use crate::input::Validate;
use crate::state::AppState;
use crate::trading::persist_status;
use crate::trading::views::TradeView;

/// An instrument with its current status.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstrumentView {
    /// Static definition (tick, lot, limits, band).
    #[serde(flatten)]
    pub instrument: Instrument,
}

pub(super) fn instrument(state: &AppState, symbol: &str) -> Result<Instrument, ApiError> {
    state
        .trading
        .instruments()
        .get(symbol)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no instrument {symbol}")))
}

/// A JSON response from already serialized bytes (a cached read).
fn json_bytes(bytes: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// Serializes a fresh read for the cache.
pub(super) fn to_bytes<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Runs a market-data read through the cache (and the database breaker on a miss).
pub(super) async fn cached<F, Fut>(
    state: &AppState,
    cache: &'static str,
    symbol: Option<&str>,
    suffix: &str,
    load: F,
) -> Result<Response, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Bytes, ApiError>>,
{
    let r = &state.resilience;
    // A miss is an idempotent read: retry its blips, within the retry budget.
    let load = || crate::resilience::retry::idempotent(&r.retry_budget, &load);
    let bytes = r
        .market
        .get_or_load(cache, symbol, suffix, &r.db_breaker, load)
        .await?;
    Ok(json_bytes(bytes))
}

/// `GET /api/v1/instruments`: every instrument with its current trading status.
#[utoipa::path(
    get,
    path = "/instruments",
    tag = "market",
    operation_id = "listInstruments",
    summary = "Every instrument with its trading status",
    responses((status = 200, description = "Instruments.", body = Vec<super::openapi::Instrument>))
)]
pub async fn instruments(State(state): State<AppState>) -> Result<Response, ApiError> {
    cached(&state, "instruments", None, "all", || async {
        let mut out = Vec::new();
        for i in state.trading.instruments().values() {
            let mut i = i.clone();
            if let Some(row) = state.store.symbol_state(&i.symbol).await? {
                i.status = persist_status(&row.status);
            }
            out.push(i);
        }
        to_bytes(&out)
    })
    .await
}

/// One aggregated price level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"price": "59990", "qty": "0.5", "orders": 2}))]
pub struct Level {
    /// Price.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub price: Price,
    /// Total resting quantity.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub qty: Qty,
    /// Number of orders.
    pub orders: i64,
}

/// Book snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Book, example = json!({"symbol": "BTC-USD", "md_seq": 42, "bids": [{"price": "59990", "qty": "0.5", "orders": 2}], "asks": [{"price": "60010", "qty": "0.25", "orders": 1}]}))]
pub struct BookView {
    /// Instrument.
    #[schema(value_type = super::openapi::Symbol)]
    pub symbol: String,
    /// Market-data sequence the snapshot is at least as new as.
    pub md_seq: i64,
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
}

/// Query of the book endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BookQuery {
    /// Levels per side, 1 to 500 (default 20; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 20, nullable = false)]
    pub depth: Option<u32>,
}

impl Validate for BookQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(()) // an integer
    }
}

impl Validate for TradesQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(()) // an integer
    }
}

pub(super) async fn book_view(
    state: &AppState,
    symbol: &str,
    depth: u32,
) -> Result<BookView, ApiError> {
    // md_seq first: the levels read after it are at least that new, and book events are
    // absolute levels, so replaying the ones in between is harmless.
    let md_seq = state
        .store
        .symbol_state(symbol)
        .await?
        .map(|r| r.md_seq)
        .unwrap_or(0);
    let level = |(p, q, n): (i64, i64, i64)| Level {
        price: Price::from_raw(p),
        qty: Qty::from_raw(q),
        orders: n,
    };
    Ok(BookView {
        symbol: symbol.to_owned(),
        md_seq,
        bids: state
            .store
            .depth_side(symbol, Side::Buy, depth)
            .await?
            .into_iter()
            .map(level)
            .collect(),
        asks: state
            .store
            .depth_side(symbol, Side::Sell, depth)
            .await?
            .into_iter()
            .map(level)
            .collect(),
    })
}

/// `GET /api/v1/markets/{symbol}/book`: aggregated depth.
#[utoipa::path(
    get,
    path = "/markets/{symbol}/book",
    tag = "market",
    operation_id = "getBook",
    summary = "Aggregated book depth",
    params(SymbolPath, BookQuery),
    responses(
        (status = 200, description = "The book.", body = BookView),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`, `invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn book(
    State(state): State<AppState>,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
    ApiQuery(q): ApiQuery<BookQuery>,
) -> Result<Response, ApiError> {
    instrument(&state, &symbol)?;
    let depth = page_size("depth", Some(q.depth.unwrap_or(20)))?;
    cached(
        &state,
        "book",
        Some(&symbol),
        &depth.to_string(),
        || async { to_bytes(&book_view(&state, &symbol, depth).await?) },
    )
    .await
}

/// Query of the trades endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    /// Page size, 1 to 500 (default 100; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 100, nullable = false)]
    pub limit: Option<u32>,
}

/// `GET /api/v1/markets/{symbol}/trades`: most recent trades, newest first.
#[utoipa::path(
    get,
    path = "/markets/{symbol}/trades",
    tag = "market",
    operation_id = "listTrades",
    summary = "Recent public trades, newest first",
    params(SymbolPath, TradesQuery),
    responses(
        (status = 200, description = "Trades.", body = Vec<TradeView>),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`, `invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn trades(
    State(state): State<AppState>,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
    ApiQuery(q): ApiQuery<TradesQuery>,
) -> Result<Response, ApiError> {
    instrument(&state, &symbol)?;
    let limit = page_size("limit", q.limit)?;
    cached(
        &state,
        "trades",
        Some(&symbol),
        &limit.to_string(),
        || async {
            let trades: Vec<TradeView> = state.store.recent_trades(&symbol, limit).await?;
            to_bytes(&trades)
        },
    )
    .await
}

/// Ticker of one symbol.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"symbol": "BTC-USD", "status": "open", "last": "60000", "bid": "59990", "ask": "60010", "volume_24h": "12.5", "open_24h": "59000", "high_24h": "60500", "low_24h": "58800", "change_24h": "1000"}))]
pub struct Ticker {
    /// Instrument.
    #[schema(value_type = super::openapi::Symbol)]
    pub symbol: String,
    /// `open` or `halted`.
    #[schema(value_type = super::openapi::TradingStatus)]
    pub status: TradingStatus,
    /// Last trade price (null before the first trade).
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub last: Option<Price>,
    /// Best bid (null when no bids rest).
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub bid: Option<Price>,
    /// Best ask (null when no asks rest).
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub ask: Option<Price>,
    /// Quantity traded in the last 24 hours.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub volume_24h: Qty,
    /// Price of the first trade of the last 24 hours.
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub open_24h: Option<Price>,
    /// Highest trade price of the last 24 hours.
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub high_24h: Option<Price>,
    /// Lowest trade price of the last 24 hours.
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub low_24h: Option<Price>,
    /// `last - open_24h` (negative when the price fell).
    #[schema(value_type = Option<super::openapi::Decimal>, required = true)]
    pub change_24h: Option<Price>,
}

/// `GET /api/v1/markets/{symbol}/ticker`.
#[utoipa::path(
    get,
    path = "/markets/{symbol}/ticker",
    tag = "market",
    operation_id = "getTicker",
    summary = "Last price, best bid and ask, 24 h volume",
    params(SymbolPath),
    responses(
        (status = 200, description = "The ticker.", body = Ticker),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`.", body = crate::error::ErrorBody),
    )
)]
pub async fn ticker(
    State(state): State<AppState>,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
) -> Result<Response, ApiError> {
    let inst = instrument(&state, &symbol)?;
    cached(&state, "ticker", Some(&symbol), "", || {
        ticker_view(&state, inst.clone(), symbol.clone())
    })
    .await
}

async fn ticker_view(
    state: &AppState,
    inst: Instrument,
    symbol: String,
) -> Result<Bytes, ApiError> {
    let row = state.store.symbol_state(&symbol).await?;
    let best = |levels: Vec<(i64, i64, i64)>| levels.first().map(|l| Price::from_raw(l.0));
    let day_ago = Utc::now() - chrono::Duration::hours(24);
    let day = state.store.window_stats(&symbol, day_ago).await?;
    let last = row.as_ref().and_then(|r| r.last_trade).map(|t| t.0);
    to_bytes(&Ticker {
        open_24h: day.map(|d| Price::from_raw(d.open)),
        high_24h: day.map(|d| Price::from_raw(d.high)),
        low_24h: day.map(|d| Price::from_raw(d.low)),
        change_24h: last
            .zip(day)
            .map(|(last, d)| Price::from_raw(last - d.open)),
        status: row
            .as_ref()
            .map(|r| persist_status(&r.status))
            .unwrap_or(inst.status),
        last: last.map(Price::from_raw),
        bid: best(state.store.depth_side(&symbol, Side::Buy, 1).await?),
        ask: best(state.store.depth_side(&symbol, Side::Sell, 1).await?),
        volume_24h: Qty::from_raw(state.store.volume_since(&symbol, day_ago).await?),
        symbol,
    })
}

/// The answer of a halt or resume.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"symbol": "BTC-USD", "status": "halted"}))]
pub struct MarketStatusChange {
    /// Instrument.
    #[schema(value_type = super::openapi::Symbol)]
    pub symbol: String,
    /// The new status.
    #[schema(value_type = super::openapi::TradingStatus)]
    pub status: TradingStatus,
}

/// Sets a symbol's trading status as `uid` (halt and resume differ only in the status).
async fn set_status(
    state: &AppState,
    uid: i64,
    request_id: Option<String>,
    symbol: String,
    status: TradingStatus,
) -> Result<Json<MarketStatusChange>, ApiError> {
    state
        .trading
        .set_status(&symbol, status, format!("user:{uid}"), request_id)
        .await?;
    Ok(Json(MarketStatusChange { symbol, status }))
}

/// `POST /api/v1/admin/markets/{symbol}/halt`.
#[utoipa::path(
    post,
    path = "/admin/markets/{symbol}/halt",
    tag = "admin",
    operation_id = "haltMarket",
    summary = "Halt a symbol",
    description = "Admin only. New orders on the symbol are refused with `symbolHalted`; cancels still work; a `status` event is published. Audited.",
    params(SymbolPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The new status.", body = MarketStatusChange),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`.", body = crate::error::ErrorBody),
    )
)]
pub async fn halt(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
) -> Result<Json<MarketStatusChange>, ApiError> {
    set_status(&state, admin.uid, request_id, symbol, TradingStatus::Halted).await
}

/// `POST /api/v1/admin/markets/{symbol}/resume`.
#[utoipa::path(
    post,
    path = "/admin/markets/{symbol}/resume",
    tag = "admin",
    operation_id = "resumeMarket",
    summary = "Resume a halted symbol",
    description = "Admin only. A `status` event is published. Audited.",
    params(SymbolPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The new status.", body = MarketStatusChange),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`.", body = crate::error::ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
) -> Result<Json<MarketStatusChange>, ApiError> {
    set_status(&state, admin.uid, request_id, symbol, TradingStatus::Open).await
}
