//! Planning the commands of orders held for approval (see [`crate::trading::approvals`]):
//! a placement the engine held, an approval, a rejection, an expiry, the owner's cancel. Each
//! folds the engine's events into the batch's writes like any order, writes the held row's
//! decision ([`HeldChange`], merged with fills later in the same batch), and the audit record
//! named in the contract (`order.approval_requested`, `order.approved`,
//! `order.approval_rejected`, `order.approval_expired`, `order.approval_cancelled`).

use tradeplane_engine::engine::Batch;
use tradeplane_engine::events::ReleaseReason;
use tradeplane_engine::num::{Cash, Qty};
use tradeplane_engine::order::{AccountId, OrderId};
use tradeplane_engine::risk::Reject;

use super::{
    Done, PlaceOrder, Plan, Refusal, Reply, effective_tif, id_u64, own_cancel_reason, status_str,
    tif_str, type_str,
};
use crate::store::NewAuditEvent;
use crate::store::market::{PENDING_APPROVAL, side_str};
use crate::store::matching::{HeldChange, HeldRow};
use crate::store::views::OrderView;

/// What the approval metrics count, recorded after the batch commits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApprovalMetric {
    /// An order went pending (`orders_pending_total`).
    Held { symbol: String },
    /// A held order was decided after `waited` seconds: `approved`, `rejected`, `expired`,
    /// `cancelled` or `risk` (approved but refused by the risk check of that moment).
    Decided {
        symbol: String,
        outcome: &'static str,
        waited: f64,
    },
}

/// How a held order leaves the hold other than by approval.
pub(in crate::trading) enum Decision<'a> {
    /// An admin (user id) rejected it.
    Rejected { admin: i64, reason: &'a str },
    /// Nobody decided within `APPROVAL_TIMEOUT_SECONDS`.
    Expired,
    /// Its owner cancelled it.
    Cancelled { account: i64 },
}

fn raw_i64(c: Cash) -> i64 {
    i64::try_from(c.raw()).unwrap_or(i64::MAX)
}

fn not_pending(id: i64) -> Refusal {
    Refusal::NotPending(format!("order {id} is not waiting for approval"))
}

