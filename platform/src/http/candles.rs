//! `GET /api/v1/markets/{symbol}/candles`: OHLCV candles aggregated from trades, for charts.
//!
//! There is no candle channel on the WebSocket: a client draws the live candle from the `trade`
//! events it already receives and fetches this endpoint again when a bucket closes (the web app
//! does so, see `docs/web.md`).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tradeplane_engine::num::{Price, Qty};

use super::extract::{ApiPath, ApiQuery, SymbolPath};
use super::market::{cached, instrument, to_bytes};
use super::orders::page_size;
use crate::error::ApiError;
use crate::input::Validate;
use crate::state::AppState;
use crate::store::candles::CandleRow;

/// Width of a candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = CandleInterval)]
pub enum Interval {
    /// One minute.
    #[default]
    #[serde(rename = "1m")]
    M1,
    /// Five minutes.
    #[serde(rename = "5m")]
    M5,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    M15,
    /// One hour.
    #[serde(rename = "1h")]
    H1,
    /// One day (UTC).
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    /// Length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Interval::M1 => 60,
            Interval::M5 => 300,
            Interval::M15 => 900,
            Interval::H1 => 3_600,
            Interval::D1 => 86_400,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }
}

/// Query of the candles endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// `1m` (default), `5m`, `15m`, `1h` or `1d`.
    #[serde(default)]
    #[param(value_type = Option<CandleIntervalParam>, nullable = false)]
    pub interval: Interval,
    /// How many intervals back to cover, 1 to 500 (default 100; else 422 `invalid_page_size`).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 100, nullable = false)]
    pub limit: Option<u32>,
    /// Only candles that start before this time (RFC 3339); default: up to the current candle.
    #[serde(default)]
    #[param(value_type = Option<super::openapi::Timestamp>, nullable = false)]
    pub before: Option<DateTime<Utc>>,
}

/// The interval parameter's schema (the enum's, under its parameter name).
type CandleIntervalParam = Interval;

impl Validate for CandlesQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(()) // an enum, an integer and a timestamp: nothing textual reaches SQL
    }
}

/// One candle. Amounts are exact decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"start": "2026-01-02T15:04:00Z", "open": "60000", "high": "60100", "low": "59950", "close": "60050", "volume": "1.25", "trades": 7}))]
pub struct Candle {
    /// Start of the bucket (a multiple of the interval since the Unix epoch, UTC).
    #[schema(value_type = super::openapi::Timestamp)]
    pub start: DateTime<Utc>,
    /// First trade price.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub open: Price,
    /// Highest trade price.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub high: Price,
    /// Lowest trade price.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub low: Price,
    /// Last trade price.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub close: Price,
    /// Quantity traded.
    #[schema(value_type = super::openapi::UnsignedDecimal)]
    pub volume: Qty,
    /// Number of trades.
    pub trades: i64,
}

/// The answer: candles oldest first; intervals without trades have no candle.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"symbol": "BTC-USD", "interval": "1m", "candles": [{"start": "2026-01-02T15:04:00Z", "open": "60000", "high": "60100", "low": "59950", "close": "60050", "volume": "1.25", "trades": 7}]}))]
pub struct CandlesView {
    /// Instrument.
    #[schema(value_type = super::openapi::Symbol)]
    pub symbol: String,
    /// The interval asked for.
    pub interval: Interval,
    /// Candles, oldest first.
    pub candles: Vec<Candle>,
}

