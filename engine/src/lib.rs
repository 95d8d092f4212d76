//! Tradeplane trading domain (work in progress).

pub mod instrument;
pub mod num;
