//! Orders held for four-eyes approval (issue 16): reservations conserved while held, approval
//! enters the book in approval order with risk re-checked, release restores the account
//! exactly, and batches and restores keep the held set.

mod common;

use common::*;
use tradeplane_engine::events::{EventKind, ReleaseReason};
use tradeplane_engine::ledger::Account;
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, Side, TimeInForce};
use tradeplane_engine::risk::Reject;
use tradeplane_engine::{Engine, OrderStatus};

/// Symbol "T" with approval above a notional of 10,000; accounts 1..=3 (100,000 cash, 1,000 units).
fn engine_with_approval() -> Engine {
    let mut inst = test_instrument();
    inst.approval_notional = Some(c("10000"));
    let mut e = Engine::new(vec![inst]).unwrap();
    for id in 1..=3 {
        let mut a = Account::with_cash(c("100000"));
        a.positions.entry("T".into()).or_default().qty = q("1000");
        e.put_account(AccountId(id), a);
    }
    e
}

fn lim(id: u64, acct: u64, side: Side, price: &str, qty: &str) -> NewOrder {
    NewOrder::limit(id, acct, "T", side, p(price), q(qty), TimeInForce::Gtc)
}

fn acct(e: &Engine, id: u64) -> Account {
    e.account(AccountId(id)).cloned().unwrap()
}

#[test]
fn a_large_order_is_held_reserved_and_kept_out_of_the_book() {
    let mut e = engine_with_approval();
    let out = e.submit(lim(1, 1, Side::Buy, "100", "101")).unwrap();
    assert_eq!(out.status, OrderStatus::PendingApproval);
    assert_eq!((out.filled, out.resting), (q("0"), q("0")));
    assert!(matches!(out.events[0].kind, EventKind::OrderHeld(_)));
    assert!(
        out.events.iter().all(|e| e.md_seq.is_none()),
        "nothing public"
    );
    assert_eq!(acct(&e, 1).cash_reserved, c("10100"));
    assert_eq!(acct(&e, 1).open_orders, 0);
    assert!(e.depth("T", 5).unwrap().bids.is_empty());
    assert_eq!(e.held_orders("T").count(), 1);
    // A sell is held with its quantity reserved.
    let out = e.submit(lim(2, 2, Side::Sell, "200", "60")).unwrap();
    assert_eq!(out.status, OrderStatus::PendingApproval);
    assert_eq!(acct(&e, 2).position("T").reserved, q("60"));
    // At or below the threshold nothing changes.
    let out = e.submit(lim(3, 3, Side::Buy, "100", "100")).unwrap();
    assert_eq!(out.status, OrderStatus::New);
    assert_eq!(e.depth("T", 5).unwrap().bids.len(), 1);
}

#[test]
fn approval_matches_against_the_book_with_exact_balances() {
    let mut e = engine_with_approval();
    e.submit(lim(1, 2, Side::Sell, "100", "100")).unwrap();
    e.submit(lim(2, 1, Side::Buy, "101", "100")).unwrap();
    assert_eq!(acct(&e, 1).cash_reserved, c("10100"));
    let approval = e.approve("T", OrderId(2)).unwrap();
    assert_eq!(approval.refused, None);
    assert_eq!(approval.outcome.status, OrderStatus::Filled);
    assert_eq!(trades(&approval.outcome).len(), 1);
    assert!(approval.outcome.events.iter().any(|ev| matches!(
        &ev.kind,
        EventKind::HoldReleased(r) if r.reason == ReleaseReason::Approved
    )));
    let buyer = acct(&e, 1);
    assert_eq!(
        (buyer.cash, buyer.cash_reserved),
        (c("90000"), c("0")),
        "paid 10,000 at the maker's price, nothing left reserved"
    );
    assert_eq!(buyer.position("T").qty, q("1100"));
    let seller = acct(&e, 2);
    assert_eq!(
        (seller.cash, seller.position("T").qty),
        (c("110000"), q("900"))
    );
    assert_eq!(e.held_orders("T").count(), 0);
    assert!(matches!(
        e.approve("T", OrderId(2)),
        Err(Reject::UnknownOrder)
    ));
}

#[test]
fn approved_orders_take_time_priority_in_approval_order() {
    let mut e = engine_with_approval();
    e.submit(lim(1, 1, Side::Buy, "100", "200")).unwrap();
    e.submit(lim(2, 2, Side::Buy, "100", "200")).unwrap();
    e.approve("T", OrderId(2)).unwrap();
    e.approve("T", OrderId(1)).unwrap();
    let out = e.submit(lim(3, 3, Side::Sell, "100", "50")).unwrap();
    let t = trades(&out);
    assert_eq!(
        t[0].maker_order,
        OrderId(2),
        "approved first, matched first"
    );
}

