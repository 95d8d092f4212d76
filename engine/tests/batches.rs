//! Batches across symbols, their rollback and commit, and the engine's read models, with exact
//! expected values: what the platform's matcher relies on when a commit fails (issue 10).

mod common;

use common::*;
use tradeplane_engine::instrument::{Instrument, TradingStatus};
use tradeplane_engine::ledger::Account;
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, Side, TimeInForce};
use tradeplane_engine::{Engine, LastTrade, MarketState};

/// Symbol "U": like "T" under another name.
fn second_instrument() -> Instrument {
    let mut i = test_instrument();
    i.symbol = "U".into();
    i
}

/// Accounts 1..=3 on symbols T and U, each holding cash and 1000 units of both.
fn two_symbols() -> Engine {
    let mut e = Engine::new(vec![test_instrument(), second_instrument()]).unwrap();
    for id in 1..=3 {
        let mut a = Account::with_cash(c("100000"));
        for s in ["T", "U"] {
            a.positions.entry(s.into()).or_default().qty = q("1000");
        }
        e.put_account(AccountId(id), a);
    }
    e
}

fn lim(id: u64, acct: u64, symbol: &str, side: Side, price: &str, qty: &str) -> NewOrder {
    NewOrder::limit(id, acct, symbol, side, p(price), q(qty), TimeInForce::Gtc)
}

fn accounts(e: &Engine) -> Vec<(AccountId, Account)> {
    let mut v: Vec<_> = e.accounts().map(|(i, a)| (*i, a.clone())).collect();
    v.sort_by_key(|(i, _)| *i);
    v
}

fn states(e: &Engine) -> [MarketState; 2] {
    ["T", "U"].map(|s| e.market_state(s).unwrap())
}

