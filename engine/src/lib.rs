//! Tradeplane trading domain.