#[test]
fn release_restores_the_account_exactly_and_cancel_checks_the_owner() {
    let mut e = engine_with_approval();
    let before = acct(&e, 1);
    e.submit(lim(1, 1, Side::Buy, "100", "200")).unwrap();
    let out = e
        .release_held("T", OrderId(1), ReleaseReason::Rejected)
        .unwrap();
    assert_eq!(out.status, OrderStatus::Cancelled);
    assert_eq!(acct(&e, 1), before);
    e.submit(lim(2, 1, Side::Sell, "100", "200")).unwrap();
    assert!(matches!(
        e.cancel(AccountId(2), "T", OrderId(2)),
        Err(Reject::NotOwner)
    ));
    let out = e.cancel(AccountId(1), "T", OrderId(2)).unwrap();
    assert_eq!(out.status, OrderStatus::Cancelled);
    assert_eq!(acct(&e, 1), before);
    assert!(matches!(
        e.release_held("T", OrderId(2), ReleaseReason::Expired),
        Err(Reject::UnknownOrder)
    ));
}

#[test]
fn an_approval_that_fails_risk_releases_the_order() {
    let mut e = engine_with_approval();
    let before = acct(&e, 1);
    e.submit(lim(1, 1, Side::Buy, "100", "200")).unwrap();
    // The reservation keeps the cash; what can change is the market: here a halt.
    e.set_status("T", tradeplane_engine::instrument::TradingStatus::Halted)
        .unwrap();
    let approval = e.approve("T", OrderId(1)).unwrap();
    assert_eq!(approval.refused, Some(Reject::SymbolHalted));
    assert_eq!(approval.outcome.status, OrderStatus::Cancelled);
    assert!(approval.outcome.events.iter().any(|ev| matches!(
        &ev.kind,
        EventKind::HoldReleased(r) if r.reason == ReleaseReason::RiskRejected
    )));
    assert_eq!(acct(&e, 1), before, "the reservation is released");
    assert_eq!(e.held_orders("T").count(), 0);
}

#[test]
fn a_rolled_back_batch_restores_the_held_set() {
    let mut e = engine_with_approval();
    e.submit(lim(1, 1, Side::Buy, "100", "200")).unwrap();
    let before = (e.market_state("T"), acct(&e, 1));
    {
        let mut b = e.begin_batch();
        b.approve("T", OrderId(1)).unwrap();
        b.submit(lim(2, 1, Side::Buy, "100", "300")).unwrap();
        b.rollback();
    }
    assert_eq!((e.market_state("T"), acct(&e, 1)), before);
    assert_eq!(e.held_orders("T").count(), 1);
}

#[test]
fn held_orders_survive_an_export_and_restore() {
    let mut e = engine_with_approval();
    e.submit(lim(1, 1, Side::Buy, "100", "200")).unwrap();
    e.submit(lim(2, 2, Side::Sell, "101", "5")).unwrap();
    let state = e.market_state("T").unwrap();
    assert_eq!(state.held.len(), 1);
    let accounts: Vec<(AccountId, Account)> =
        (1..=3).map(|i| (AccountId(i), acct(&e, i))).collect();
    let mut fresh = engine_with_approval();
    for (id, a) in accounts {
        fresh.put_account(id, a);
    }
    fresh.restore_market("T", state.clone()).unwrap();
    assert_eq!(fresh.market_state("T").unwrap(), state);
    let approval = fresh.approve("T", OrderId(1)).unwrap();
    assert_eq!(approval.outcome.status, OrderStatus::New);
    assert_eq!(
        fresh.account(AccountId(1)).unwrap().cash_reserved,
        c("20000")
    );
}

mod props {
    //! Random streams of orders, approvals, releases and cancels: after every step each
    //! account's reservations equal what its resting and held orders reserve, total cash is
    //! conserved, and once everything is cancelled or released nothing stays reserved.

    use super::*;
    use proptest::prelude::*;
    use tradeplane_engine::num::{Cash, Qty, notional};

