//! Unit tests per risk rule, order type and time in force.

mod common;

use common::*;
use tradeplane_engine::events::{CancelReason, EventKind};
use tradeplane_engine::instrument::TradingStatus;
use tradeplane_engine::ledger::Account;
use tradeplane_engine::num::{Cash, Qty};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, OrderType, Side::*, TimeInForce::*};
use tradeplane_engine::risk::Reject;
use tradeplane_engine::{Engine, MarketState, OrderStatus};

fn lim(
    id: u64,
    acct: u64,
    side: tradeplane_engine::order::Side,
    price: &str,
    qty: &str,
) -> NewOrder {
    NewOrder::limit(id, acct, "T", side, p(price), q(qty), Gtc)
}

fn cancels(o: &tradeplane_engine::Outcome) -> Vec<(OrderId, CancelReason, Qty)> {
    o.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::OrderCancelled(c) => Some((c.id, c.reason, c.cancelled)),
            _ => None,
        })
        .collect()
}

#[test]
fn limit_order_rests_then_matches_at_maker_price() {
    let mut e = engine(2);
    let o = e.submit(lim(1, 1, Sell, "100", "5")).unwrap();
    assert_eq!(o.status, OrderStatus::New);
    assert_eq!(e.quote("T").unwrap().ask.unwrap().price, p("100"));
    let o = e.submit(lim(2, 2, Buy, "105", "3")).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    let t = trades(&o);
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].price, t[0].qty, t[0].maker_order),
        (p("100"), q("3"), OrderId(1))
    );
    assert_eq!(t[0].maker_remaining, q("2"));
    let buyer = e.account(AccountId(2)).unwrap();
    assert_eq!(buyer.cash, c("99700"));
    assert_eq!(
        buyer.cash_reserved,
        Cash::ZERO,
        "better price releases the whole reservation"
    );
    assert_eq!(buyer.position("T").qty, q("1003"));
    let seller = e.account(AccountId(1)).unwrap();
    assert_eq!(seller.cash, c("100300"));
    assert_eq!(seller.position("T").reserved, q("2"));
    assert_eq!(e.last_trade("T").unwrap().price, p("100"));
}

#[test]
fn partial_fill_rests_remainder() {
    let mut e = engine(2);
    e.submit(lim(1, 1, Sell, "100", "2")).unwrap();
    let o = e.submit(lim(2, 2, Buy, "100", "5")).unwrap();
    assert_eq!(o.status, OrderStatus::PartiallyFilled);
    assert_eq!((o.filled, o.resting), (q("2"), q("3")));
    let d = e.depth("T", 5).unwrap();
    assert!(d.asks.is_empty());
    assert_eq!((d.bids[0].price, d.bids[0].qty), (p("100"), q("3")));
    assert_eq!(e.account(AccountId(2)).unwrap().cash_reserved, c("300"));
    assert_eq!(e.account(AccountId(2)).unwrap().open_orders, 1);
    assert_eq!(e.account(AccountId(1)).unwrap().open_orders, 0);
}

#[test]
fn price_time_priority_at_one_price_and_across_prices() {
    let mut e = engine(4);
    e.submit(lim(1, 1, Sell, "101", "1")).unwrap();
    e.submit(lim(2, 2, Sell, "100", "1")).unwrap();
    e.submit(lim(3, 3, Sell, "100", "1")).unwrap();
    let o = e.submit(lim(4, 4, Buy, "101", "3")).unwrap();
    let makers: Vec<_> = trades(&o).iter().map(|t| t.maker_order).collect();
    assert_eq!(makers, [OrderId(2), OrderId(3), OrderId(1)]);
}

#[test]
fn ioc_cancels_remainder() {
    let mut e = engine(2);
    e.submit(lim(1, 1, Sell, "100", "2")).unwrap();
    let o = e
        .submit(NewOrder::limit(2, 2, "T", Buy, p("100"), q("5"), Ioc))
        .unwrap();
    assert_eq!(
        (o.status, o.filled, o.resting),
        (OrderStatus::Cancelled, q("2"), Qty::ZERO)
    );
    assert_eq!(
        cancels(&o),
        [(OrderId(2), CancelReason::IocRemainder, q("3"))]
    );
    assert!(e.book("T").unwrap().is_empty());
    assert_eq!(e.account(AccountId(2)).unwrap().cash_reserved, Cash::ZERO);
}

