//! Accounts: cash, reservations, positions, average cost and P&L.
//!
//! Cost is tracked as a signed cost basis (total cash paid for a long position, negative
//! proceeds for a short) rather than an average price, so it stays exact; the average cost
//! is derived. Closing part of a position removes the proportional share of the basis
//! (truncated toward zero) and books the difference to realized P&L. Per account and
//! symbol, `realized_pnl - cost_basis` always equals the net cash the symbol's trades
//! brought in, whatever the rounding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::num::{Cash, Price, Qty, SCALE, notional};
use crate::order::Side;

/// Holdings of one instrument in one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// Signed quantity held (negative = short).
    pub qty: Qty,
    /// Quantity reserved by resting sell orders.
    pub reserved: Qty,
    /// Signed total cost of the open quantity.
    pub cost_basis: Cash,
    /// Realized profit and loss, by average cost.
    pub realized_pnl: Cash,
}

impl Position {
    /// Quantity that new sell orders may use.
    pub fn available(&self) -> Qty {
        self.qty - self.reserved
    }

    /// Average cost per unit of the open quantity, truncated to `10^-8`; `None` when flat.
    pub fn avg_cost(&self) -> Option<Price> {
        if self.qty == Qty::ZERO {
            return None;
        }
        let avg = self.cost_basis.raw() * i128::from(SCALE) / i128::from(self.qty.raw());
        i64::try_from(avg).ok().map(Price::from_raw)
    }

    /// Unrealized P&L if the position were valued at `mark`.
    pub fn unrealized_pnl(&self, mark: Price) -> Cash {
        let value =
            Cash::from_raw(i128::from(mark.raw()) * i128::from(self.qty.raw()) / i128::from(SCALE));
        value - self.cost_basis
    }

    /// Applies a fill of `qty` at `price` on `side`; returns nothing, moves no cash.
    pub(crate) fn apply_fill(&mut self, side: Side, price: Price, qty: Qty) {
        let dq = match side {
            Side::Buy => qty,
            Side::Sell => -qty,
        };
        let q0 = self.qty.raw();
        let mut open = dq;
        if q0 != 0 && (q0 > 0) != (dq.raw() > 0) {
            // Closing (part of) the position.
            let close_abs = dq.raw().abs().min(q0.abs());
            let c = if dq.raw() > 0 { close_abs } else { -close_abs };
            let removed = Cash::from_raw(self.cost_basis.raw() * i128::from(-c) / i128::from(q0));
            let close_value = notional(price, Qty::from_raw(c));
            self.realized_pnl += -close_value - removed;
            self.cost_basis -= removed;
            self.qty = Qty::from_raw(q0 + c);
            open = Qty::from_raw(dq.raw() - c);
        }
        if open != Qty::ZERO {
            self.qty += open;
            self.cost_basis += notional(price, open);
        }
    }
}

/// One brokerage account as the engine sees it.
///
/// The platform loads it from the database with [`crate::Engine::put_account`]; the engine
/// keeps it in step with fills and reports every change as a
/// [`crate::events::BalanceChange`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Total cash (available + reserved).
    pub cash: Cash,
    /// Cash reserved by resting buy orders.
    pub cash_reserved: Cash,
    /// Positions by symbol.
    #[serde(default)]
    pub positions: BTreeMap<String, Position>,
    /// May sell more than it holds (go short).
    #[serde(default)]
    pub allow_short: bool,
    /// Maximum number of resting (GTC) orders across all symbols.
    pub max_open_orders: u32,
    /// Current number of resting orders across all symbols.
    #[serde(default)]
    pub open_orders: u32,
}

impl Account {
    /// A funded account with default limits (no shorting, 100 open orders).
    pub fn with_cash(cash: Cash) -> Self {
        Account {
            cash,
            max_open_orders: 100,
            ..Account::default()
        }
    }

    /// Cash that new buy orders may use.
    pub fn available_cash(&self) -> Cash {
        self.cash - self.cash_reserved
    }

    /// The position in `symbol` (flat when never traded).
    pub fn position(&self, symbol: &str) -> Position {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    pub(crate) fn position_mut(&mut self, symbol: &str) -> &mut Position {
        if !self.positions.contains_key(symbol) {
            self.positions
                .insert(symbol.to_owned(), Position::default());
        }
        #[allow(clippy::expect_used)]
        self.positions
            .get_mut(symbol)
            .expect("position inserted just above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }
    fn q(s: &str) -> Qty {
        s.parse().unwrap()
    }

    #[test]
    fn average_cost_and_realized_pnl() {
        let mut pos = Position::default();
        pos.apply_fill(Side::Buy, p("100"), q("2"));
        pos.apply_fill(Side::Buy, p("110"), q("2"));
        assert_eq!(pos.avg_cost(), Some(p("105")));
        pos.apply_fill(Side::Sell, p("120"), q("1"));
        assert_eq!(pos.realized_pnl.to_string(), "15");
        assert_eq!(pos.qty, q("3"));
        assert_eq!(pos.cost_basis.to_string(), "315");
        assert_eq!(pos.unrealized_pnl(p("100")).to_string(), "-15");
        // Sell through zero into a short: closes 3 at 100, opens short 1 at 100.
        pos.apply_fill(Side::Sell, p("100"), q("4"));
        assert_eq!(pos.realized_pnl.to_string(), "0");
        assert_eq!(pos.qty.raw(), -SCALE);
        assert_eq!(pos.cost_basis.to_string(), "-100");
        pos.apply_fill(Side::Buy, p("90"), q("1"));
        assert_eq!(pos.realized_pnl.to_string(), "10");
        assert_eq!(pos.cost_basis, Cash::ZERO);
        assert_eq!(pos.avg_cost(), None);
    }

    #[test]
    fn basis_identity_survives_rounding() {
        let mut pos = Position::default();
        let mut cash_flow = Cash::ZERO;
        for (side, price, qty) in [
            (Side::Buy, "10.01", "3"),
            (Side::Sell, "10.07", "1"),
            (Side::Sell, "9.99", "1"),
            (Side::Buy, "10.03", "7"),
            (Side::Sell, "10.05", "5"),
        ] {
            pos.apply_fill(side, p(price), q(qty));
            let n = notional(p(price), q(qty));
            cash_flow += if side == Side::Buy { -n } else { n };
            assert_eq!(pos.realized_pnl - pos.cost_basis, cash_flow);
        }
    }
}
