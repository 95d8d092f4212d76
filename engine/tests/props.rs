//! Property tests over random order streams: book, priority, fills, conservation, reservations.
//!
//! Case count: proptest's default (256), overridable with `PROPTEST_CASES`.

mod common;

use std::collections::HashMap;

use common::*;
use proptest::prelude::*;
use tradeplane_engine::Engine;
use tradeplane_engine::book::RestingOrder;
use tradeplane_engine::events::EventKind;
use tradeplane_engine::ledger::Account;
use tradeplane_engine::num::{Cash, Price, Qty, notional};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, OrderType, Side, TimeInForce};

const ACCOUNTS: u64 = 4;

#[derive(Debug, Clone)]
enum Act {
    Limit(u64, Side, i64, i64, TimeInForce),
    Market(u64, Side, i64, TimeInForce),
    Cancel(u64, usize),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn act() -> impl Strategy<Value = Act> {
    let tif = prop_oneof![
        6 => Just(TimeInForce::Gtc),
        2 => Just(TimeInForce::Ioc),
        2 => Just(TimeInForce::Fok)
    ];
    let mtif = prop_oneof![Just(TimeInForce::Ioc), Just(TimeInForce::Fok)];
    prop_oneof![
        6 => (1..=ACCOUNTS, side(), 95i64..=105, 1i64..=20, tif)
            .prop_map(|(a, s, p, q, t)| Act::Limit(a, s, p, q, t)),
        1 => (1..=ACCOUNTS, side(), 1i64..=30, mtif).prop_map(|(a, s, q, t)| Act::Market(a, s, q, t)),
        2 => (1..=ACCOUNTS, any::<usize>()).prop_map(|(a, i)| Act::Cancel(a, i)),
    ]
}

/// Accounts with modest funds so cash/position rejections happen; account 4 may short.
fn setup() -> Engine {
    let mut e = Engine::new(vec![test_instrument()]).unwrap();
    for id in 1..=ACCOUNTS {
        let mut a = Account::with_cash(c("4000"));
        a.max_open_orders = 6;
        a.allow_short = id == 4;
        a.position_set("T", q("40"), c("4000"));
        e.put_account(AccountId(id), a);
    }
    e
}

trait PositionSet {
    fn position_set(&mut self, symbol: &str, qty: Qty, basis: Cash);
}
impl PositionSet for Account {
    fn position_set(&mut self, symbol: &str, qty: Qty, basis: Cash) {
        let p = self.positions.entry(symbol.into()).or_default();
        p.qty = qty;
        p.cost_basis = basis;
    }
}

fn to_order(a: &Act, id: u64) -> Option<NewOrder> {
    let units = |n: i64| Qty::from_units(n).unwrap();
    match *a {
        Act::Limit(acct, s, p, qty, tif) => Some(NewOrder::limit(
            id,
            acct,
            "T",
            s,
            Price::from_units(p).unwrap(),
            units(qty),
            tif,
        )),
        Act::Market(acct, s, qty, tif) => {
            let mut o = NewOrder::market(id, acct, "T", s, units(qty));
            o.tif = tif;
            Some(o)
        }
        Act::Cancel(..) => None,
    }
}

fn accounts(e: &Engine) -> Vec<(AccountId, Account)> {
    let mut v: Vec<_> = e.accounts().map(|(i, a)| (*i, a.clone())).collect();
    v.sort_by_key(|(i, _)| *i);
    v
}

/// Front of the best level on `side` in a model book.
fn model_front(model: &[RestingOrder], side: Side) -> Option<RestingOrder> {
    model
        .iter()
        .filter(|o| o.side == side)
        .min_by_key(|o| {
            let price_rank = match side {
                Side::Buy => -o.price.raw(),
                Side::Sell => o.price.raw(),
            };
            (price_rank, o.priority)
        })
        .copied()
}

fn check_invariants(e: &Engine, initial: &[(AccountId, Account)]) {
    let book = e.book("T").unwrap();
    if let (Some(b), Some(a)) = (book.best_bid(), book.best_ask()) {
        assert!(b.price < a.price, "crossed book {b:?} {a:?}");
    }
    let now = accounts(e);
    let total_cash: Cash = now
        .iter()
        .map(|(_, a)| a.cash)
        .fold(Cash::ZERO, |x, y| x + y);
    let init_cash: Cash = initial
        .iter()
        .map(|(_, a)| a.cash)
        .fold(Cash::ZERO, |x, y| x + y);
    assert_eq!(total_cash, init_cash, "cash not conserved");
    let total_pos: Qty = now
        .iter()
        .map(|(_, a)| a.position("T").qty)
        .fold(Qty::ZERO, |x, y| x + y);
    let init_pos: Qty = initial
        .iter()
        .map(|(_, a)| a.position("T").qty)
        .fold(Qty::ZERO, |x, y| x + y);
    assert_eq!(total_pos, init_pos, "position not conserved");
    for ((id, a), (_, a0)) in now.iter().zip(initial) {
        let mine: Vec<_> = book.orders().filter(|o| o.account == *id).collect();
        let cash_need = mine
            .iter()
            .filter(|o| o.side == Side::Buy)
            .fold(Cash::ZERO, |s, o| s + notional(o.price, o.remaining));
        let qty_need = mine
            .iter()
            .filter(|o| o.side == Side::Sell)
            .fold(Qty::ZERO, |s, o| s + o.remaining);
        let pos = a.position("T");
        assert_eq!(a.cash_reserved, cash_need, "cash reservation of {id:?}");
        assert_eq!(pos.reserved, qty_need, "position reservation of {id:?}");
        assert_eq!(a.open_orders as usize, mine.len(), "open orders of {id:?}");
        assert!(
            a.available_cash() >= Cash::ZERO,
            "negative available cash {id:?}"
        );
        if !a.allow_short {
            assert!(
                pos.available() >= Qty::ZERO,
                "negative available position {id:?}"
            );
        }
        let p0 = a0.position("T");
        assert_eq!(
            (pos.realized_pnl - pos.cost_basis) - (p0.realized_pnl - p0.cost_basis),
            a.cash - a0.cash,
            "P&L identity of {id:?}"
        );
    }
}

/// Applies one action, checking per-event properties against a model of the book.
fn step(
    e: &mut Engine,
    a: &Act,
    id: u64,
    ids: &mut Vec<(u64, u64)>,
    qty_of: &mut HashMap<OrderId, Qty>,
    filled: &mut HashMap<OrderId, Qty>,
) {
    let before_state = e.market_state("T").unwrap();
    let before_accts = accounts(e);
    let res = match to_order(a, id) {
        Some(o) => {
            qty_of.insert(o.id, o.qty);
            let limit = (o.order_type == OrderType::Limit)
                .then_some(o.price)
                .flatten();
            let side = o.side;
            let r = e.submit(o);
            if r.is_ok() {
                ids.push((
                    id,
                    match a {
                        Act::Limit(x, ..) | Act::Market(x, ..) | Act::Cancel(x, _) => *x,
                    },
                ));
            }
            r.map(|out| (out, Some((side, limit))))
        }
        None => {
            let Act::Cancel(acct, i) = *a else {
                unreachable!()
            };
            if ids.is_empty() {
                return;
            }
            let (oid, _) = ids[i % ids.len()];
            e.cancel(AccountId(acct), "T", OrderId(oid))
                .map(|o| (o, None))
        }
    };
    match res {
        Err(_) => {
            assert_eq!(
                e.market_state("T").unwrap(),
                before_state,
                "reject changed the book"
            );
            assert_eq!(accounts(e), before_accts, "reject changed accounts");
        }
        Ok((out, taker)) => {
            let mut model = before_state.resting.clone();
            let mut seq = before_state.seq;
            for ev in &out.events {
                seq += 1;
                assert_eq!(ev.seq, seq, "sequence gap");
                match &ev.kind {
                    EventKind::OrderCancelled(c) => model.retain(|o| o.id != c.id),
                    EventKind::OrderRested(r) => model.push(*r),
                    EventKind::Trade(t) => {
                        let front = model_front(&model, t.taker_side.opposite())
                            .expect("trade without maker");
                        assert_eq!(front.id, t.maker_order, "price-time priority violated");
                        assert_eq!(front.price, t.price);
                        assert_ne!(t.maker_account, t.taker_account, "self trade");
                        if let Some((side, Some(limit))) = taker {
                            match side {
                                Side::Buy => assert!(t.price <= limit),
                                Side::Sell => assert!(t.price >= limit),
                            }
                        }
                        for oid in [t.maker_order, t.taker_order] {
                            let f = filled.entry(oid).or_default();
                            *f += t.qty;
                            assert!(*f <= qty_of[&oid], "order {oid:?} overfilled");
                        }
                        let m = model
                            .iter_mut()
                            .find(|o| o.id == t.maker_order)
                            .expect("maker");
                        m.remaining -= t.qty;
                        assert_eq!(m.remaining, t.maker_remaining);
                        model.retain(|o| o.remaining > Qty::ZERO);
                    }
                    _ => {}
                }
            }
            let mut now = e.market_state("T").unwrap().resting;
            now.sort_by_key(|o| o.priority);
            model.sort_by_key(|o| o.priority);
            assert_eq!(now, model, "events do not explain the book");
        }
    }
}

fn run(e: &mut Engine, acts: &[Act], first_id: u64) {
    let initial = accounts(e);
    let mut ids = Vec::new();
    let mut qty_of = HashMap::new();
    let mut filled = HashMap::new();
    for (i, a) in acts.iter().enumerate() {
        step(
            e,
            a,
            first_id + i as u64,
            &mut ids,
            &mut qty_of,
            &mut filled,
        );
        check_invariants(e, &initial);
    }
}

proptest! {
    #[test]
    fn random_order_streams_keep_invariants(acts in prop::collection::vec(act(), 1..150)) {
        let mut e = setup();
        run(&mut e, &acts, 1);
        // A replica restored from the exported state sees the same market.
        let mut r = setup();
        for (id, a) in accounts(&e) {
            r.put_account(id, a);
        }
        r.restore_market("T", e.market_state("T").unwrap()).unwrap();
        prop_assert_eq!(r.depth("T", 100), e.depth("T", 100));
    }

    #[test]
    fn rolled_back_batches_leave_no_trace(
        committed in prop::collection::vec(act(), 0..60),
        discarded in prop::collection::vec(act(), 1..60),
    ) {
        let mut e = setup();
        run(&mut e, &committed, 1);
        let state = e.market_state("T").unwrap();
        let accts = accounts(&e);
        {
            let mut b = e.begin_batch();
            for (i, a) in discarded.iter().enumerate() {
                let id = 10_000 + i as u64;
                match to_order(a, id) {
                    Some(o) => { let _ = b.submit(o); }
                    None => {
                        if let Act::Cancel(acct, i) = a {
                            let oid = state.resting.get(i % state.resting.len().max(1)).map(|o| o.id);
                            if let Some(oid) = oid { let _ = b.cancel(AccountId(*acct), "T", oid); }
                        }
                    }
                }
            }
            b.rollback();
        }
        prop_assert_eq!(e.market_state("T").unwrap(), state);
        prop_assert_eq!(accounts(&e), accts);
    }
}
