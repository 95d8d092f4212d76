//! Four-eyes approval of large orders (issue 16): the service side.
//!
//! Design, and why:
//! - The threshold lives on the instrument (`approvalNotional` in `INSTRUMENTS`, else
//!   `APPROVAL_NOTIONAL_DEFAULT`), so the *engine* decides at submission, against the same
//!   notional its risk check computed (a market order's walked cost included), and holds the
//!   order: risk-checked, reserved, not in the book (`tradeplane_engine::engine::held`). The
//!   platform stores it as a `pending` row with `approval_requested_at` (shown as
//!   `pending_approval`, migration `0040_expand_approvals`).
//! - Approve, reject, expire and the owner's cancel are matcher commands like any other
//!   ([`super::Request::Approve`], [`super::Request::Reject`], [`super::Request::Expire`],
//!   [`super::Request::Cancel`]): they run in the symbol's batch transaction on the replica that
//!   owns the symbol (forwarded there like an order), so an approved order enters matching in
//!   the order approvals reach the matcher, with the risk rules of that moment, and its
//!   effects commit with the decision or not at all. Each is applied at most once: the engine
//!   refuses a second decision of an order it no longer holds (409 `order_not_pending`), the
//!   row is only updated while still `pending` (else the batch is stale and re-planned after a
//!   reload), and a lost COMMIT reply is resolved before anything else runs, as for orders.
//! - Checks that need the caller (self-approval: 403 `self_approval_forbidden`; unknown: 404)
//!   are made here before the command is sent; the pending state is checked again by the engine.
//! - Expiry is a sweep every `APPROVAL_SWEEP_INTERVAL_SECONDS` on every replica, each sending
//!   expire commands only for symbols it owns (others' holds are their owners' to expire).

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{Done, Refusal, Request, Trading};
use crate::error::ApiError;
use crate::store::approvals::PendingOrderView;
use crate::store::market::PENDING_APPROVAL;
use crate::store::views::OrderView;

/// Expired holds handled per sweep (the rest wait for the next one).
const SWEEP_BATCH: u32 = 200;

/// 409 `order_not_pending`.
fn not_pending(message: String) -> ApiError {
    ApiError::from(Refusal::NotPending(message))
}

impl Trading {
    /// Held orders, soonest to expire first.
    pub async fn pending_orders(
        &self,
        symbol: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PendingOrderView>, ApiError> {
        Ok(self.store.pending_orders(symbol, limit).await?)
    }

    /// The held order `order_id`, checked for a decision by the admin whose account is
    /// `admin_account` (`self_check`: approving one's own order is refused).
    async fn held_for_decision(
        &self,
        order_id: i64,
        admin_account: Option<i64>,
    ) -> Result<OrderView, ApiError> {
        let view = self
            .store
            .order(order_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no order {order_id}")))?;
        if admin_account == Some(view.account_id) {
            return Err(ApiError::Status {
                status: axum::http::StatusCode::FORBIDDEN,
                code: "self_approval_forbidden",
                message: format!(
                    "order {order_id} was placed by your own account; another admin must approve it"
                ),
            });
        }
        if view.status != PENDING_APPROVAL {
            return Err(not_pending(format!(
                "order {order_id} is {} and not waiting for approval",
                view.status
            )));
        }
        let expired = self
            .store
            .pending_order(order_id)
            .await?
            .is_none_or(|p| p.expires_at <= Utc::now());
        if expired {
            return Err(not_pending(format!(
                "order {order_id} has expired and is being released"
            )));
        }
        Ok(view)
    }

    /// Approves a held order (admin `admin`, whose own account is `admin_account`): it enters
    /// matching now. When it fails the risk check of this moment it is released instead and
    /// the answer is the rule's 422.
    pub async fn approve(
        &self,
        admin: i64,
        admin_account: i64,
        order_id: i64,
        request_id: Option<String>,
    ) -> Result<OrderView, ApiError> {
        let view = self
            .held_for_decision(order_id, Some(admin_account))
            .await?;
        let request = Request::Approve {
            order_id,
            view: Box::new(view),
            admin,
            request_id,
        };
        order_of(self.call(request).await?)
    }

    /// Rejects a held order with `reason`; its reservation is released.
    pub async fn reject(
        &self,
        admin: i64,
        order_id: i64,
        reason: String,
        request_id: Option<String>,
    ) -> Result<OrderView, ApiError> {
        let view = self.held_for_decision(order_id, None).await?;
        let request = Request::Reject {
            order_id,
            view: Box::new(view),
            admin,
            reason,
            request_id,
        };
        order_of(self.call(request).await?)
    }

    /// Expires the held orders past their time whose symbol this replica owns; returns how
    /// many it released.
    pub async fn sweep_expired_holds(&self) -> usize {
        let expired = match self.store.expired_holds(Utc::now(), SWEEP_BATCH).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for expired approval holds");
                return 0;
            }
        };
        let (queue_wait, _) = self.options.waits();
        let mut released = 0;
        for hold in expired {
            if self.ownership.token(&hold.symbol).is_none() {
                continue;
            }
            let Ok(Some(view)) = self.store.order(hold.id).await else {
                continue;
            };
            let request = Request::Expire {
                order_id: hold.id,
                view: Box::new(view),
            };
            let deadline = tokio::time::Instant::now() + queue_wait;
            match self.local(request, deadline).await {
                Ok(Ok(_)) => released += 1,
                Ok(Err(Refusal::NotPending(_) | Refusal::NotOwner)) => {}
                Ok(Err(r)) => {
                    tracing::warn!(order = hold.id, refusal = ?r, "could not expire a held order")
                }
                Err(e) => {
                    tracing::warn!(order = hold.id, error = %e, "could not expire a held order")
                }
            }
        }
        released
    }

    /// Runs [`Trading::sweep_expired_holds`] every `APPROVAL_SWEEP_INTERVAL_SECONDS` until
    /// `stop` fires.
    pub fn spawn_approval_sweeper(&self, stop: CancellationToken) {
        let this = self.clone();
        let every = self.options.approval_sweep_interval;
        tokio::spawn(async move {
            // The first sweep one interval after start, not at once: at start the schema may
            // still be migrating (on a fresh SQLite file a read racing the migrator's first
            // write failed it with "database is locked").
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {
                        let n = this.sweep_expired_holds().await;
                        if n > 0 {
                            tracing::info!(released = n, "expired orders held for approval");
                        }
                    }
                }
            }
        });
    }
}

fn order_of(done: Done) -> Result<OrderView, ApiError> {
    match done {
        Done::Order(view) => Ok(*view),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "matcher answered an approval decision with something else"
        ))),
    }
}
