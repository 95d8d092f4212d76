//! `/api/v1/admin/*`: deposits and the audit trail. Every route needs the admin role.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tradeplane_engine::num::{Cash, Price, Qty};

use super::extract::{AdminUser, ApiJson, ApiQuery, RequestId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AuditEvent;

/// Body of a deposit: cash, or units of an instrument when `symbol` is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// Positive decimal amount, e.g. `"10000.50"` (cash) or `"0.5"` (units of `symbol`).
    pub amount: Cash,
    /// Deposit units of this instrument instead of cash.
    #[serde(default)]
    pub symbol: Option<String>,
    /// Cost per unit booked for deposited units (default 0), for average cost and P&L.
    #[serde(default)]
    pub cost: Option<Price>,
}

/// Result of a deposit.
#[derive(Debug, Serialize, Deserialize)]
pub struct DepositResponse {
    /// The account credited.
    pub account_id: i64,
    /// The new total cash (cash deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cash: Option<Cash>,
    /// The instrument deposited (asset deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The new position quantity (asset deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Qty>,
}

/// `POST /api/v1/admin/accounts/{id}/deposits`: credits cash (or instrument units) to an account.
pub async fn deposit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    Path(account_id): Path<i64>,
    ApiJson(body): ApiJson<DepositRequest>,
) -> Result<Json<DepositResponse>, ApiError> {
    if let Some(symbol) = body.symbol {
        let qty = i64::try_from(body.amount.raw())
            .map(Qty::from_raw)
            .map_err(|_| ApiError::Unprocessable {
                code: "invalidQuantity",
                message: "amount is too large".into(),
            })?;
        let position = state
            .trading
            .credit(
                account_id,
                &symbol,
                qty,
                body.cost.unwrap_or(Price::ZERO),
                format!("user:{}", admin.uid),
                request_id,
            )
            .await?;
        return Ok(Json(DepositResponse {
            account_id,
            cash: None,
            symbol: Some(symbol),
            position: Some(position),
        }));
    }
    if body.cost.is_some() {
        return Err(ApiError::Unprocessable {
            code: "unexpectedCost",
            message: "cost applies only to instrument deposits (with symbol)".into(),
        });
    }
    let amount = i64::try_from(body.amount.raw())
        .ok()
        .filter(|raw| *raw > 0)
        .ok_or_else(|| ApiError::Unprocessable {
            code: "invalid_amount",
            message: "amount must be positive and at most 92233720368".into(),
        })?;
    let cash = state
        .store
        .deposit(
            account_id,
            amount,
            &format!("user:{}", admin.uid),
            request_id.as_deref(),
        )
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_check_violation() => ApiError::Unprocessable {
                code: "invalid_amount",
                message: "the deposit would overflow the account".into(),
            },
            _ => e.into(),
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no account {account_id}")))?;
    Ok(Json(DepositResponse {
        account_id,
        cash: Some(Cash::from_raw(i128::from(cash))),
        symbol: None,
        position: None,
    }))
}

/// Query of the audit listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Page size, 1 to 500 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only events older than this id (the last id of the previous page).
    #[serde(default)]
    pub before: Option<i64>,
}

/// `GET /api/v1/admin/audit`: the audit trail, newest first.
pub async fn audit(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Unprocessable {
            code: "invalid_page_size",
            message: "limit must be between 1 and 500".into(),
        });
    }
    Ok(Json(state.store.list_audit(limit, q.before).await?))
}