    #[derive(Debug, Clone)]
    enum Act {
        Limit(u64, bool, i64, i64),
        Market(u64, bool, i64),
        Approve(usize),
        Release(usize, bool),
        Cancel(u64, usize),
        Halt(bool),
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            6 => (1..=3u64, any::<bool>(), 95i64..=105, 1i64..=200)
                .prop_map(|(a, b, p, q)| Act::Limit(a, b, p, q)),
            1 => (1..=3u64, any::<bool>(), 1i64..=200).prop_map(|(a, b, q)| Act::Market(a, b, q)),
            3 => any::<usize>().prop_map(Act::Approve),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Act::Release(i, r)),
            2 => (1..=3u64, any::<usize>()).prop_map(|(a, i)| Act::Cancel(a, i)),
            1 => any::<bool>().prop_map(Act::Halt),
        ]
    }

    /// Reserved cash and position per account from the book and the held orders.
    fn expected(e: &Engine, id: u64) -> (Cash, Qty) {
        let mut cash = Cash::ZERO;
        let mut qty = Qty::ZERO;
        let state = e.market_state("T").unwrap();
        for o in state.resting.iter().filter(|o| o.account == AccountId(id)) {
            match o.side {
                Side::Buy => cash += notional(o.price, o.remaining),
                Side::Sell => qty += o.remaining,
            }
        }
        for h in state
            .held
            .iter()
            .filter(|h| h.order.account == AccountId(id))
        {
            cash += h.cash_reserved;
            qty += h.qty_reserved;
        }
        (cash, qty)
    }

    fn check(e: &Engine) {
        let mut total = Cash::ZERO;
        for id in 1..=3 {
            let a = acct(e, id);
            assert_eq!(
                (a.cash_reserved, a.position("T").reserved),
                expected(e, id),
                "account {id}"
            );
            total += a.cash;
        }
        assert_eq!(total, c("300000"), "cash is conserved");
    }

    proptest! {
        #[test]
        fn reservations_follow_resting_and_held_orders(acts in proptest::collection::vec(act(), 1..60)) {
            let mut e = engine_with_approval();
            let mut next = 1u64;
            for a in acts {
                let held: Vec<OrderId> = e.held_orders("T").map(|h| h.order.id).collect();
                match a {
                    Act::Limit(acct, buy, p, qty) => {
                        let side = if buy { Side::Buy } else { Side::Sell };
                        let _ = e.submit(lim(next, acct, side, &p.to_string(), &qty.to_string()));
                        next += 1;
                    }
                    Act::Market(acct, buy, qty) => {
                        let side = if buy { Side::Buy } else { Side::Sell };
                        let _ = e.submit(NewOrder::market(next, acct, "T", side, q(&qty.to_string())));
                        next += 1;
                    }
                    Act::Approve(i) if !held.is_empty() => {
                        let id = held[i % held.len()];
                        let approval = e.approve("T", id).unwrap();
                        prop_assert!(e.held_order("T", id).is_none());
                        if approval.refused.is_some() {
                            prop_assert_eq!(approval.outcome.status, OrderStatus::Cancelled);
                        }
                    }
                    Act::Release(i, expired) if !held.is_empty() => {
                        let reason = if expired { ReleaseReason::Expired } else { ReleaseReason::Rejected };
                        e.release_held("T", held[i % held.len()], reason).unwrap();
                    }
                    Act::Cancel(acct, i) => {
                        let mine: Vec<OrderId> = e
                            .market_state("T")
                            .unwrap()
                            .resting
                            .iter()
                            .map(|o| (o.id, o.account))
                            .chain(e.held_orders("T").map(|h| (h.order.id, h.order.account)))
                            .filter(|(_, a)| *a == AccountId(acct))
                            .map(|(id, _)| id)
                            .collect();
                        if !mine.is_empty() {
                            e.cancel(AccountId(acct), "T", mine[i % mine.len()]).unwrap();
                        }
                    }
                    Act::Halt(halt) => {
                        let status = if halt {
                            tradeplane_engine::instrument::TradingStatus::Halted
                        } else {
                            tradeplane_engine::instrument::TradingStatus::Open
                        };
                        e.set_status("T", status).unwrap();
                    }
                    Act::Approve(_) | Act::Release(..) => {}
                }
                check(&e);
            }
            // Cancel and release everything: nothing stays reserved.
            let state = e.market_state("T").unwrap();
            for o in state.resting {
                e.cancel(o.account, "T", o.id).unwrap();
            }
            for h in state.held {
                e.release_held("T", h.order.id, ReleaseReason::Expired).unwrap();
            }
            for id in 1..=3 {
                let a = acct(&e, id);
                prop_assert_eq!((a.cash_reserved, a.position("T").reserved), (Cash::ZERO, Qty::ZERO));
                prop_assert_eq!(a.open_orders, 0);
            }
        }
    }
}
