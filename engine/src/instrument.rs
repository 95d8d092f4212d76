//! Tradable instruments and their trading rules (tick, lot, limits, price band, status).
//!
//! The platform loads the list from the `INSTRUMENTS` environment variable (a JSON array,
//! camelCase fields) with [`parse_instruments`], or uses [`default_instruments`].

use serde::{Deserialize, Serialize};

use crate::num::{Cash, Price, Qty, SCALE};

/// Whether a symbol currently accepts new orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingStatus {
    /// Orders are accepted and matched.
    #[default]
    Open,
    /// New orders are rejected; cancels are still allowed so users can get out.
    Halted,
}

/// One tradable symbol and the rules pre-trade risk enforces for it.
///
/// JSON example: `{"symbol":"BTC-USD","tickSize":"0.01","lotSize":"0.0001","minQty":"0.0001",
/// "maxQty":"100","maxNotional":"5000000","priceBandBps":1000,"status":"open"}`.
/// `priceBandBps` (default 0 = no band) is the maximum distance of a limit price from the last
/// trade price in basis points (1000 = 10%); market orders never trade outside it either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instrument {
    /// Symbol, e.g. `BTC-USD`: 1-32 chars of `A-Z 0-9 - _ .`.
    pub symbol: String,
    /// Smallest price increment; every limit price must be a multiple of it.
    pub tick_size: Price,
    /// Smallest quantity increment; every quantity must be a multiple of it.
    pub lot_size: Qty,
    /// Smallest accepted order quantity.
    pub min_qty: Qty,
    /// Largest accepted order quantity.
    pub max_qty: Qty,
    /// Largest accepted order notional (price times quantity) in quote currency.
    pub max_notional: Cash,
    /// Price band in basis points around the last trade price; 0 disables it.
    #[serde(default)]
    pub price_band_bps: u32,
    /// Open or halted.
    #[serde(default)]
    pub status: TradingStatus,
    /// Orders whose notional exceeds this wait for an admin's approval (four-eyes) before
    /// they are matched; absent or zero: never. The platform fills it in from
    /// `APPROVAL_NOTIONAL_DEFAULT` for instruments that do not set it.
    #[serde(
        default,
        alias = "approval_notional",
        skip_serializing_if = "Option::is_none"
    )]
    pub approval_notional: Option<Cash>,
}

/// Why an instrument list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    /// The JSON could not be parsed into instruments.
    #[error("invalid instruments JSON: {0}")]
    Json(String),
    /// One instrument breaks a rule.
    #[error("instrument {symbol:?}: {reason}")]
    Invalid {
        /// The offending symbol.
        symbol: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same symbol appears twice.
    #[error("duplicate instrument {0:?}")]
    Duplicate(String),
}

impl Instrument {
    /// Checks the instrument's internal consistency.
    ///
    /// Besides the obvious (positive sizes, min <= max, limits on lot), it requires that
    /// `tick_size * lot_size` is a multiple of `10^-8`, which makes every fill notional exact.
    pub fn validate(&self) -> Result<(), InstrumentError> {
        let bad = |reason| InstrumentError::Invalid {
            symbol: self.symbol.clone(),
            reason,
        };
        let sym_ok = !self.symbol.is_empty()
            && self.symbol.len() <= 32
            && self
                .symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !sym_ok {
            return Err(bad("symbol must be 1-32 chars of A-Z, 0-9, '-', '_', '.'"));
        }
        if !self.tick_size.is_positive() {
            return Err(bad("tickSize must be positive"));
        }
        if !self.lot_size.is_positive() {
            return Err(bad("lotSize must be positive"));
        }
        if !self.min_qty.is_positive() || !self.min_qty.is_multiple_of(self.lot_size) {
            return Err(bad("minQty must be positive and a multiple of lotSize"));
        }
        if self.max_qty < self.min_qty || !self.max_qty.is_multiple_of(self.lot_size) {
            return Err(bad("maxQty must be >= minQty and a multiple of lotSize"));
        }
        if !self.max_notional.is_positive() {
            return Err(bad("maxNotional must be positive"));
        }
        if self.approval_notional.is_some_and(|a| a.raw() < 0) {
            return Err(bad("approvalNotional must not be negative"));
        }
        if self.price_band_bps >= 10_000 {
            return Err(bad("priceBandBps must be below 10000 (100%)"));
        }
        let grid = i128::from(self.tick_size.raw()) * i128::from(self.lot_size.raw());
        if grid % i128::from(SCALE) != 0 {
            return Err(bad(
                "tickSize * lotSize needs more than 8 decimals; notionals would not be exact",
            ));
        }
        Ok(())
    }
}