#[test]
fn read_models_show_exactly_the_engine_state() {
    let mut e = two_symbols();
    assert_eq!(
        accounts(&e).iter().map(|(i, _)| i.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(e.instrument("U").map(|i| i.symbol.as_str()), Some("U"));
    assert_eq!(e.instrument("V"), None);
    let mut symbols: Vec<_> = e.instruments().map(|i| i.symbol.clone()).collect();
    symbols.sort();
    assert_eq!(symbols, ["T", "U"]);

    e.submit(lim(1, 1, "T", Side::Sell, "101", "5")).unwrap();
    e.submit(lim(2, 2, "T", Side::Buy, "99", "4")).unwrap();
    let trade = e.submit(lim(3, 3, "T", Side::Buy, "101", "2")).unwrap();
    let trade_seq = trades(&trade)[0].trade_id;
    let trade_event = trade
        .events
        .iter()
        .find(|ev| matches!(&ev.kind, tradeplane_engine::events::EventKind::Trade(_)));
    assert_eq!(
        trade_event.map(|ev| ev.seq),
        Some(trade_seq),
        "a trade's id is its event's sequence number"
    );
    let quote = e.quote("T").unwrap();
    assert_eq!(
        quote.bid.map(|l| (l.price, l.qty, l.orders)),
        Some((p("99"), q("4"), 1))
    );
    assert_eq!(
        quote.ask.map(|l| (l.price, l.qty, l.orders)),
        Some((p("101"), q("3"), 1))
    );
    assert_eq!(
        e.last_trade("T"),
        Some(LastTrade {
            price: p("101"),
            qty: q("2"),
            seq: trade_seq
        })
    );
    let depth = e.depth("T", 10).unwrap();
    assert_eq!(depth.seq, e.seq("T").unwrap());
    assert_eq!((depth.bids.len(), depth.asks.len()), (1, 1));
    assert!(depth.md_seq > 0 && depth.md_seq < depth.seq);
    assert_eq!(e.book("T").map(|b| b.len()), Some(2));
    assert_eq!(e.book("U").map(|b| b.len()), Some(0));
    assert_eq!(e.seq("U"), Some(0));
    assert_eq!(e.last_trade("U"), None);
    for missing in [
        e.depth("V", 1).is_some(),
        e.quote("V").is_some(),
        e.seq("V").is_some(),
    ] {
        assert!(!missing, "an unknown symbol has no read model");
    }
    assert_eq!(e.book("V").map(|b| b.len()), None);
    let t = e.account(AccountId(3)).unwrap();
    assert_eq!(t.position("T").qty, q("1002"));
}

#[test]
fn rollback_restores_every_symbol_and_account_the_batch_touched() {
    let mut e = two_symbols();
    e.submit(lim(1, 1, "T", Side::Sell, "100", "5")).unwrap();
    e.submit(lim(2, 1, "U", Side::Sell, "50", "5")).unwrap();
    e.submit(lim(3, 2, "U", Side::Buy, "50", "1")).unwrap(); // a last trade on U
    let (before, accts) = (states(&e), accounts(&e));
    {
        let mut b = e.begin_batch();
        b.submit(lim(10, 2, "T", Side::Buy, "100", "3")).unwrap(); // partial fill of 1
        b.submit(lim(11, 3, "U", Side::Buy, "51", "4")).unwrap(); // fills 2, rests 0
        b.submit(lim(12, 3, "U", Side::Buy, "49", "7")).unwrap(); // rests
        b.cancel(AccountId(1), "T", OrderId(1)).unwrap();
        b.set_status("U", TradingStatus::Halted).unwrap();
        assert_ne!(states(b.engine()), before);
        b.rollback();
    }
    assert_eq!(states(&e), before);
    assert_eq!(accounts(&e), accts);
    assert_eq!(
        e.instrument("U").unwrap().status,
        TradingStatus::Open,
        "status restored"
    );
    assert_eq!(e.last_trade("U").map(|t| t.qty), Some(q("1")));
    assert_eq!(e.last_trade("T"), None);
    // The market keeps working from the restored state, with the same sequence numbers.
    let again = e.submit(lim(10, 2, "T", Side::Buy, "100", "3")).unwrap();
    assert_eq!(again.events[0].seq, before[0].seq + 1);
    assert_eq!(trades(&again)[0].maker_order, OrderId(1));
}

#[test]
fn a_committed_batch_survives_the_rollback_of_the_next() {
    let mut e = two_symbols();
    e.submit(lim(1, 1, "T", Side::Sell, "100", "5")).unwrap();
    let mut b = e.begin_batch();
    b.submit(lim(2, 2, "T", Side::Buy, "100", "2")).unwrap();
    b.submit(lim(3, 2, "U", Side::Sell, "60", "2")).unwrap();
    b.commit();
    let (committed, accts) = (states(&e), accounts(&e));
    assert_eq!(
        e.book("T").unwrap().get(OrderId(1)).map(|o| o.remaining),
        Some(q("3"))
    );
    {
        let mut b = e.begin_batch();
        b.submit(lim(4, 3, "T", Side::Buy, "100", "3")).unwrap();
        b.cancel(AccountId(2), "U", OrderId(3)).unwrap();
        // dropped: rolled back
    }
    assert_eq!(states(&e), committed);
    assert_eq!(accounts(&e), accts);
    // Outside a batch nothing is journaled: a later batch's rollback leaves these alone.
    e.submit(lim(5, 3, "T", Side::Buy, "100", "1")).unwrap();
    let direct = states(&e);
    e.begin_batch().rollback();
    assert_eq!(states(&e), direct);
}

#[test]
fn a_rejected_submit_inside_a_batch_changes_nothing() {
    let mut e = two_symbols();
    e.submit(lim(1, 1, "T", Side::Sell, "100", "5")).unwrap();
    let before = states(&e);
    let mut b = e.begin_batch();
    assert!(b.submit(lim(2, 9, "T", Side::Buy, "100", "1")).is_err());
    assert!(
        b.cancel(AccountId(2), "T", OrderId(1)).is_err(),
        "not the owner"
    );
    assert!(b.set_status("V", TradingStatus::Halted).is_err());
    assert_eq!(states(b.engine()), before);
    b.commit();
    assert_eq!(states(&e), before);
}

#[test]
fn a_cancel_reports_what_was_filled_before_it() {
    let mut e = two_symbols();
    e.submit(lim(1, 1, "T", Side::Sell, "100", "5")).unwrap();
    e.submit(lim(2, 2, "T", Side::Buy, "100", "2")).unwrap();
    let out = e.cancel(AccountId(1), "T", OrderId(1)).unwrap();
    assert_eq!((out.filled, out.resting), (q("2"), q("0")));
    assert_eq!(out.status, tradeplane_engine::OrderStatus::Cancelled);
}

#[test]
fn restore_refuses_a_duplicate_id_and_a_duplicate_priority_each_alone() {
    use tradeplane_engine::engine::RestoreError;
    let mut e = two_symbols();
    e.submit(lim(1, 1, "T", Side::Sell, "100", "5")).unwrap();
    e.submit(lim(2, 2, "T", Side::Sell, "101", "5")).unwrap();
    let state = e.market_state("T").unwrap();
    let mut same_id = state.clone();
    same_id.resting[1].id = OrderId(1);
    assert_eq!(
        e.restore_market("T", same_id),
        Err(RestoreError::Duplicate(OrderId(1)))
    );
    let mut same_priority = state.clone();
    same_priority.resting[1].priority = same_priority.resting[0].priority;
    assert!(matches!(
        e.restore_market("T", same_priority),
        Err(RestoreError::Duplicate(_))
    ));
    assert_eq!(e.restore_market("T", state.clone()), Ok(()));
    assert_eq!(e.market_state("T"), Some(state));
}
