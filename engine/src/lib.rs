//! Tradeplane trading domain (in progress).

pub mod book;
pub mod engine;
pub mod events;
pub mod instrument;
pub mod ledger;
pub mod num;
pub mod order;
pub mod risk;

pub use engine::{Batch, Engine, MarketState, OrderStatus, Outcome};
