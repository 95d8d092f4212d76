//! Matching-engine benchmark: orders per second and per-order latency percentiles.
//!
//! Plain `harness = false` bench (no criterion, no extra dependencies). Run with
//! `cargo bench -p tradeplane-engine --bench matching` (optionally `BENCH_OPS=N`,
//! `DEEP_OPS=N`, `DEEP_DEPTH=N`).
//!
//! Two cases, each with 1000 accounts on one symbol. Latency includes pre-trade risk,
//! matching, ledger updates and building the event list.
//! - Mixed: 70% limit GTC orders priced within a few ticks of the touch (about a quarter of
//!   them cross and trade), 20% cancels of live orders, 10% market IOC orders; the book is
//!   pre-filled with 2000 resting orders.
//! - Deep book: 10 price levels per side with `DEEP_DEPTH` (9000) orders each; 45% cancels of
//!   a uniformly chosen live order (so anywhere in its level's queue), 50% new resting limit
//!   orders on those levels (so the depth stays), 5% market IOC orders eating the fronts. Cancel latency is printed
//!   on its own: it is what a queue scan makes grow with the level's depth.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tradeplane_engine::Engine;
use tradeplane_engine::instrument::default_instruments;
use tradeplane_engine::ledger::{Account, Position};
use tradeplane_engine::num::{Cash, Price, Qty};
use tradeplane_engine::order::{AccountId, NewOrder, OrderId, Side, TimeInForce};

const SYMBOL: &str = "AAPL";
const ACCOUNTS: u64 = 1000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Op {
    Order(NewOrder),
    Cancel(AccountId, OrderId),
}

struct Gen {
    rng: Rng,
    next_id: u64,
    live: Vec<(AccountId, OrderId)>,
}

impl Gen {
    fn op(&mut self, e: &Engine) -> Op {
        let roll = self.rng.below(100);
        let book = e.book(SYMBOL).expect("symbol configured");
        if roll < 20 {
            while !self.live.is_empty() {
                let i = self.rng.below(self.live.len() as u64) as usize;
                let (a, id) = self.live.swap_remove(i);
                if book.contains(id) {
                    return Op::Cancel(a, id);
                }
            }
        }
        self.next_id += 1;
        let account = 1 + self.rng.below(ACCOUNTS);
        let side = random_side(&mut self.rng);
        let qty = Qty::from_units(1 + self.rng.below(10) as i64).expect("small");
        if roll >= 90 {
            return Op::Order(NewOrder::market(self.next_id, account, SYMBOL, side, qty));
        }
        let tick = 1_000_000i64; // 0.01
        let mid = 100 * 100_000_000i64;
        // Offset from the same-side touch: -4..=+3 ticks; positive offsets usually cross.
        let offset = self.rng.below(8) as i64 - 4;
        let price = match side {
            Side::Buy => book.best_bid().map_or(mid - tick, |l| l.price.raw()) + offset * tick,
            Side::Sell => book.best_ask().map_or(mid + tick, |l| l.price.raw()) - offset * tick,
        };
        let price = Price::from_raw(price.clamp(95 * 100_000_000, 105 * 100_000_000));
        Op::Order(NewOrder::limit(
            self.next_id,
            account,
            SYMBOL,
            side,
            price,
            qty,
            TimeInForce::Gtc,
        ))
    }
}

fn setup() -> Engine {
    let mut e = Engine::new(default_instruments()).expect("defaults are valid");
    for id in 1..=ACCOUNTS {
        let mut a = Account::with_cash(Cash::from_units(1_000_000_000).expect("fits"));
        a.max_open_orders = 100_000;
        a.positions.insert(
            SYMBOL.into(),
            Position {
                qty: Qty::from_units(10_000_000).expect("fits"),
                ..Position::default()
            },
        );
        e.put_account(AccountId(id), a);
    }
    e
}

