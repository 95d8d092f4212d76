//! `--demo`: a live market for the quick start. Seeds two funded demo traders (`demo-alice`,
//! `demo-bob`, password [`DEMO_PASSWORD`]) and a market maker, then keeps every book quoted and
//! sends a small crossing order now and then, so a newcomer sees trades flowing at once.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tradeplane_engine::instrument::Instrument;
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::{OrderType, Side, TimeInForce};

use crate::auth::Role;
use crate::state::AppState;
use crate::trading::PlaceOrder;

/// Password of the demo users (printed in the log at start-up; demo only).
pub const DEMO_PASSWORD: &str = "demo-password";
/// How often the market maker requotes.
const TICK: Duration = Duration::from_millis(500);

/// Reference prices for the default instruments; anything else starts at 100.
fn base_price(symbol: &str) -> i64 {
    match symbol {
        "BTC-USD" => 60_000,
        "ETH-USD" => 3_000,
        "AAPL" => 190,
        _ => 100,
    }
}

/// Creates (once) the demo users and funds them; returns the account ids of
/// (maker, alice, bob).
pub async fn seed(state: &AppState) -> anyhow::Result<(i64, i64, i64)> {
    let mut ids = Vec::new();
    for name in ["demo-maker", "demo-alice", "demo-bob"] {
        if let Some(user) = state.store.find_user(name).await? {
            ids.push(user.account_id);
            continue;
        }
        let user = crate::accounts::create(&state.store, name, DEMO_PASSWORD, Role::Trader, None)
            .await
            .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
        let units = if name == "demo-maker" { 50 } else { 5 };
        let cash: i64 = if name == "demo-maker" {
            50_000_000
        } else {
            1_000_000
        };
        state
            .store
            .deposit(user.account_id, cash * 100_000_000, "system:demo", None)
            .await?;
        for inst in state.trading.instruments().values() {
            let qty = demo_units(inst, units);
            let cost = Price::from_raw(base_price(&inst.symbol) * 100_000_000);
            state
                .trading
                .credit(
                    user.account_id,
                    &inst.symbol,
                    qty,
                    cost,
                    "system:demo".into(),
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("funding {name} with {}: {e}", inst.symbol))?;
        }
        ids.push(user.account_id);
    }
    tracing::info!(
        users = "demo-alice, demo-bob",
        password = DEMO_PASSWORD,
        "demo market seeded; log in with POST /api/v1/auth/login"
    );
    match ids.as_slice() {
        [maker, alice, bob] => Ok((*maker, *alice, *bob)),
        _ => Err(anyhow::anyhow!("demo accounts missing")),
    }
}

/// A holding worth roughly `scale` × 10 000 in quote currency, on the lot size.
fn demo_units(inst: &Instrument, scale: i64) -> Qty {
    let per_unit = base_price(&inst.symbol).max(1);
    let want = (scale * 10_000 * 100_000_000) / per_unit; // raw units
    let lot = inst.lot_size.raw().max(1);
    let lots = (want / lot).max(1);
    Qty::from_raw((lots * lot).min(inst.max_qty.raw()))
}

/// A small order quantity: 1 to 5 minimum sizes.
fn small_qty(inst: &Instrument, rng: &mut StdRng) -> Qty {
    let min = inst.min_qty.raw().max(inst.lot_size.raw()).max(1);
    let base = (100_000_000 * 100 / base_price(&inst.symbol).max(1)).max(min);
    let lot = inst.lot_size.raw().max(1);
    let q = (base / lot).max(1) * lot * rng.gen_range(1..=5);
    Qty::from_raw(q.min(inst.max_qty.raw()))
}

/// Runs the market maker until `stop` is cancelled.
pub fn spawn_market_maker(state: AppState, accounts: (i64, i64, i64), stop: CancellationToken) {
    tokio::spawn(async move {
        let (maker, alice, bob) = accounts;
        let mut rng = StdRng::from_entropy();
        let instruments: Vec<Instrument> = state.trading.instruments().values().cloned().collect();
        let mut mids: Vec<i64> = instruments
            .iter()
            .map(|i| base_price(&i.symbol) * 100_000_000 / i.tick_size.raw().max(1))
            .collect(); // in ticks
        let mut quotes: Vec<i64> = Vec::new();
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            for id in quotes.drain(..) {
                let _ = state.trading.cancel(maker, id, None).await;
            }
            for (inst, mid) in instruments.iter().zip(mids.iter_mut()) {
                // A random walk of a few ticks keeps the price moving.
                *mid = (*mid + rng.gen_range(-3..=3)).max(20);
                let tick = inst.tick_size.raw().max(1);
                let spread = rng.gen_range(1..=5);
                for (side, ticks) in [(Side::Buy, *mid - spread), (Side::Sell, *mid + spread)] {
                    let order = PlaceOrder {
                        symbol: inst.symbol.clone(),
                        side,
                        order_type: OrderType::Limit,
                        price: Some(Price::from_raw(ticks * tick)),
                        qty: small_qty(inst, &mut rng),
                        tif: Some(TimeInForce::Gtc),
                        client_order_id: None,
                    };
                    if let Ok(view) = state.trading.place(maker, order, None).await {
                        quotes.push(view.id);
                    }
                }
                if rng.gen_ratio(1, 3) {
                    let taker = if rng.gen_bool(0.5) { alice } else { bob };
                    let side = if rng.gen_bool(0.5) {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let order = PlaceOrder {
                        symbol: inst.symbol.clone(),
                        side,
                        order_type: OrderType::Market,
                        price: None,
                        qty: small_qty(inst, &mut rng),
                        tif: Some(TimeInForce::Ioc),
                        client_order_id: None,
                    };
                    let _ = state.trading.place(taker, order, None).await;
                }
            }
        }
    });
}
