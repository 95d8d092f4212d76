//! `/api/v1/orders`, `/api/v1/fills`, `/api/v1/portfolio`: the caller's own trading.
//! A user only ever sees their own orders, fills and balances: another user's order id is 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tradeplane_engine::ledger::Position;
use tradeplane_engine::num::{Cash, Price, Qty};

use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser, IdPath, RequestId};
use crate::error::ApiError;
use crate::input::{self, Validate};
use crate::state::AppState;
use crate::trading::PlaceOrder;
use crate::trading::views::{FillView, OrderView};

/// Largest page any listing returns.
pub const MAX_PAGE: u32 = 500;

/// Validates the page-size parameter `param` (default 100); the error names the parameter.
pub fn page_size(param: &str, limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Unprocessable {
            code: "invalid_page_size",
            message: format!("{param} must be between 1 and {MAX_PAGE}"),
        })
    }
}

impl Validate for PlaceOrder {
    fn validate(&self) -> Result<(), ApiError> {
        input::symbol("symbol", &self.symbol)?;
        input::optional(
            input::client_order_id,
            "client_order_id",
            self.client_order_id.as_deref(),
        )?;
        Ok(())
    }
}

/// The body of `POST /api/v1/orders`: a [`PlaceOrder`] whose optional fields may be omitted but
/// not `null` (422 `null_field`), as the document says: a `null` is more often a client bug (an
/// unset variable) than a wish for the default, and the stricter rule can be relaxed later
/// without breaking anyone, not the other way round.
pub struct PlaceOrderBody {
    order: PlaceOrder,
    null_field: Option<String>,
}

impl<'de> Deserialize<'de> for PlaceOrderBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let null_field = map
            .iter()
            .find(|(_, v)| v.is_null())
            .map(|(k, _)| input::bounded(k, 64));
        let order =
            PlaceOrder::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(PlaceOrderBody { order, null_field })
    }
}

impl Validate for PlaceOrderBody {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(field) = &self.null_field {
            return Err(ApiError::Unprocessable {
                code: "null_field",
                message: format!("{field} may be omitted but not null"),
            });
        }
        self.order.validate()
    }
}

/// `POST /api/v1/orders`: places an order; answers once it is matched and committed.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    operation_id = "placeOrder",
    summary = "Place an order",
    description = "Validated, matched and committed before the answer: the returned order already shows its fills. A `client_order_id` already used by this account returns the original order instead of placing a new one. A rejected order changes nothing. An order whose notional exceeds the instrument's `approvalNotional` (four-eyes approval) is not matched yet: it is answered with status `pending_approval`, its cash or position reserved, until an admin approves, rejects, or it expires. Optional fields may be omitted (`tif` then defaults to `GTC` for limit and `IOC` for market orders) but not `null` (422 `null_field`). 503 `unavailable` when the matching queue is full or the batch could not be committed (nothing was applied; retry with the same `client_order_id`).",
    request_body = PlaceOrder,
    security(("bearerAuth" = [])),
    responses(
        (status = 201, description = "The order after matching.", body = OrderView),
        (status = 409, description = "`idempotency_conflict`: this account already used the `client_order_id` for a different order.", body = crate::error::ErrorBody),
        (status = 422, description = "A rule refused the order: `null_field` (an optional field sent as `null`), `invalid_symbol`, `invalidClientOrderId`, `unknownSymbol`, `symbolHalted`, `invalidQuantity`, `quantityNotOnLot`, `quantityBelowMin`, `quantityAboveMax`, `missingPrice`, `unexpectedPrice`, `marketOrderNeedsIocOrFok`, `priceNotOnTick`, `priceOutsideBand`, `notionalTooLarge`, `insufficientCash`, `insufficientPosition`, `openOrderLimit`, `unknownAccount`.", body = crate::error::ErrorBody),
    )
)]
pub async fn place(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    RequestId(request_id): RequestId,
    ApiJson(PlaceOrderBody { order, .. }): ApiJson<PlaceOrderBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let view = state.trading.place(user.acct, order, request_id).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Filters of the order listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders with this status (else 422 `invalid_status`).
    #[serde(default)]
    #[param(value_type = Option<super::openapi::OrderStatus>, nullable = false)]
    pub status: Option<String>,
    /// Only this symbol.
    #[serde(default)]
    #[param(value_type = Option<super::openapi::Symbol>, nullable = false)]
    pub symbol: Option<String>,
    /// Page size, 1 to 500 (default 100; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 100, nullable = false)]
    pub limit: Option<u32>,
    /// Only orders with a smaller id (the last id of the previous page).
    #[serde(default)]
    #[param(nullable = false)]
    pub before: Option<i64>,
}

impl Validate for OrderQuery {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(s) = &self.status
            && ![
                "new",
                "partially_filled",
                "filled",
                "cancelled",
                "pending_approval",
            ]
            .contains(&s.as_str())
        {
            return Err(ApiError::Unprocessable {
                code: "invalid_status",
                message:
                    "status must be new, partially_filled, filled, cancelled or pending_approval"
                        .into(),
            });
        }
        Ok(input::optional(
            input::symbol,
            "symbol",
            self.symbol.as_deref(),
        )?)
    }
}

