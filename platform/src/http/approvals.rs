//! `/api/v1/admin/orders/*`: four-eyes approval of large orders (issue 16). Every route needs
//! the admin role; see [`crate::trading::approvals`] for the design.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::extract::{AdminUser, ApiJson, ApiPath, ApiQuery, IdPath, RequestId};
use crate::error::ApiError;
use crate::input::{self, Validate};
use crate::state::AppState;
use crate::store::approvals::PendingOrderView;
use crate::trading::views::OrderView;

/// Filters of the pending-order listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PendingQuery {
    /// Only this symbol.
    #[serde(default)]
    #[param(value_type = Option<super::openapi::Symbol>, nullable = false)]
    pub symbol: Option<String>,
    /// Page size, 1 to 500 (default 100; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 100, nullable = false)]
    pub limit: Option<u32>,
}

impl Validate for PendingQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::optional(
            input::symbol,
            "symbol",
            self.symbol.as_deref(),
        )?)
    }
}

/// Body of a rejection.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "exceeds the desk's daily limit"}))]
pub struct RejectRequest {
    /// Why, for the trader and the audit trail: 1 to 256 characters, no control character
    /// (else 422 `invalid_text`).
    #[schema(value_type = super::openapi::Text)]
    pub reason: String,
}

impl Validate for RejectRequest {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::text("reason", &self.reason)?)
    }
}

/// `GET /api/v1/admin/orders/pending`: orders waiting for approval.
#[utoipa::path(
    get,
    path = "/admin/orders/pending",
    tag = "admin",
    operation_id = "listPendingOrders",
    summary = "Orders waiting for four-eyes approval",
    description = "Admin only. Orders whose notional exceeded their instrument's `approvalNotional` (or `APPROVAL_NOTIONAL_DEFAULT`), soonest to expire first. Each waits until an admin other than its trader approves or rejects it, its trader cancels it, or `expires_at` passes (`APPROVAL_TIMEOUT_SECONDS`).",
    params(PendingQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Pending orders.", body = Vec<PendingOrderView>),
        (status = 422, description = "`invalid_symbol`, `invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn pending(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    ApiQuery(q): ApiQuery<PendingQuery>,
) -> Result<Json<Vec<PendingOrderView>>, ApiError> {
    let limit = super::orders::page_size("limit", q.limit)?;
    Ok(Json(
        state
            .trading
            .pending_orders(q.symbol.as_deref(), limit)
            .await?,
    ))
}

/// `POST /api/v1/admin/orders/{id}/approve`: approves a pending order; it is matched now.
#[utoipa::path(
    post,
    path = "/admin/orders/{id}/approve",
    tag = "admin",
    operation_id = "approveOrder",
    summary = "Approve an order waiting for approval",
    description = "Admin only, and never the order's own trader (403 `self_approval_forbidden`). The order enters matching now, behind orders already queued (approvals are matched in the order they arrive), with the risk checks of this moment; the answer is the order after matching, as for `POST /orders`. If it fails those checks it is rejected, its reservation released, and the answer is the rule's 422 (e.g. `symbolHalted`, `priceOutsideBand`). Audited (`order.approved`).",
    params(IdPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The order after matching.", body = OrderView),
        (status = 403, description = "`self_approval_forbidden`: the order was placed by the caller's own account; or `forbidden` (not an admin).", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such order.", body = crate::error::ErrorBody),
        (status = 409, description = "`order_not_pending`: the order is not waiting for approval (decided, cancelled or expired).", body = crate::error::ErrorBody),
        (status = 422, description = "The order failed a risk rule at approval (the rule's code, e.g. `symbolHalted`, `priceOutsideBand`, `insufficientCash`) and was rejected, its reservation released.", body = crate::error::ErrorBody),
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    ApiPath(IdPath { id }): ApiPath<IdPath>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(
        state
            .trading
            .approve(admin.uid, admin.acct, id, request_id)
            .await?,
    ))
}

/// `POST /api/v1/admin/orders/{id}/reject`: rejects a pending order with a reason.
#[utoipa::path(
    post,
    path = "/admin/orders/{id}/reject",
    tag = "admin",
    operation_id = "rejectOrder",
    summary = "Reject an order waiting for approval",
    description = "Admin only. The order ends `cancelled` with `cancel_reason` `approval_rejected`; its reservation is released. Audited (`order.approval_rejected`, with the reason).",
    params(IdPath),
    request_body = RejectRequest,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The rejected order.", body = OrderView),
        (status = 404, description = "`not_found`: no such order.", body = crate::error::ErrorBody),
        (status = 409, description = "`order_not_pending`: the order is not waiting for approval.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_text`: the reason is empty, longer than 256 characters or has a control character.", body = crate::error::ErrorBody),
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    ApiPath(IdPath { id }): ApiPath<IdPath>,
    ApiJson(body): ApiJson<RejectRequest>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(
        state
            .trading
            .reject(admin.uid, id, body.reason, request_id)
            .await?,
    ))
}
