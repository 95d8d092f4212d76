//! Tradeplane trading domain: instruments, order books, matching, pre-trade risk and the
//! account ledger — pure, deterministic and synchronous. No HTTP, SQL, async or I/O: the
//! platform service persists what the engine produces and serves it.
//!
//! # Numbers
//! Prices, quantities and cash are fixed-point integers with 8 decimals ([`num::Price`],
//! [`num::Qty`] as `i64`, [`num::Cash`] as `i128`), serialized as decimal strings. Integers
//! instead of `rust_decimal`: they are `Copy`, compare and add in one instruction, hash
//! cheaply in the book's maps, and pull in no dependency; one fixed scale is enough because
//! instruments are validated so that every fill notional is exact at that scale. Never `f64`.
//!
//! # Rules
//! - Matching: price-time priority; limit and market orders; GTC, IOC, FOK; market orders
//!   must be IOC or FOK and never trade outside the instrument's price band; self-trade
//!   prevention cancels the *resting* order and keeps matching.
//! - Risk ([`risk`]): one [`risk::Reject`] variant per rule, with a stable [`risk::Reject::code`].
//!   Market buys are priced exactly before matching (walk of the reachable asks) and need that
//!   much available cash; limit buys reserve `limit * qty`; sells reserve position.
//! - Four-eyes approval: an order whose notional exceeds its instrument's `approvalNotional`
//!   is held ([`engine::HeldOrder`]): risk-checked and reserved, not in the book, until
//!   [`Engine::approve`] runs it through risk and matching again, or a release frees it.
//! - No fees: trading moves cash and positions only between the two accounts, so total cash
//!   and net position per symbol are conserved (checked by the property tests).
//! - Every change is an [`events::Event`] with a per-symbol `seq` (all events, contiguous) and,
//!   for public market data (trades, book levels, status), an `md_seq` contiguous over public
//!   events only, so WebSocket clients can detect gaps.
//!
//! # How the platform uses it
//! ```
//! use tradeplane_engine::{Engine, MarketState};
//! use tradeplane_engine::instrument::default_instruments;
//! use tradeplane_engine::ledger::Account;
//! use tradeplane_engine::order::{AccountId, NewOrder, Side, TimeInForce};
//!
//! // Startup: instruments from INSTRUMENTS (parse_instruments) or the defaults.
//! let mut engine = Engine::new(default_instruments()).expect("valid instruments");
//!
//! // Catch up (replica start, or stored seq > engine.seq(symbol)): load the owners of
//! // resting orders, then the book. Here from an empty database.
//! engine.put_account(AccountId(1), Account::with_cash("1000".parse().unwrap()));
//! engine.put_account(AccountId(2), Account::with_cash("1000".parse().unwrap()));
//! engine.restore_market("AAPL", MarketState::default()).expect("consistent state");
//!
//! // Per batch, inside one DB transaction holding the symbol's advisory lock:
//! // 1. refresh the submitting accounts (put_account, rows locked FOR UPDATE);
//! // 2. run the batch; 3. persist the outcomes' events; 4. commit or roll back.
//! let mut batch = engine.begin_batch();
//! let order = NewOrder::limit(1, 1, "AAPL", Side::Buy, "100".parse().unwrap(),
//!     "2".parse().unwrap(), TimeInForce::Gtc);
//! let outcome = batch.submit(order); // Err(Reject) changes nothing: answer 4xx with code()
//! let events = outcome.map(|o| o.events).unwrap_or_default();
//! let db_commit_ok = !events.is_empty(); // stands for "INSERT events ...; COMMIT" succeeding
//! if db_commit_ok { batch.commit() } else { batch.rollback() } // dropping also rolls back
//! assert_eq!(engine.depth("AAPL", 10).unwrap().bids.len(), 1);
//! ```
//!
//! Persisting an outcome: store `OrderAccepted` as the order row (its `seq` is the time
//! priority), `OrderRested`/`Trade.maker_remaining`/`OrderCancelled` as order state changes
//! (the resting orders table is what [`Engine::restore_market`] reloads), `Trade` as a fill
//! row for both sides, `Balance` as account updates — cash as deltas (other symbols may move
//! the same account on another replica), the symbol's position as absolute values (only this
//! symbol's lock changes it) — and the highest `seq`/`md_seq` on the symbol row. Publish
//! public events after the commit. Rejections consume no sequence number.
//!
//! Batch rollback is cheap: the batch records the symbol heads and pre-batch copies of the
//! accounts it touches, and each touched book keeps an undo log of its own mutations, so a
//! rollback costs time proportional to the batch, not to the book size.

#![deny(missing_docs)]

pub mod book;
pub mod engine;
pub mod events;
pub mod instrument;
pub mod ledger;
pub mod num;
pub mod order;
pub mod risk;

pub use engine::{Batch, Depth, Engine, LastTrade, MarketState, OrderStatus, Outcome, Quote};