impl Plan {
    /// A placed order the engine held for approval: its row is inserted as `pending` with its
    /// expiry and reservation.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn held(
        &mut self,
        batch: &Batch<'_>,
        account: i64,
        order: &PlaceOrder,
        id: i64,
        outcome: &tradeplane_engine::Outcome,
        request_id: Option<&str>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        let (reserved, notional) = batch
            .engine()
            .held_order(&order.symbol, OrderId(id_u64(id)))
            .map_or((Cash::ZERO, Cash::ZERO), |h| (h.cash_reserved, h.notional));
        self.record(&order.symbol, outcome, origin);
        let expires_at = now + self.approval_timeout;
        if let Some(&i) = self.new_index.get(&id) {
            let row = &mut self.writes.new_orders[i];
            row.status = status_str(outcome.status);
            row.approval = Some(HeldRow {
                expires_at,
                reserved_cash: raw_i64(reserved),
                notional: raw_i64(notional),
            });
        }
        let side = side_str(order.side);
        let kind = type_str(order.order_type);
        let tif = tif_str(effective_tif(order));
        for (action, details) in [
            (
                "order.placed",
                serde_json::json!({
                    "symbol": order.symbol, "side": side, "type": kind, "price": order.price,
                    "qty": order.qty, "status": PENDING_APPROVAL, "filled": Qty::ZERO,
                }),
            ),
            (
                "order.approval_requested",
                serde_json::json!({
                    "order_id": id, "symbol": order.symbol, "side": side, "qty": order.qty,
                    "price": order.price, "notional": notional, "expires_at": expires_at,
                }),
            ),
        ] {
            self.writes.audits.push(NewAuditEvent {
                actor: format!("account:{account}"),
                action: action.into(),
                subject: Some(format!("order:{id}")),
                request_id: request_id.map(str::to_owned),
                details,
            });
        }
        self.outcomes
            .push((order.symbol.clone(), side, kind, "accepted"));
        self.approvals.push(ApprovalMetric::Held {
            symbol: order.symbol.clone(),
        });
        Ok(Done::Order(Box::new(OrderView {
            id,
            account_id: account,
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: side.to_owned(),
            order_type: kind.to_owned(),
            tif: tif.to_owned(),
            price: order.price,
            qty: order.qty,
            filled: Qty::ZERO,
            remaining: Qty::ZERO,
            status: PENDING_APPROVAL.to_owned(),
            cancel_reason: None,
            created_at: now,
            updated_at: now,
        })))
    }

    /// Records a held order's decision row, merged with what later commands do to it.
    fn decide(&mut self, change: HeldChange) {
        self.held_index
            .insert(change.id, self.writes.held_changes.len());
        self.writes.held_changes.push(change);
    }

    /// An admin approved a held order: it was matched now (or refused by the risk check).
    pub(super) fn approve(
        &mut self,
        batch: &mut Batch<'_>,
        view: &OrderView,
        admin: i64,
        request_id: &Option<String>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        let (id, symbol) = (view.id, view.symbol.as_str());
        let oid = OrderId(id_u64(id));
        let notional = batch
            .engine()
            .held_order(symbol, oid)
            .map(|h| h.notional)
            .ok_or_else(|| not_pending(id))?;
        let approval = match batch.approve(symbol, oid) {
            Ok(a) => a,
            Err(Reject::UnknownOrder) => return Err(not_pending(id)),
            Err(r) => {
                return Err(Refusal::Rule {
                    code: r.code(),
                    message: r.to_string(),
                });
            }
        };
        let outcome = &approval.outcome;
        let priority = self.record(symbol, outcome, origin);
        let waited = (now - view.created_at).as_seconds_f64().max(0.0);
        if let Some(reject) = approval.refused {
            self.decide(HeldChange {
                id,
                status: "cancelled",
                filled: 0,
                remaining: 0,
                cancel_reason: Some("risk_rejected"),
                priority: None,
                approved_by: Some(admin),
                rejected_by: None,
                rejected_reason: Some(reject.code().to_owned()),
            });
            self.writes.audits.push(NewAuditEvent {
                actor: format!("user:{admin}"),
                action: "order.approval_rejected".into(),
                subject: Some(format!("order:{id}")),
                request_id: request_id.clone(),
                details: serde_json::json!({
                    "order_id": id, "symbol": symbol, "notional": notional, "admin": admin,
                    "reason": "risk", "code": reject.code(),
                }),
            });
            self.approvals.push(ApprovalMetric::Decided {
                symbol: symbol.to_owned(),
                outcome: "risk",
                waited,
            });
            return Err(Refusal::Rule {
                code: reject.code(),
                message: format!(
                    "order {id} was approved but failed the risk check at approval ({reject}); \
                     it was rejected and its reservation released"
                ),
            });
        }
        let reason = own_cancel_reason(outcome);
        self.decide(HeldChange {
            id,
            status: status_str(outcome.status),
            filled: outcome.filled.raw(),
            remaining: outcome.resting.raw(),
            cancel_reason: reason,
            priority,
            approved_by: Some(admin),
            rejected_by: None,
            rejected_reason: None,
        });
        self.writes.audits.push(NewAuditEvent {
            actor: format!("user:{admin}"),
            action: "order.approved".into(),
            subject: Some(format!("order:{id}")),
            request_id: request_id.clone(),
            details: serde_json::json!({
                "order_id": id, "symbol": symbol, "notional": notional, "admin": admin,
                "status": status_str(outcome.status), "filled": outcome.filled,
            }),
        });
        self.approvals.push(ApprovalMetric::Decided {
            symbol: symbol.to_owned(),
            outcome: "approved",
            waited,
        });
        let mut view = view.clone();
        view.status = status_str(outcome.status).to_owned();
        view.filled = outcome.filled;
        view.remaining = outcome.resting;
        view.cancel_reason = reason.map(str::to_owned);
        view.updated_at = now;
        Ok(Done::Order(Box::new(view)))
    }

    /// A held order rejected, expired or cancelled by its owner: released with its reservation.
    pub(in crate::trading) fn release(
        &mut self,
        batch: &mut Batch<'_>,
        view: &OrderView,
        decision: Decision<'_>,
        request_id: &Option<String>,
        origin: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        let (id, symbol) = (view.id, view.symbol.as_str());
        let oid = OrderId(id_u64(id));
        let notional = batch
            .engine()
            .held_order(symbol, oid)
            .map(|h| h.notional)
            .ok_or_else(|| not_pending(id))?;
        let released = match &decision {
            Decision::Cancelled { account } => {
                batch.cancel(AccountId(id_u64(*account)), symbol, oid)
            }
            Decision::Rejected { .. } => batch.release_held(symbol, oid, ReleaseReason::Rejected),
            Decision::Expired => batch.release_held(symbol, oid, ReleaseReason::Expired),
        };
        let outcome = match released {
            Ok(o) => o,
            Err(Reject::UnknownOrder) => return Err(not_pending(id)),
            Err(r) => {
                return Err(Refusal::Conflict(format!(
                    "order {id} cannot be released: {r}"
                )));
            }
        };
        self.record(symbol, &outcome, origin);
        let (actor, action, cancel_reason, metric, rejected_by, reason) = match decision {
            Decision::Rejected { admin, reason } => (
                format!("user:{admin}"),
                "order.approval_rejected",
                "approval_rejected",
                "rejected",
                Some(admin),
                Some(reason.to_owned()),
            ),
            Decision::Expired => (
                "system:approvals".to_owned(),
                "order.approval_expired",
                "approval_expired",
                "expired",
                None,
                None,
            ),
            Decision::Cancelled { account } => (
                format!("account:{account}"),
                "order.approval_cancelled",
                "requested",
                "cancelled",
                None,
                None,
            ),
        };
        self.decide(HeldChange {
            id,
            status: "cancelled",
            filled: 0,
            remaining: 0,
            cancel_reason: Some(cancel_reason),
            priority: None,
            approved_by: None,
            rejected_by,
            rejected_reason: reason.clone(),
        });
        self.writes.audits.push(NewAuditEvent {
            actor,
            action: action.into(),
            subject: Some(format!("order:{id}")),
            request_id: request_id.clone(),
            details: serde_json::json!({
                "order_id": id, "symbol": symbol, "notional": notional, "admin": rejected_by,
                "reason": reason,
            }),
        });
        self.approvals.push(ApprovalMetric::Decided {
            symbol: symbol.to_owned(),
            outcome: metric,
            waited: (now - view.created_at).as_seconds_f64().max(0.0),
        });
        let mut view = view.clone();
        view.status = "cancelled".into();
        view.remaining = Qty::ZERO;
        view.cancel_reason = Some(cancel_reason.to_owned());
        view.updated_at = now;
        Ok(Done::Order(Box::new(view)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use tradeplane_engine::Engine;
    use tradeplane_engine::ledger::Account;
    use tradeplane_engine::num::{Cash, Qty};
    use tradeplane_engine::order::{AccountId, OrderType, Side};

    use super::super::{Loaded, Plan};
    use super::ApprovalMetric;
    use crate::store::market::SymbolRow;
    use crate::trading::{Done, PlaceOrder, Request};

    /// Symbol "T" (tick 1, lot 1) with approval above 1,000; accounts 1 and 2 with 100,000
    /// cash and 1,000 units.
    fn engine() -> Engine {
        let t = serde_json::from_str(
            r#"{"symbol":"T","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"1000",
                "maxNotional":"1000000","approvalNotional":"1000"}"#,
        )
        .expect("instrument");
        let mut e = Engine::new(vec![t]).expect("engine");
        for id in 1..=2 {
            let mut a = Account::with_cash("100000".parse::<Cash>().expect("cash"));
            a.positions.entry("T".into()).or_default().qty = "1000".parse().expect("qty");
            e.put_account(AccountId(id), a);
        }
        e
    }

    fn limit(account: i64, side: Side, price: &str, qty: &str) -> Request {
        Request::Place {
            account,
            order: PlaceOrder {
                symbol: "T".into(),
                side,
                order_type: OrderType::Limit,
                price: Some(price.parse().expect("price")),
                qty: qty.parse().expect("qty"),
                tif: None,
                client_order_id: None,
            },
            request_id: None,
        }
    }

    fn build(engine: &mut Engine, requests: &[Request], first_id: i64) -> Plan {
        let refs: Vec<&Request> = requests.iter().collect();
        let mut batch = engine.begin_batch();
        let plan = Plan::build(
            &mut batch,
            &refs,
            Loaded {
                existing: &HashMap::new(),
                missing: &|_| false,
                symbols: BTreeMap::from([("T".to_owned(), SymbolRow::default())]),
                approval_timeout: chrono::Duration::seconds(60),
            },
            &mut (first_id..),
            "origin",
            chrono::Utc::now(),
        );
        batch.commit();
        plan
    }

    #[test]
    fn a_held_order_is_written_pending_and_its_approval_merges_with_later_fills() {
        let mut e = engine();
        let plan = build(&mut e, &[limit(1, Side::Buy, "100", "20")], 1);
        let row = &plan.writes.new_orders[0];
        assert_eq!((row.status, row.priority), ("pending", None));
        let held = row.approval.as_ref().expect("approval columns");
        assert_eq!(
            held.reserved_cash,
            "2000".parse::<Cash>().expect("c").raw() as i64
        );
        assert_eq!(held.notional, held.reserved_cash);
        assert_eq!(
            plan.writes.accounts[&1].cash_reserved, held.reserved_cash,
            "the reservation is written with the account"
        );
        let Ok(Done::Order(view)) = &plan.replies[0] else {
            panic!("{:?}", plan.replies[0]);
        };
        assert_eq!(view.status, "pending_approval");
        assert!(
            plan.writes
                .audits
                .iter()
                .any(|a| a.action == "order.approval_requested")
        );
        assert_eq!(
            plan.approvals,
            vec![ApprovalMetric::Held { symbol: "T".into() }]
        );

        // Approved, then filled by a later order of the same batch: one held-order row.
        let approve = Request::Approve {
            order_id: 1,
            view: view.clone(),
            admin: 7,
            request_id: None,
        };
        let plan = build(&mut e, &[approve, limit(2, Side::Sell, "100", "5")], 10);
        assert!(
            plan.writes.order_changes.is_empty(),
            "{:?}",
            plan.writes.order_changes
        );
        assert_eq!(plan.writes.held_changes.len(), 1);
        let change = &plan.writes.held_changes[0];
        let q = |s: &str| s.parse::<Qty>().expect("qty").raw();
        assert_eq!(
            (
                change.status,
                change.filled,
                change.remaining,
                change.approved_by
            ),
            ("partially_filled", q("5"), q("15"), Some(7))
        );
        assert!(change.priority.is_some(), "it took a time priority");
        assert_eq!(plan.writes.trades.len(), 1);
        assert!(
            plan.writes
                .audits
                .iter()
                .any(|a| a.action == "order.approved")
        );
        // A second approval in a later batch: not pending any more.
        let again = Request::Approve {
            order_id: 1,
            view: view.clone(),
            admin: 7,
            request_id: None,
        };
        let plan = build(&mut e, &[again], 20);
        assert!(matches!(
            plan.replies[0],
            Err(crate::trading::Refusal::NotPending(_))
        ));
        assert!(plan.writes.held_changes.is_empty());
    }
}