#[test]
fn fok_is_all_or_nothing() {
    let mut e = engine(3);
    e.submit(lim(1, 1, Sell, "100", "2")).unwrap();
    e.submit(lim(2, 2, Sell, "101", "2")).unwrap();
    let before = e.market_state("T").unwrap();
    let o = e
        .submit(NewOrder::limit(3, 3, "T", Buy, p("101"), q("5"), Fok))
        .unwrap();
    assert_eq!((o.status, o.filled), (OrderStatus::Cancelled, Qty::ZERO));
    assert!(trades(&o).is_empty());
    assert_eq!(
        cancels(&o),
        [(OrderId(3), CancelReason::FokUnfillable, q("5"))]
    );
    assert_eq!(e.market_state("T").unwrap().resting, before.resting);
    assert_eq!(e.account(AccountId(3)).unwrap().cash, c("100000"));
    assert_eq!(e.account(AccountId(3)).unwrap().cash_reserved, Cash::ZERO);
    let o = e
        .submit(NewOrder::limit(4, 3, "T", Buy, p("101"), q("4"), Fok))
        .unwrap();
    assert_eq!((o.status, o.filled), (OrderStatus::Filled, q("4")));
    assert_eq!(e.account(AccountId(3)).unwrap().cash, c("99598"));
}

#[test]
fn market_order_on_empty_book_cancels() {
    let mut e = engine(1);
    let o = e.submit(NewOrder::market(1, 1, "T", Buy, q("5"))).unwrap();
    assert_eq!((o.status, o.filled), (OrderStatus::Cancelled, Qty::ZERO));
    assert_eq!(
        cancels(&o),
        [(OrderId(1), CancelReason::MarketRemainder, q("5"))]
    );
    assert_eq!(e.account(AccountId(1)).unwrap().cash_reserved, Cash::ZERO);
}

#[test]
fn market_order_sweeps_levels_and_reserves_exact_cost() {
    let mut e = engine(3);
    e.submit(lim(1, 1, Sell, "100", "2")).unwrap();
    e.submit(lim(2, 2, Sell, "102", "2")).unwrap();
    let o = e.submit(NewOrder::market(3, 3, "T", Buy, q("3"))).unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    let buyer = e.account(AccountId(3)).unwrap();
    assert_eq!(buyer.cash, c("99698"));
    assert_eq!(buyer.cash_reserved, Cash::ZERO);
    // A market buy needing more cash than available is rejected with the exact cost.
    let mut poor = Account::with_cash(c("50"));
    poor.max_open_orders = 5;
    e.put_account(AccountId(9), poor);
    assert_eq!(
        e.submit(NewOrder::market(4, 9, "T", Buy, q("1"))),
        Err(Reject::InsufficientCash {
            needed: c("102"),
            available: c("50")
        })
    );
}

#[test]
fn market_order_stops_at_price_band() {
    let mut e = engine(3);
    e.submit(lim(1, 1, Sell, "100", "1")).unwrap();
    e.submit(lim(2, 2, Buy, "100", "1")).unwrap(); // last trade 100, band 90..=110
    e.submit(lim(3, 1, Sell, "110", "1")).unwrap();
    // Move the band: trade at 110, then resting ask at 120 is inside the band of 110 only.
    e.submit(lim(4, 1, Sell, "109", "1")).unwrap();
    let o = e.submit(NewOrder::market(5, 3, "T", Buy, q("3"))).unwrap();
    let prices: Vec<_> = trades(&o).iter().map(|t| t.price).collect();
    assert_eq!(prices, [p("109"), p("110")]);
    assert_eq!(o.status, OrderStatus::Cancelled);
    assert_eq!(o.filled, q("2"));
}

#[test]
fn self_trade_prevention_cancels_resting_order() {
    let mut e = engine(2);
    e.submit(lim(1, 1, Sell, "100", "2")).unwrap();
    e.submit(lim(2, 2, Sell, "101", "2")).unwrap();
    let o = e.submit(lim(3, 1, Buy, "101", "1")).unwrap();
    assert_eq!(
        cancels(&o),
        [(OrderId(1), CancelReason::SelfTradePrevention, q("2"))]
    );
    let t = trades(&o);
    assert_eq!(
        (t.len(), t[0].maker_order, t[0].price),
        (1, OrderId(2), p("101"))
    );
    let a = e.account(AccountId(1)).unwrap();
    assert_eq!(a.position("T").reserved, Qty::ZERO);
    assert_eq!(a.open_orders, 0);
    assert!(!e.book("T").unwrap().contains(OrderId(1)));
}