/// Parses and validates a JSON array of instruments (the `INSTRUMENTS` variable's format).
pub fn parse_instruments(json: &str) -> Result<Vec<Instrument>, InstrumentError> {
    let list: Vec<Instrument> =
        serde_json::from_str(json).map_err(|e| InstrumentError::Json(e.to_string()))?;
    validate_all(&list)?;
    Ok(list)
}

/// Validates every instrument and rejects duplicate symbols.
pub fn validate_all(list: &[Instrument]) -> Result<(), InstrumentError> {
    let mut seen = std::collections::HashSet::new();
    for i in list {
        i.validate()?;
        if !seen.insert(i.symbol.as_str()) {
            return Err(InstrumentError::Duplicate(i.symbol.clone()));
        }
    }
    Ok(())
}

/// The built-in list (BTC-USD, ETH-USD, AAPL) used when `INSTRUMENTS` is not set.
pub fn default_instruments() -> Vec<Instrument> {
    const DEFAULTS: &str = r#"[
      {"symbol":"BTC-USD","tickSize":"0.01","lotSize":"0.0001","minQty":"0.0001","maxQty":"100",
       "maxNotional":"5000000","priceBandBps":1000},
      {"symbol":"ETH-USD","tickSize":"0.01","lotSize":"0.001","minQty":"0.001","maxQty":"1000",
       "maxNotional":"5000000","priceBandBps":1000},
      {"symbol":"AAPL","tickSize":"0.01","lotSize":"1","minQty":"1","maxQty":"100000",
       "maxNotional":"10000000","priceBandBps":1000}
    ]"#;
    // The constant is covered by a unit test; an empty list is the only failure mode and
    // would surface immediately as "unknown symbol" rejections.
    parse_instruments(DEFAULTS).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let d = default_instruments();
        let syms: Vec<_> = d.iter().map(|i| i.symbol.as_str()).collect();
        assert_eq!(syms, ["BTC-USD", "ETH-USD", "AAPL"]);
        assert_eq!(d[0].tick_size.to_string(), "0.01");
        assert_eq!(d[0].status, TradingStatus::Open);
    }

    #[test]
    fn parses_env_shape() {
        let json = r#"[{"symbol":"X-1","tickSize":"0.5","lotSize":"2","minQty":"2","maxQty":"10",
            "maxNotional":"1000","status":"halted"}]"#;
        let l = parse_instruments(json).unwrap();
        assert_eq!(l[0].status, TradingStatus::Halted);
        assert_eq!(l[0].price_band_bps, 0);
    }

    fn base() -> Instrument {
        default_instruments().remove(0)
    }

    #[test]
    fn rejects_bad_instruments() {
        let mut i = base();
        i.tick_size = Price::ZERO;
        assert!(i.validate().is_err());
        let mut i = base();
        i.min_qty = "0.00015".parse().unwrap();
        assert!(i.validate().is_err());
        let mut i = base();
        i.max_qty = "0.00001".parse().unwrap();
        assert!(i.validate().is_err());
        let mut i = base();
        i.symbol = "btc usd".into();
        assert!(i.validate().is_err());
        let mut i = base();
        i.tick_size = "0.00001".parse().unwrap();
        i.lot_size = "0.00001".parse().unwrap();
        i.min_qty = i.lot_size;
        assert!(i.validate().is_err(), "grid needs 10 decimals");
        let mut i = base();
        i.price_band_bps = 10_000;
        assert!(i.validate().is_err());
    }

    #[test]
    fn rejects_unknown_fields_duplicates_and_garbage() {
        let json = r#"[{"symbol":"A","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"1",
            "maxNotional":"1","bogus":1}]"#;
        assert!(matches!(
            parse_instruments(json),
            Err(InstrumentError::Json(_))
        ));
        let one = r#"{"symbol":"A","tickSize":"1","lotSize":"1","minQty":"1","maxQty":"1","maxNotional":"1"}"#;
        assert_eq!(
            parse_instruments(&format!("[{one},{one}]")),
            Err(InstrumentError::Duplicate("A".into()))
        );
        assert!(parse_instruments(r#"[{"symbol":"A","tickSize":1}]"#).is_err());
    }
}
