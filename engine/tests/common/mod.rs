//! Shared test helpers.
#![allow(dead_code)]

use tradeplane_engine::events::{EventKind, Trade};
use tradeplane_engine::instrument::Instrument;
use tradeplane_engine::ledger::{Account, Position};
use tradeplane_engine::num::{Cash, Price, Qty};
use tradeplane_engine::order::AccountId;
use tradeplane_engine::{Engine, Outcome};

pub fn p(s: &str) -> Price {
    s.parse().unwrap()
}
pub fn q(s: &str) -> Qty {
    s.parse().unwrap()
}
pub fn c(s: &str) -> Cash {
    s.parse().unwrap()
}

/// Symbol "T": tick 1, lot 1, qty 1..=1000, notional <= 1_000_000, band 10% (1000 bps).
pub fn test_instrument() -> Instrument {
    serde_json::from_str(
        r#"{"symbol":"T","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"1000",
            "maxNotional":"1000000","priceBandBps":1000}"#,
    )
    .unwrap()
}

/// Engine with symbol "T" and accounts 1..=n each holding 100_000 cash and 1_000 units.
pub fn engine(n: u64) -> Engine {
    let mut e = Engine::new(vec![test_instrument()]).unwrap();
    for id in 1..=n {
        let mut a = Account::with_cash(c("100000"));
        a.positions.insert(
            "T".into(),
            Position {
                qty: q("1000"),
                cost_basis: c("100000"),
                ..Position::default()
            },
        );
        e.put_account(AccountId(id), a);
    }
    e
}

pub fn trades(o: &Outcome) -> Vec<Trade> {
    o.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Trade(t) => Some(*t),
            _ => None,
        })
        .collect()
}
