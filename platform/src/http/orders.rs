//! `/api/v1/orders`, `/api/v1/fills`, `/api/v1/portfolio`: the caller's own trading.
//! A user only ever sees their own orders, fills and balances: another user's order id is 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tradeplane_engine::ledger::Position;
use tradeplane_engine::num::{Cash, Price, Qty};

use super::extract::{ApiJson, ApiQuery, AuthUser, RequestId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::trading::PlaceOrder;
use crate::trading::views::{FillView, OrderView};

/// Largest page any listing returns.
pub const MAX_PAGE: u32 = 500;

/// Validates a page size (default 100).
pub fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Unprocessable {
            code: "invalid_page_size",
            message: format!("limit must be between 1 and {MAX_PAGE}"),
        })
    }
}

/// `POST /api/v1/orders`: places an order; answers once it is matched and committed.
pub async fn place(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    RequestId(request_id): RequestId,
    ApiJson(order): ApiJson<PlaceOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let view = state.trading.place(user.acct, order, request_id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Filters of the order listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    /// `new`, `partially_filled`, `filled` or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only this symbol.
    #[serde(default)]
    pub symbol: Option<String>,
    /// Page size, 1 to 500.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only orders with a smaller id (the last id of the previous page).
    #[serde(default)]
    pub before: Option<i64>,
}

/// `GET /api/v1/orders`: the caller's orders, newest first.
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let limit = page_size(q.limit)?;
    if let Some(s) = &q.status
        && !["new", "partially_filled", "filled", "cancelled"].contains(&s.as_str())
    {
        return Err(ApiError::Unprocessable {
            code: "invalid_status",
            message: "status must be new, partially_filled, filled or cancelled".into(),
        });
    }
    let orders = state
        .store
        .orders(
            user.acct,
            q.status.as_deref(),
            q.symbol.as_deref(),
            limit,
            q.before,
        )
        .await?;
    Ok(Json(orders))
}

/// `GET /api/v1/orders/{id}`.
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> Result<Json<OrderView>, ApiError> {
    state
        .store
        .order(id)
        .await?
        .filter(|o| o.account_id == user.acct)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))
}

/// `DELETE /api/v1/orders/{id}`: cancels a resting order.
pub async fn cancel(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    RequestId(request_id): RequestId,
    Path(id): Path<i64>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(state.trading.cancel(user.acct, id, request_id).await?))
}

/// Filters of the fill listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillQuery {
    /// Only this symbol.
    #[serde(default)]
    pub symbol: Option<String>,
    /// Page size, 1 to 500.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only fills with a smaller trade id.
    #[serde(default)]
    pub before: Option<i64>,
}

/// `GET /api/v1/fills`: the caller's fills, newest first.
pub async fn fills(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiQuery(q): ApiQuery<FillQuery>,
) -> Result<Json<Vec<FillView>>, ApiError> {
    let limit = page_size(q.limit)?;
    Ok(Json(
        state
            .store
            .fills(user.acct, q.symbol.as_deref(), limit, q.before)
            .await?,
    ))
}

/// One position in the portfolio.
#[derive(Debug, Serialize, Deserialize)]
pub struct PositionView {
    /// Instrument.
    pub symbol: String,
    /// Signed quantity (negative = short).
    pub qty: Qty,
    /// Reserved by resting sells.
    pub reserved: Qty,
    /// Average cost of the open quantity.
    pub avg_cost: Option<Price>,
    /// Last trade price used as the mark.
    pub mark_price: Option<Price>,
    /// Realized P&L by average cost.
    pub realized_pnl: Cash,
    /// Unrealized P&L at the mark.
    pub unrealized_pnl: Option<Cash>,
}

/// The caller's cash and positions.
#[derive(Debug, Serialize, Deserialize)]
pub struct Portfolio {
    /// Account id.
    pub account_id: i64,
    /// Total cash.
    pub cash: Cash,
    /// Reserved by resting buys.
    pub cash_reserved: Cash,
    /// Usable by new orders.
    pub cash_available: Cash,
    /// Positions.
    pub positions: Vec<PositionView>,
    /// Sum of realized P&L.
    pub realized_pnl: Cash,
    /// Sum of unrealized P&L over positions with a mark.
    pub unrealized_pnl: Cash,
}

/// `GET /api/v1/portfolio`: cash, reservations, positions and P&L.
pub async fn portfolio(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Portfolio>, ApiError> {
    let account = state
        .store
        .account(user.acct)
        .await?
        .ok_or_else(|| ApiError::NotFound("no account for this user".into()))?;
    let mut positions = Vec::new();
    let (mut realized, mut unrealized) = (Cash::ZERO, Cash::ZERO);
    for p in account.positions {
        let pos = Position {
            qty: Qty::from_raw(p.qty),
            reserved: Qty::from_raw(p.reserved),
            cost_basis: Cash::from_raw(i128::from(p.cost_basis)),
            realized_pnl: Cash::from_raw(i128::from(p.realized_pnl)),
        };
        let mark = state
            .store
            .symbol_state(&p.symbol)
            .await?
            .and_then(|s| s.last_trade)
            .map(|(price, _, _)| Price::from_raw(price));
        let upnl = mark.map(|m| pos.unrealized_pnl(m));
        realized += pos.realized_pnl;
        unrealized += upnl.unwrap_or(Cash::ZERO);
        positions.push(PositionView {
            symbol: p.symbol,
            qty: pos.qty,
            reserved: pos.reserved,
            avg_cost: pos.avg_cost(),
            mark_price: mark,
            realized_pnl: pos.realized_pnl,
            unrealized_pnl: upnl,
        });
    }
    let cash = Cash::from_raw(i128::from(account.cash));
    let reserved = Cash::from_raw(i128::from(account.cash_reserved));
    Ok(Json(Portfolio {
        account_id: account.id,
        cash,
        cash_reserved: reserved,
        cash_available: cash - reserved,
        positions,
        realized_pnl: realized,
        unrealized_pnl: unrealized,
    }))
}