#[test]
fn cancel_releases_reservation_and_checks_owner() {
    let mut e = engine(2);
    e.submit(lim(1, 1, Buy, "100", "3")).unwrap();
    assert_eq!(e.account(AccountId(1)).unwrap().cash_reserved, c("300"));
    assert_eq!(
        e.cancel(AccountId(2), "T", OrderId(1)),
        Err(Reject::NotOwner)
    );
    assert_eq!(
        e.cancel(AccountId(1), "T", OrderId(9)),
        Err(Reject::UnknownOrder)
    );
    assert_eq!(
        e.cancel(AccountId(1), "X", OrderId(1)),
        Err(Reject::UnknownSymbol)
    );
    let o = e.cancel(AccountId(1), "T", OrderId(1)).unwrap();
    assert_eq!(cancels(&o), [(OrderId(1), CancelReason::Requested, q("3"))]);
    let a = e.account(AccountId(1)).unwrap();
    assert_eq!((a.cash_reserved, a.open_orders), (Cash::ZERO, 0));
    assert!(e.book("T").unwrap().is_empty());
}

#[test]
fn risk_rules_each_have_a_reason() {
    let mut e = engine(2);
    let r = |e: &mut Engine, o: NewOrder| e.submit(o).unwrap_err();
    let mut o = lim(1, 1, Buy, "100", "1");
    o.symbol = "NOPE".into();
    assert_eq!(r(&mut e, o), Reject::UnknownSymbol);
    assert_eq!(
        r(&mut e, lim(1, 7, Buy, "100", "1")),
        Reject::UnknownAccount
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "100", "0")),
        Reject::InvalidQuantity
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "100", "1.5")),
        Reject::QuantityNotOnLot { lot: q("1") }
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "100", "1001")),
        Reject::QuantityAboveMax { max: q("1000") }
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "100.5", "1")),
        Reject::PriceNotOnTick { tick: p("1") }
    );
    assert_eq!(r(&mut e, lim(1, 1, Buy, "0", "1")), Reject::MissingPrice);
    let mut m = NewOrder::market(1, 1, "T", Buy, q("1"));
    m.price = Some(p("1"));
    assert_eq!(r(&mut e, m), Reject::UnexpectedPrice);
    let mut m = NewOrder::market(1, 1, "T", Buy, q("1"));
    m.tif = Gtc;
    assert_eq!(r(&mut e, m), Reject::MarketOrderNeedsIocOrFok);
    let mut l = lim(1, 1, Buy, "100", "1");
    l.order_type = OrderType::Limit;
    l.price = None;
    assert_eq!(r(&mut e, l), Reject::MissingPrice);
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "1001", "1000")),
        Reject::NotionalTooLarge {
            notional: c("1001000"),
            max: c("1000000")
        }
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Buy, "1000", "101")),
        Reject::InsufficientCash {
            needed: c("101000"),
            available: c("100000")
        }
    );
    assert_eq!(
        r(&mut e, lim(1, 1, Sell, "100", "1001")).code(),
        "quantityAboveMax"
    );
    e.submit(lim(1, 1, Sell, "100", "600")).unwrap();
    assert_eq!(
        r(&mut e, lim(1, 1, Sell, "100", "1")),
        Reject::DuplicateOrderId
    );
    assert_eq!(
        r(&mut e, lim(2, 1, Sell, "100", "401")),
        Reject::InsufficientPosition {
            needed: q("401"),
            available: q("400")
        }
    );
    // Band: after a trade at 100 (10%), 111 and 89 are out, 110 and 90 in.
    e.submit(lim(3, 2, Buy, "100", "1")).unwrap();
    assert_eq!(
        r(&mut e, lim(4, 2, Buy, "89", "1")),
        Reject::PriceOutsideBand { last: p("100") }
    );
    assert_eq!(
        r(&mut e, lim(4, 2, Sell, "111", "1")),
        Reject::PriceOutsideBand { last: p("100") }
    );
    assert!(e.submit(lim(4, 2, Buy, "90", "1")).is_ok());
    e.set_status("T", TradingStatus::Halted).unwrap();
    assert_eq!(r(&mut e, lim(5, 2, Buy, "95", "1")), Reject::SymbolHalted);
    assert!(
        e.cancel(AccountId(2), "T", OrderId(4)).is_ok(),
        "cancel allowed while halted"
    );
}

#[test]
fn min_qty_and_open_order_limit_and_short_selling() {
    let mut inst = test_instrument();
    inst.min_qty = q("5");
    let mut e = Engine::new(vec![inst]).unwrap();
    let mut a = Account::with_cash(c("100000"));
    a.max_open_orders = 2;
    e.put_account(AccountId(1), a.clone());
    assert_eq!(
        e.submit(lim(1, 1, Buy, "10", "4")),
        Err(Reject::QuantityBelowMin { min: q("5") })
    );
    e.submit(lim(1, 1, Buy, "10", "5")).unwrap();
    e.submit(lim(2, 1, Buy, "11", "5")).unwrap();
    assert_eq!(
        e.submit(lim(3, 1, Buy, "12", "5")),
        Err(Reject::OpenOrderLimit { limit: 2 })
    );
    // IOC never rests so it is not subject to the open-order limit.
    assert!(
        e.submit(NewOrder::limit(3, 1, "T", Buy, p("12"), q("5"), Ioc))
            .is_ok()
    );
    // No position: a plain account cannot sell, a shorting account can.
    assert!(matches!(
        e.submit(lim(4, 1, Sell, "20", "5")),
        Err(Reject::InsufficientPosition { .. })
    ));
    a.allow_short = true;
    e.put_account(AccountId(2), a);
    e.submit(lim(5, 2, Sell, "11", "5")).unwrap();
    let s = e.account(AccountId(2)).unwrap();
    assert_eq!(s.position("T").qty, -q("5"));
    assert_eq!(s.cash, c("100055"));
}

