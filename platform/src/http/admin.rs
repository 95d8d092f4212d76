//! `/api/v1/admin/*`: deposits (the audit trail is [`super::audit`]). Every route needs the admin
//! role.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tradeplane_engine::num::{Cash, Price, Qty};

use super::extract::{AdminUser, ApiJson, ApiPath, IdPath, RequestId};
use crate::error::ApiError;
use crate::input::{self, Validate};
use crate::state::AppState;
use crate::store::DepositError;

/// Body of a deposit: cash, or units of an instrument when `symbol` is given.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "10000.50"}))]
pub struct DepositRequest {
    /// Positive amount: cash (at most 92233720368.54775807 in total on the account, else 422
    /// `cashOverflow`; not positive: 422 `invalid_amount`), or units of `symbol` (a multiple of
    /// its lot size).
    #[schema(value_type = super::openapi::Decimal)]
    pub amount: Cash,
    /// Deposit units of this instrument instead of cash.
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::Symbol>)]
    pub symbol: Option<String>,
    /// Cost per unit booked for deposited units (default 0), for average cost and P&L; only with
    /// `symbol` (else 422 `unexpectedCost`).
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::UnsignedDecimal>)]
    pub cost: Option<Price>,
}

impl Validate for DepositRequest {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(input::optional(
            input::symbol,
            "symbol",
            self.symbol.as_deref(),
        )?)
    }
}

/// Result of a deposit.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"account_id": 2, "cash": "10000.5"}))]
pub struct DepositResponse {
    /// The account credited.
    pub account_id: i64,
    /// The new total cash (cash deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::openapi::Decimal>, nullable = false)]
    pub cash: Option<Cash>,
    /// The instrument deposited (asset deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::openapi::Symbol>, nullable = false)]
    pub symbol: Option<String>,
    /// The new position quantity (asset deposits).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::openapi::Decimal>, nullable = false)]
    pub position: Option<Qty>,
}

/// `POST /api/v1/admin/accounts/{id}/deposits`: credits cash (or instrument units) to an account.
#[utoipa::path(
    post,
    path = "/admin/accounts/{id}/deposits",
    tag = "admin",
    operation_id = "deposit",
    summary = "Credit cash or instrument units to an account",
    description = "Admin only. Without `symbol`, credits `amount` of cash. With `symbol`, credits `amount` units of that instrument at `cost` per unit (default 0), used for average cost and P&L. A deposit that would take the balance out of range is refused before anything is written (422 `cashOverflow`). Audited.",
    params(IdPath),
    request_body = DepositRequest,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The account's new cash or position.", body = DepositResponse),
        (status = 404, description = "`not_found`: no such account or instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_amount`, `cashOverflow`, `unexpectedCost`, `invalidQuantity`, `invalidPrice`, `invalid_symbol`.", body = crate::error::ErrorBody),
    )
)]
pub async fn deposit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    RequestId(request_id): RequestId,
    ApiPath(IdPath { id: account_id }): ApiPath<IdPath>,
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
        .map_err(|e| match e {
            DepositError::Overflow => ApiError::Unprocessable {
                code: "cashOverflow",
                message: format!(
                    "the deposit would take the account's cash above {}; nothing was credited",
                    Cash::from_raw(i128::from(i64::MAX))
                ),
            },
            DepositError::NotPositive => ApiError::Unprocessable {
                code: "invalid_amount",
                message: "amount must be positive".into(),
            },
            DepositError::Db(e) => e.into(),
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no account {account_id}")))?;
    Ok(Json(DepositResponse {
        account_id,
        cash: Some(Cash::from_raw(i128::from(cash))),
        symbol: None,
        position: None,
    }))
}
