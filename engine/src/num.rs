//! Exact fixed-point numbers for prices, quantities and cash.
//!
//! Every amount is an integer count of `10^-8` units ([`SCALE`]). Prices and quantities
//! are `i64` (up to ~92 billion with 8 decimals), cash is `i128` so that sums over many
//! accounts never overflow. A notional is `price * qty / SCALE`; instruments are
//! validated so that any on-tick price times any on-lot quantity is an exact multiple of
//! `10^-8` (see [`crate::instrument::Instrument::validate`]), so fills never round.
//!
//! On the wire every amount is a decimal string (`"0.01"`), never a JSON number, so no
//! consumer can lose precision through a float.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Number of decimal places every amount carries.
pub const SCALE_DIGITS: u32 = 8;
/// `10^SCALE_DIGITS`: the raw integer value of `1`.
pub const SCALE: i64 = 100_000_000;

/// Longest decimal string accepted; anything longer is garbage or an overflow attempt.
const MAX_LEN: usize = 64;

/// Why a decimal string could not be turned into an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumError {
    /// The string was empty.
    #[error("empty number")]
    Empty,
    /// The string is not a plain decimal like `-12.345`.
    #[error("not a decimal number")]
    Invalid,
    /// More significant decimal places than [`SCALE_DIGITS`].
    #[error("too many decimal places (at most {max})")]
    TooManyDecimals {
        /// The maximum allowed.
        max: u32,
    },
    /// The value does not fit the amount's integer type.
    #[error("number out of range")]
    Overflow,
    /// A negative value where only non-negative values make sense (price, quantity).
    #[error("negative value not allowed")]
    Negative,
}

/// Parses a decimal string into a raw integer scaled by [`SCALE`].
///
/// Accepts `-?[0-9]+(\.[0-9]+)?`. Trailing zeros beyond the scale are accepted because they
/// do not change the value; any other digit beyond it is rejected, never rounded.
fn parse_scaled(s: &str) -> Result<i128, NumError> {
    if s.is_empty() {
        return Err(NumError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(NumError::Overflow);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumError::Invalid);
    }
    let mut value: i128 = 0;
    for b in int_part.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or(NumError::Overflow)?;
    }
    let mut frac: i128 = 0;
    let mut digits = 0u32;
    if let Some(f) = frac_part {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumError::Invalid);
        }
        for (i, b) in f.bytes().enumerate() {
            if i as u32 >= SCALE_DIGITS {
                if b != b'0' {
                    return Err(NumError::TooManyDecimals { max: SCALE_DIGITS });
                }
                continue;
            }
            frac = frac * 10 + i128::from(b - b'0');
            digits += 1;
        }
    }
    frac *= 10i128.pow(SCALE_DIGITS - digits);
    let raw = value
        .checked_mul(i128::from(SCALE))
        .and_then(|v| v.checked_add(frac))
        .ok_or(NumError::Overflow)?;
    Ok(if neg { -raw } else { raw })
}

/// Formats a raw scaled integer as the shortest exact decimal string.
fn format_scaled(raw: i128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let scale = i128::from(SCALE);
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    let int = abs / scale as u128;
    let frac = abs % scale as u128;
    if frac == 0 {
        write!(f, "{sign}{int}")
    } else {
        let s = format!("{frac:08}");
        write!(f, "{sign}{int}.{}", s.trim_end_matches('0'))
    }
}