fn apply(e: &mut Engine, g: &mut Gen, op: Op) -> (bool, usize) {
    match op {
        Op::Order(o) => {
            let (id, account) = (o.id, o.account);
            match e.submit(o) {
                Ok(out) => {
                    if out.resting.is_positive() {
                        g.live.push((account, id));
                    }
                    (true, out.events.len())
                }
                Err(_) => (false, 0),
            }
        }
        Op::Cancel(a, id) => match e.cancel(a, SYMBOL, id) {
            Ok(out) => (true, out.events.len()),
            Err(_) => (false, 0),
        },
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `p50 … max` of a latency sample (sorts it).
fn percentiles(lat: &mut [Duration]) -> String {
    if lat.is_empty() {
        return "no samples".into();
    }
    lat.sort_unstable();
    format!(
        "p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        pct(lat, 0.50),
        pct(lat, 0.90),
        pct(lat, 0.99),
        pct(lat, 0.999),
        lat[lat.len() - 1]
    )
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    mixed(env_or("BENCH_OPS", 1_000_000));
    deep_book(env_or("DEEP_OPS", 200_000), env_or("DEEP_DEPTH", 9_000));
}

fn mixed(ops: usize) {
    let mut e = setup();
    let mut g = Gen {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        next_id: 0,
        live: Vec::new(),
    };
    // Warm up and fill the book.
    while e.book(SYMBOL).map_or(0, |b| b.len()) < 2000 || g.next_id < 100_000 {
        let op = g.op(&e);
        apply(&mut e, &mut g, op);
    }
    let mut lat = Vec::with_capacity(ops);
    let (mut accepted, mut events) = (0usize, 0usize);
    let mut busy = Duration::ZERO;
    for _ in 0..ops {
        let op = g.op(&e);
        let t = Instant::now();
        let (ok, n) = apply(&mut e, &mut g, black_box(op));
        let d = t.elapsed();
        busy += d;
        lat.push(d);
        accepted += usize::from(ok);
        events += n;
    }
    println!("matching: {ops} operations (70% limit near touch, 20% cancel, 10% market IOC)");
    println!("  accepted {accepted}, events emitted {events}");
    println!(
        "  resting orders at end: {}",
        e.book(SYMBOL).map_or(0, |b| b.len())
    );
    println!(
        "  throughput: {:.0} ops/s (engine time only)",
        ops as f64 / busy.as_secs_f64()
    );
    println!("  latency: {}", percentiles(&mut lat));

    // Batched: 64 operations per batch, committed (what the platform does per DB transaction).
    let batches = ops / 64;
    let start = Instant::now();
    for _ in 0..batches {
        let prepared: Vec<Op> = (0..64).map(|_| g.op(&e)).collect();
        let mut b = e.begin_batch();
        for op in prepared {
            let _ = match op {
                Op::Order(o) => b.submit(o).map(|out| out.events.len()),
                Op::Cancel(a, id) => b.cancel(a, SYMBOL, id).map(|out| out.events.len()),
            };
        }
        b.commit();
    }
    let el = start.elapsed();
    println!(
        "  batched (64/batch, journaled, incl. generation): {:.0} ops/s, {:?} per batch",
        (batches * 64) as f64 / el.as_secs_f64(),
        el / batches.max(1) as u32
    );
}

/// Price of level `k` (0 = best) on `side`: bids 99.99, 99.98, …; asks 100.01, 100.02, ….
fn deep_price(side: Side, k: u64) -> Price {
    let tick = 1_000_000i64; // 0.01
    let mid = 100 * 100_000_000i64;
    let off = (1 + k as i64) * tick;
    Price::from_raw(match side {
        Side::Buy => mid - off,
        Side::Sell => mid + off,
    })
}

fn deep_limit(g: &mut Gen, side: Side, level: u64) -> NewOrder {
    g.next_id += 1;
    let account = 1 + g.rng.below(ACCOUNTS);
    let qty = Qty::from_units(1 + g.rng.below(10) as i64).expect("small");
    let price = deep_price(side, level);
    NewOrder::limit(
        g.next_id,
        account,
        SYMBOL,
        side,
        price,
        qty,
        TimeInForce::Gtc,
    )
}

fn random_side(rng: &mut Rng) -> Side {
    if rng.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// The deep-book case: cancels anywhere in queues of `depth` orders.
fn deep_book(ops: usize, depth: usize) {
    const LEVELS: u64 = 10;
    let mut e = setup();
    let mut g = Gen {
        rng: Rng(0xD1B5_4A32_D192_ED03),
        next_id: 0,
        live: Vec::new(),
    };
    for level in 0..LEVELS {
        for side in [Side::Buy, Side::Sell] {
            for _ in 0..depth {
                let o = deep_limit(&mut g, side, level);
                apply(&mut e, &mut g, Op::Order(o));
            }
        }
    }
    let resting_start = e.book(SYMBOL).map_or(0, |b| b.len());
    let (mut cancels, mut inserts, mut markets) = (Vec::new(), Vec::new(), Vec::new());
    let mut busy = Duration::ZERO;
    for _ in 0..ops {
        let roll = g.rng.below(100);
        let (op, sample) = if roll < 45 {
            let book = e.book(SYMBOL).expect("symbol configured");
            let mut found = None;
            while !g.live.is_empty() {
                let i = g.rng.below(g.live.len() as u64) as usize;
                let (a, id) = g.live.swap_remove(i);
                if book.contains(id) {
                    found = Some(Op::Cancel(a, id));
                    break;
                }
            }
            let Some(op) = found else { continue };
            (op, &mut cancels)
        } else if roll < 95 {
            let side = random_side(&mut g.rng);
            let level = g.rng.below(LEVELS);
            (Op::Order(deep_limit(&mut g, side, level)), &mut inserts)
        } else {
            g.next_id += 1;
            let side = random_side(&mut g.rng);
            let account = 1 + g.rng.below(ACCOUNTS);
            let qty = Qty::from_units(1 + g.rng.below(10) as i64).expect("small");
            let o = NewOrder::market(g.next_id, account, SYMBOL, side, qty);
            (Op::Order(o), &mut markets)
        };
        let t = Instant::now();
        let (ok, _) = apply(&mut e, &mut g, black_box(op));
        let d = t.elapsed();
        assert!(ok, "deep-book operations are all valid");
        busy += d;
        sample.push(d);
    }
    let levels = e.depth(SYMBOL, LEVELS as usize).expect("symbol configured");
    let deepest = levels.bids.iter().chain(&levels.asks).map(|l| l.orders);
    let ops = cancels.len() + inserts.len() + markets.len();
    println!(
        "deep book: {ops} operations on {LEVELS}+{LEVELS} levels of {depth} orders \
         (45% cancel anywhere in the queue, 50% limit, 5% market IOC)"
    );
    println!(
        "  resting orders: {resting_start} at start, {} at end; level depth at end {}..{}",
        e.book(SYMBOL).map_or(0, |b| b.len()),
        deepest.clone().min().unwrap_or(0),
        deepest.max().unwrap_or(0)
    );
    println!(
        "  throughput: {:.0} ops/s (engine time only)",
        ops as f64 / busy.as_secs_f64()
    );
    println!(
        "  cancel ({}): {}",
        cancels.len(),
        percentiles(&mut cancels)
    );
    println!(
        "  limit  ({}): {}",
        inserts.len(),
        percentiles(&mut inserts)
    );
    println!(
        "  market ({}): {}",
        markets.len(),
        percentiles(&mut markets)
    );
}
