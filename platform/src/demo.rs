//! `--demo`: a live market for the quick start.
//!
//! Seeds two funded traders for a person to log in as (`demo-alice`, `demo-bob`, password
//! [`DEMO_PASSWORD`]) and two bots with accounts of their own and random passwords: a market
//! maker that keeps a ladder of [`LEVELS`] quotes on each side of every book, and a taker that
//! sends a small market order now and then, so trades flow at once. The people's accounts are
//! never traded by the bots.
//!
//! The ladder is requoted by difference: levels that moved away are cancelled first, then the
//! missing ones are placed, so the book is never empty and a person's market order of a few
//! lots always fills. Bot history is pruned ([`crate::store::Store::prune_demo_bots`]): trades
//! between the two bots after [`BOT_TRADES_KEPT`], their other orders and audit records after
//! [`BOT_SCRATCH_KEPT`], so the database stops growing after a couple of hours.
//!
//! A later start without `--demo` calls [`retire`], which disables the demo logins: the known
//! password stops working on that database until `--demo` is given again.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tradeplane_engine::instrument::Instrument;
use tradeplane_engine::num::{Price, Qty};
use tradeplane_engine::order::{OrderType, Side, TimeInForce};

use crate::auth::Role;
use crate::state::AppState;
use crate::store::demo::{DISABLED_PASSWORD_HASH, Quote};
use crate::store::{NewAuditEvent, UserRecord};
use crate::trading::PlaceOrder;

/// Password of the demo traders (printed in the log at start-up; demo only).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The demo traders a person logs in as.
pub const TRADERS: [&str; 2] = ["demo-alice", "demo-bob"];
/// The market maker bot.
pub const MAKER: &str = "demo-bot-maker";
/// The taker bot.
pub const TAKER: &str = "demo-bot-taker";
/// Quotes per side of every book.
pub const LEVELS: i64 = 8;
/// How long trades between the two bots are kept (charts show this much bot history).
pub const BOT_TRADES_KEPT: Duration = Duration::from_secs(2 * 3600);
/// How long the bots' other orders and their audit records are kept.
pub const BOT_SCRATCH_KEPT: Duration = Duration::from_secs(10 * 60);
/// How often the market maker requotes.
const TICK: Duration = Duration::from_millis(500);
/// How often bot history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Raw units per whole unit.
const UNIT: i64 = 100_000_000;

/// The account ids the demo uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAccounts {
    /// The market maker bot.
    pub maker: i64,
    /// The taker bot.
    pub taker: i64,
    /// `demo-alice` and `demo-bob`, in [`TRADERS`] order.
    pub traders: Vec<i64>,
}

/// Reference prices for the default instruments; anything else starts at 100.
fn base_price(symbol: &str) -> i64 {
    match symbol {
        "BTC-USD" => 60_000,
        "ETH-USD" => 3_000,
        "AAPL" => 190,
        _ => 100,
    }
}