#[test]
fn sequence_numbers_are_contiguous_and_md_seq_counts_public_events() {
    let mut e = engine(2);
    let mut seqs = vec![];
    let mut md = vec![];
    for o in [lim(1, 1, Sell, "100", "2"), lim(2, 2, Buy, "100", "3")] {
        for ev in e.submit(o).unwrap().events {
            seqs.push(ev.seq);
            assert_eq!(ev.md_seq.is_some(), ev.kind.is_public());
            md.extend(ev.md_seq);
        }
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(md, (1..=md.len() as u64).collect::<Vec<_>>());
    assert_eq!(e.seq("T"), Some(seqs.len() as u64));
    assert!(md.len() >= 3, "book levels and the trade are public");
}

#[test]
fn batch_rollback_restores_books_and_accounts() {
    let mut e = engine(2);
    e.submit(lim(1, 1, Sell, "100", "5")).unwrap();
    let state = e.market_state("T").unwrap();
    let accts: Vec<_> = [1, 2]
        .map(|i| e.account(AccountId(i)).unwrap().clone())
        .into();
    {
        let mut b = e.begin_batch();
        b.submit(lim(2, 2, Buy, "100", "3")).unwrap();
        b.cancel(AccountId(1), "T", OrderId(1)).unwrap();
        assert!(b.engine().book("T").unwrap().is_empty());
        b.rollback();
    }
    assert_eq!(e.market_state("T").unwrap(), state);
    assert_eq!(e.account(AccountId(1)).unwrap(), &accts[0]);
    assert_eq!(e.account(AccountId(2)).unwrap(), &accts[1]);
    {
        let mut b = e.begin_batch();
        b.submit(lim(2, 2, Buy, "100", "3")).unwrap();
        // dropped without commit: rolled back as well
    }
    assert_eq!(e.market_state("T").unwrap(), state);
    let mut b = e.begin_batch();
    b.submit(lim(2, 2, Buy, "100", "3")).unwrap();
    b.commit();
    assert_eq!(
        e.book("T").unwrap().get(OrderId(1)).unwrap().remaining,
        q("2")
    );
    assert_eq!(e.seq("T"), Some(state.seq + 5));
}

#[test]
fn restore_rebuilds_an_identical_market() {
    let mut e = engine(3);
    e.submit(lim(1, 1, Sell, "101", "2")).unwrap();
    e.submit(lim(2, 2, Sell, "101", "2")).unwrap();
    e.submit(lim(3, 1, Buy, "99", "2")).unwrap();
    e.submit(lim(4, 3, Buy, "101", "1")).unwrap();
    let mut state = e.market_state("T").unwrap();
    state.resting.reverse(); // storage order does not matter, priority does
    let mut r = engine(3);
    for i in 1..=3 {
        r.put_account(AccountId(i), e.account(AccountId(i)).unwrap().clone());
    }
    r.restore_market("T", state.clone()).unwrap();
    assert_eq!(r.depth("T", 10), e.depth("T", 10));
    assert_eq!(r.last_trade("T"), e.last_trade("T"));
    let o1 = e.submit(lim(5, 3, Buy, "101", "3")).unwrap();
    let o2 = r.submit(lim(5, 3, Buy, "101", "3")).unwrap();
    assert_eq!(
        o1, o2,
        "replica produces the same events and sequence numbers"
    );
    let mut bad = state.clone();
    bad.resting[0].remaining = Qty::ZERO;
    assert!(r.restore_market("T", bad).is_err());
    let mut crossed = state;
    crossed.resting[0].price = p("200");
    crossed.resting[0].side = Buy;
    assert!(r.restore_market("T", crossed).is_err());
    let mut empty = Engine::new(vec![test_instrument()]).unwrap();
    assert!(matches!(
        empty.restore_market("T", e.market_state("T").unwrap()),
        Err(tradeplane_engine::engine::RestoreError::UnknownAccount(_))
    ));
    let _ = MarketState::default();
}