macro_rules! fixed {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $allow_negative:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name($inner);

        impl $name {
            /// Zero, the additive identity.
            pub const ZERO: Self = Self(0);

            /// Builds from a raw integer count of `10^-8` units.
            pub const fn from_raw(raw: $inner) -> Self {
                Self(raw)
            }

            /// The raw integer count of `10^-8` units.
            pub const fn raw(self) -> $inner {
                self.0
            }

            /// Builds from a whole number of units (e.g. `100` dollars); `None` on overflow.
            pub fn from_units(units: $inner) -> Option<Self> {
                units.checked_mul(SCALE as $inner).map(Self)
            }

            /// Addition that reports overflow instead of wrapping.
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map(Self)
            }

            /// Subtraction that reports overflow instead of wrapping.
            pub fn checked_sub(self, other: Self) -> Option<Self> {
                self.0.checked_sub(other.0).map(Self)
            }

            /// True when strictly greater than zero.
            pub const fn is_positive(self) -> bool {
                self.0 > 0
            }
        }

        impl std::ops::Add for $name {
            type Output = Self;
            fn add(self, o: Self) -> Self {
                Self(self.0 + o.0)
            }
        }

        impl std::ops::Sub for $name {
            type Output = Self;
            fn sub(self, o: Self) -> Self {
                Self(self.0 - o.0)
            }
        }

        impl std::ops::AddAssign for $name {
            fn add_assign(&mut self, o: Self) {
                self.0 += o.0;
            }
        }

        impl std::ops::SubAssign for $name {
            fn sub_assign(&mut self, o: Self) {
                self.0 -= o.0;
            }
        }

        impl std::ops::Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }

        impl FromStr for $name {
            type Err = NumError;
            fn from_str(s: &str) -> Result<Self, NumError> {
                let raw = parse_scaled(s)?;
                if !$allow_negative && raw < 0 {
                    return Err(NumError::Negative);
                }
                <$inner>::try_from(raw).map(Self).map_err(|_| NumError::Overflow)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                format_scaled(i128::from(self.0), f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a decimal string such as \"12.34\"")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

fixed!(
    /// A price per unit of an instrument, in quote currency. Parsing rejects negatives.
    Price, i64, false
);
fixed!(
    /// A quantity of an instrument. Parsing rejects negatives; positions may hold negative
    /// values internally (short positions).
    Qty, i64, false
);
fixed!(
    /// An amount of cash (balances, notionals, P&L). May be negative (P&L, deltas).
    Cash, i128, true
);

impl Qty {
    /// True when this quantity is a whole multiple of `lot` (a positive lot size).
    pub fn is_multiple_of(self, lot: Qty) -> bool {
        lot.0 > 0 && self.0 % lot.0 == 0
    }
}

impl Price {
    /// True when this price is a whole multiple of `tick` (a positive tick size).
    pub fn is_multiple_of(self, tick: Price) -> bool {
        tick.0 > 0 && self.0 % tick.0 == 0
    }
}

/// `price * qty` in cash, truncated toward zero at `10^-8`.
///
/// Exact for on-tick prices and on-lot quantities of a validated instrument; for marks and
/// averages (unrealized P&L) the truncation is at most `10^-8`.
pub fn notional(price: Price, qty: Qty) -> Cash {
    Cash((i128::from(price.0) * i128::from(qty.0)) / i128::from(SCALE))
}

/// True when `price * qty` is exactly representable in cash (no truncation).
pub fn notional_is_exact(price: Price, qty: Qty) -> bool {
    (i128::from(price.0) * i128::from(qty.0)) % i128::from(SCALE) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for s in ["0", "1", "0.01", "123.45678901", "-5.5", "100000"] {
            let c: Cash = s.parse().expect(s);
            assert_eq!(c.to_string(), s);
        }
        let p: Price = "0.01".parse().unwrap();
        assert_eq!(p.raw(), 1_000_000);
        let q: Qty = "2.50".parse().unwrap();
        assert_eq!(q.to_string(), "2.5");
        assert_eq!("1.0000000000".parse::<Qty>().unwrap().raw(), SCALE);
    }

    #[test]
    fn rejects_too_many_decimals() {
        assert_eq!(
            "0.000000001".parse::<Price>(),
            Err(NumError::TooManyDecimals { max: 8 })
        );
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!("92233720369".parse::<Price>(), Err(NumError::Overflow));
        assert!("92233720368".parse::<Price>().is_ok());
        assert_eq!(
            "9".repeat(40).parse::<Cash>().map(|_| ()),
            Err(NumError::Overflow)
        );
        assert_eq!("1".repeat(65).parse::<Cash>(), Err(NumError::Overflow));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "abc", "1.", ".5", "1e5", "1,5", "+1", "--1", "1.2.3", " 1", "NaN", "-",
        ] {
            assert_eq!(s.parse::<Cash>(), Err(NumError::Invalid), "{s}");
        }
        assert_eq!("".parse::<Qty>(), Err(NumError::Empty));
        assert_eq!("-1".parse::<Qty>(), Err(NumError::Negative));
    }

    #[test]
    fn serde_uses_strings() {
        let p: Price = serde_json::from_str("\"101.5\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"101.5\"");
        assert!(serde_json::from_str::<Price>("101.5").is_err());
        assert!(serde_json::from_str::<Price>("\"1.123456789\"").is_err());
    }

    #[test]
    fn notional_is_exact_for_valid_grid() {
        let p: Price = "123.45".parse().unwrap();
        let q: Qty = "0.0003".parse().unwrap();
        assert_eq!(notional(p, q).to_string(), "0.037035");
        assert!(notional_is_exact(p, q));
        let bad: Qty = "0.00000001".parse().unwrap();
        assert!(!notional_is_exact(p, bad));
    }
}