/// The window `[from, to)` of `limit` buckets of `interval` seconds whose last bucket is the
/// one `before` falls in (exclusive when `before` is a bucket start), or the current one.
pub fn window(
    interval: i64,
    limit: u32,
    before: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let end_bucket = match before {
        // Buckets starting strictly before `before`: round its position up.
        Some(b) => {
            let (secs, nanos) = (b.timestamp(), b.timestamp_subsec_nanos());
            let bucket = secs.div_euclid(interval);
            if secs.rem_euclid(interval) == 0 && nanos == 0 {
                bucket
            } else {
                bucket + 1
            }
        }
        None => now.timestamp().div_euclid(interval) + 1,
    };
    let at = |bucket: i64| {
        bucket
            .checked_mul(interval)
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| ApiError::Unprocessable {
                code: "invalid_before",
                message: "before is out of the supported time range".into(),
            })
    };
    Ok((at(end_bucket - i64::from(limit))?, at(end_bucket)?))
}

fn view(row: CandleRow) -> Result<Candle, ApiError> {
    Ok(Candle {
        start: DateTime::from_timestamp(row.start, 0)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("candle start out of range")))?,
        open: Price::from_raw(row.open),
        high: Price::from_raw(row.high),
        low: Price::from_raw(row.low),
        close: Price::from_raw(row.close),
        volume: Qty::from_raw(row.volume),
        trades: row.trades,
    })
}

/// `GET /api/v1/markets/{symbol}/candles`.
#[utoipa::path(
    get,
    path = "/markets/{symbol}/candles",
    tag = "market",
    operation_id = "listCandles",
    summary = "OHLCV candles aggregated from trades, oldest first",
    params(SymbolPath, CandlesQuery),
    responses(
        (status = 200, description = "Candles; intervals without trades have none.", body = CandlesView),
        (status = 404, description = "`not_found`: no such instrument.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_symbol`, `invalid_page_size`, `invalid_before`.", body = crate::error::ErrorBody),
    )
)]
pub async fn candles(
    State(state): State<AppState>,
    ApiPath(SymbolPath { symbol }): ApiPath<SymbolPath>,
    ApiQuery(q): ApiQuery<CandlesQuery>,
) -> Result<Response, ApiError> {
    instrument(&state, &symbol)?;
    let limit = page_size("limit", q.limit)?;
    let (from, to) = window(q.interval.seconds(), limit, q.before, Utc::now())?;
    // The window's end is part of the key, so a cached answer never outlives its current candle.
    let key = format!("{}:{limit}:{}", q.interval.name(), to.timestamp());
    cached(&state, "candles", Some(&symbol), &key, || async {
        let rows = state
            .store
            .candles(&symbol, q.interval.seconds(), from, to)
            .await?;
        to_bytes(&CandlesView {
            symbol: symbol.clone(),
            interval: q.interval,
            candles: rows.into_iter().map(view).collect::<Result<_, _>>()?,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn the_window_ends_after_the_current_bucket() {
        let (from, to) = window(60, 3, None, t("2024-05-01T12:03:30Z")).expect("window");
        assert_eq!(from, t("2024-05-01T12:01:00Z"));
        assert_eq!(to, t("2024-05-01T12:04:00Z"));
    }

    #[test]
    fn before_excludes_the_bucket_it_starts() {
        let now = t("2030-01-01T00:00:00Z");
        let (from, to) = window(300, 2, Some(t("2024-05-01T12:05:00Z")), now).expect("window");
        assert_eq!(
            (from, to),
            (t("2024-05-01T11:55:00Z"), t("2024-05-01T12:05:00Z"))
        );
        let (_, to) = window(300, 2, Some(t("2024-05-01T12:05:00.001Z")), now).expect("window");
        assert_eq!(
            to,
            t("2024-05-01T12:10:00Z"),
            "a bucket starting before `before` is in"
        );
    }

    #[test]
    fn intervals_parse_from_their_names() {
        for (name, secs) in [
            ("1m", 60),
            ("5m", 300),
            ("15m", 900),
            ("1h", 3600),
            ("1d", 86400),
        ] {
            let i: Interval = serde_json::from_value(serde_json::json!(name)).expect(name);
            assert_eq!((i.seconds(), i.name()), (secs, name));
        }
        assert!(serde_json::from_value::<Interval>(serde_json::json!("2m")).is_err());
    }
}