/// Finds `name`, or creates it with `password` and funds it with `cash` and holdings worth
/// about `scale` × 10 000 of each instrument.
async fn user(
    state: &AppState,
    name: &str,
    password: &str,
    cash: i64,
    scale: i64,
) -> anyhow::Result<UserRecord> {
    if let Some(user) = state.store.find_user(name).await? {
        return Ok(user);
    }
    let user = crate::accounts::create(
        &state.store,
        &state.passwords,
        name,
        password,
        Role::Trader,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    state
        .store
        .deposit(user.account_id, cash * UNIT, "system:demo", None)
        .await?;
    for inst in state.trading.instruments().values() {
        let qty = demo_units(inst, scale);
        let cost = Price::from_raw(base_price(&inst.symbol) * UNIT);
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
    Ok(user)
}

/// Creates (once) the demo traders and bots and funds them; (re-)enables the traders' demo
/// password if a non-demo start disabled it.
pub async fn seed(state: &AppState) -> anyhow::Result<DemoAccounts> {
    let mut traders = Vec::new();
    for name in TRADERS {
        let trader = user(state, name, DEMO_PASSWORD, 1_000_000, 5).await?;
        if trader.password_hash == DISABLED_PASSWORD_HASH {
            let hash = tokio::task::spawn_blocking(|| crate::auth::hash_password(DEMO_PASSWORD))
                .await?
                .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
            state.store.reset_password(trader.id, &hash).await?;
        }
        traders.push(trader.account_id);
    }
    let mut bots = Vec::new();
    for name in [MAKER, TAKER] {
        // Nobody logs in as a bot: a random password nobody knows.
        let password = crate::auth::new_refresh_token();
        let bot = user(state, name, &password, 50_000_000, 50).await?;
        state.store.register_demo_bot(bot.account_id).await?;
        bots.push(bot.account_id);
    }
    tracing::info!(
        users = %TRADERS.join(", "),
        password = DEMO_PASSWORD,
        "demo market seeded; log in with POST /api/v1/auth/login or in the web app at /"
    );
    Ok(DemoAccounts {
        maker: bots[0],
        taker: bots[1],
        traders,
    })
}

/// After a start without `--demo`: disables the demo traders' logins (the password hash is
/// replaced by one nothing verifies against, refresh tokens are revoked) and audits it, so the
/// published demo password does not keep working on this database.
pub async fn retire(state: &AppState) -> anyhow::Result<()> {
    for name in TRADERS {
        let Some(user) = state.store.find_user(name).await? else {
            continue;
        };
        if user.password_hash == DISABLED_PASSWORD_HASH {
            continue;
        }
        state
            .store
            .reset_password(user.id, DISABLED_PASSWORD_HASH)
            .await?;
        state
            .store
            .append_audit(&NewAuditEvent {
                actor: "system:demo".into(),
                action: "demo.login_disabled".into(),
                subject: Some(format!("user:{}", user.id)),
                request_id: None,
                details: serde_json::json!({ "username": name }),
            })
            .await?;
        tracing::warn!(
            user = name,
            "started without --demo: the demo login is disabled (start with --demo to enable it)"
        );
    }
    Ok(())
}

/// A holding worth roughly `scale` × 10 000 in quote currency, on the lot size.
fn demo_units(inst: &Instrument, scale: i64) -> Qty {
    let per_unit = base_price(&inst.symbol).max(1);
    let want = (scale * 10_000 * UNIT) / per_unit; // raw units
    let lot = inst.lot_size.raw().max(1);
    let lots = (want / lot).max(1);
    Qty::from_raw((lots * lot).min(inst.max_qty.raw()))
}

/// An order quantity of `n` "small sizes" (about 100 in quote currency each, on the lot).
fn small_qty(inst: &Instrument, n: i64) -> Qty {
    let min = inst.min_qty.raw().max(inst.lot_size.raw()).max(1);
    let base = (UNIT * 100 / base_price(&inst.symbol).max(1)).max(min);
    let lot = inst.lot_size.raw().max(1);
    let q = (base / lot).max(1) * lot * n.max(1);
    Qty::from_raw(q.min(inst.max_qty.raw()))
}

/// One book's quoting state: the mid and the grid step, both in ticks.
struct Book {
    inst: Instrument,
    base: i64,
    mid: i64,
    step: i64,
}

impl Book {
    fn new(inst: Instrument) -> Book {
        let tick = inst.tick_size.raw().max(1);
        let base = base_price(&inst.symbol) * UNIT / tick;
        // Levels two basis points apart (at least one tick), so every price moves visibly.
        let step = (base / 5_000).max(1);
        Book {
            inst,
            base,
            mid: base,
            step,
        }
    }

    /// A random walk of whole steps, pulled back when it strays more than 2% from the base.
    fn walk(&mut self, rng: &mut StdRng) {
        let drift = if self.mid > self.base + self.base / 50 {
            -1
        } else if self.mid < self.base - self.base / 50 {
            1
        } else {
            0
        };
        let r: f64 = rng.r#gen();
        let moves = if r < 0.3 {
            rng.gen_range(-1..=1)
        } else if r < 0.33 {
            rng.gen_range(-3..=3)
        } else {
            0
        };
        self.mid = (self.mid + (moves + drift) * self.step).max(LEVELS * 2 * self.step + 1);
    }

    /// The wanted ladder: (is bid, price in raw units, quantity).
    fn ladder(&self) -> Vec<(bool, i64, Qty)> {
        let tick = self.inst.tick_size.raw().max(1);
        (0..LEVELS)
            .flat_map(|k| {
                let qty = small_qty(&self.inst, 1 + k);
                let off = (k + 1) * self.step;
                [
                    (true, (self.mid - off) * tick, qty),
                    (false, (self.mid + off) * tick, qty),
                ]
            })
            .collect()
    }
}

/// Brings the maker's quotes of one book to the wanted ladder: cancels what moved away (first,
/// so no new quote can cross an old one), then places what is missing.
async fn requote(state: &AppState, maker: i64, book: &Book) -> anyhow::Result<()> {
    let ladder = book.ladder();
    let wanted: HashSet<(bool, i64)> = ladder.iter().map(|(b, p, _)| (*b, *p)).collect();
    let resting: Vec<Quote> = state.store.resting_quotes(maker, &book.inst.symbol).await?;
    let mut kept = HashSet::new();
    for q in resting {
        if wanted.contains(&(q.buy, q.price)) && kept.insert((q.buy, q.price)) {
            continue;
        }
        let _ = state.trading.cancel(maker, q.id, None).await;
    }
    for (buy, price, qty) in ladder {
        if kept.contains(&(buy, price)) {
            continue;
        }
        let order = PlaceOrder {
            symbol: book.inst.symbol.clone(),
            side: if buy { Side::Buy } else { Side::Sell },
            order_type: OrderType::Limit,
            price: Some(Price::from_raw(price)),
            qty,
            tif: Some(TimeInForce::Gtc),
            client_order_id: None,
        };
        // A refusal (e.g. the maker ran out of a holding) just leaves that level empty.
        let _ = state.trading.place(maker, order, None).await;
    }
    Ok(())
}

/// Runs the market maker, the taker and the pruning of bot history until `stop` is cancelled.
pub fn spawn_market_maker(state: AppState, accounts: DemoAccounts, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut rng = StdRng::from_entropy();
        let mut books: Vec<Book> = state
            .trading
            .instruments()
            .values()
            .cloned()
            .map(Book::new)
            .collect();
        let mut ticker = tokio::time::interval(TICK);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = prune.tick() => {
                    prune_history(&state).await;
                    continue;
                }
                _ = ticker.tick() => {}
            }
            for book in books.iter_mut() {
                book.walk(&mut rng);
                if let Err(e) = requote(&state, accounts.maker, book).await {
                    tracing::debug!(error = %e, symbol = %book.inst.symbol, "demo requote failed");
                }
                if rng.gen_ratio(1, 3) {
                    let order = PlaceOrder {
                        symbol: book.inst.symbol.clone(),
                        side: if rng.gen_bool(0.5) {
                            Side::Buy
                        } else {
                            Side::Sell
                        },
                        order_type: OrderType::Market,
                        price: None,
                        qty: small_qty(&book.inst, rng.gen_range(1..=3)),
                        tif: Some(TimeInForce::Ioc),
                        client_order_id: None,
                    };
                    let _ = state.trading.place(accounts.taker, order, None).await;
                }
            }
        }
    });
}

async fn prune_history(state: &AppState) {
    let now = chrono::Utc::now();
    let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    match state
        .store
        .prune_demo_bots(ago(BOT_TRADES_KEPT), ago(BOT_SCRATCH_KEPT))
        .await
    {
        Ok(p) => tracing::debug!(
            trades = p.trades,
            orders = p.orders,
            audit = p.audit,
            "pruned demo bot history"
        ),
        Err(e) => tracing::warn!(error = %e, "pruning demo bot history failed"),
    }
}