/// `GET /api/v1/orders`: the caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    operation_id = "listOrders",
    summary = "The caller's orders, newest first",
    params(OrderQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Orders.", body = Vec<OrderView>),
        (status = 422, description = "`invalid_status`, `invalid_symbol`, `invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let limit = page_size("limit", q.limit)?;
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
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    operation_id = "getOrder",
    summary = "One of the caller's orders",
    description = "Another account's order is 404, as if it did not exist.",
    params(IdPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(IdPath { id }): ApiPath<IdPath>,
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
#[utoipa::path(
    delete,
    path = "/orders/{id}",
    tag = "orders",
    operation_id = "cancelOrder",
    summary = "Cancel a resting order",
    description = "Also cancels an order waiting for approval (`pending_approval`): its reservation is released and it ends `cancelled` with `cancel_reason` `requested`.",
    params(IdPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The cancelled order.", body = OrderView),
        (status = 404, description = "`not_found`: no such order of the caller.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict`: the order is already filled or cancelled.", body = crate::error::ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    RequestId(request_id): RequestId,
    ApiPath(IdPath { id }): ApiPath<IdPath>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(state.trading.cancel(user.acct, id, request_id).await?))
}

/// Filters of the fill listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FillQuery {
    /// Only this symbol.
    #[serde(default)]
    #[param(value_type = Option<super::openapi::Symbol>, nullable = false)]
    pub symbol: Option<String>,
    /// Page size, 1 to 500 (default 100; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 100, nullable = false)]
    pub limit: Option<u32>,
    /// Only fills with a smaller trade id.
    #[serde(default)]
    #[param(nullable = false)]
    pub before: Option<i64>,
}

impl Validate for FillQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::optional(
            input::symbol,
            "symbol",
            self.symbol.as_deref(),
        )?)
    }
}

/// `GET /api/v1/fills`: the caller's fills, newest first.
#[utoipa::path(
    get,
    path = "/fills",
    tag = "orders",
    operation_id = "listFills",
    summary = "The caller's fills, newest first",
    params(FillQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Fills.", body = Vec<FillView>),
        (status = 422, description = "`invalid_symbol`, `invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn fills(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiQuery(q): ApiQuery<FillQuery>,
) -> Result<Json<Vec<FillView>>, ApiError> {
    let limit = page_size("limit", q.limit)?;
    Ok(Json(
        state
            .store
            .fills(user.acct, q.symbol.as_deref(), limit, q.before)
            .await?,
    ))
}

/// One position in the portfolio.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Position, example = json!({"symbol": "BTC-USD", "qty": "0.5", "reserved": "0.1", "avg_cost": "58000", "mark_price": "60000", "realized_pnl": "120.5", "unrealized_pnl": "1000"}))]
pub struct PositionView {
    /// Instrument.
    #[schema(value_type = super::openapi::Symbol)]
    pub symbol: String,
    /// Signed quantity (negative = short).
    #[schema(value_type = super::openapi::Decimal)]
    pub qty: Qty,
    /// Reserved by resting sells.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub reserved: Qty,
    /// Average cost of the open quantity (null when flat).
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub avg_cost: Option<Price>,
    /// Last trade price used as the mark (null before the first trade).
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>, required = true)]
    pub mark_price: Option<Price>,
    /// Realized P&L by average cost.
    #[schema(value_type = super::openapi::Decimal)]
    pub realized_pnl: Cash,
    /// Unrealized P&L at the mark (null without a mark).
    #[schema(value_type = Option<super::openapi::Decimal>, required = true)]
    pub unrealized_pnl: Option<Cash>,
}

/// The caller's cash and positions.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"account_id": 2, "cash": "100000", "cash_reserved": "600", "cash_available": "99400", "positions": [{"symbol": "BTC-USD", "qty": "0.5", "reserved": "0", "avg_cost": "58000", "mark_price": "60000", "realized_pnl": "0", "unrealized_pnl": "1000"}], "realized_pnl": "0", "unrealized_pnl": "1000"}))]
pub struct Portfolio {
    /// Account id.
    pub account_id: i64,
    /// Total cash.
    #[schema(value_type = super::openapi::Decimal)]
    pub cash: Cash,
    /// Reserved by resting buys.
    #[schema(value_type = super::openapi::Decimal)]
    pub cash_reserved: Cash,
    /// Usable by new orders.
    #[schema(value_type = super::openapi::Decimal)]
    pub cash_available: Cash,
    /// Positions.
    pub positions: Vec<PositionView>,
    /// Sum of realized P&L.
    #[schema(value_type = super::openapi::Decimal)]
    pub realized_pnl: Cash,
    /// Sum of unrealized P&L over positions with a mark.
    #[schema(value_type = super::openapi::Decimal)]
    pub unrealized_pnl: Cash,
}

/// `GET /api/v1/portfolio`: cash, reservations, positions and P&L.
#[utoipa::path(
    get,
    path = "/portfolio",
    tag = "orders",
    operation_id = "getPortfolio",
    summary = "Cash, reservations, positions and P&L",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's portfolio.", body = Portfolio),
        (status = 404, description = "`not_found`: the account no longer exists.", body = crate::error::ErrorBody),
    )
)]
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
