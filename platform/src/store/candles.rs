//! Candles (OHLCV) and 24-hour statistics, aggregated from the `trades` table.
//!
//! Candles are computed on read rather than kept in a rollup table: the aggregation is one
//! range scan of the `trades_symbol_time` index per request, bounded by the requested window
//! (`limit` buckets), and every amount stays an exact integer of `10^-8` units. Open and close
//! are the prices of the bucket's first and last trade by symbol sequence, which the matcher
//! assigns in commit order.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Backend, Store, with_pool};

/// One candle as stored amounts (raw `10^-8` units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleRow {
    /// Start of the bucket, in seconds since the Unix epoch (a multiple of the interval).
    pub start: i64,
    /// Price of the first trade.
    pub open: i64,
    /// Highest trade price.
    pub high: i64,
    /// Lowest trade price.
    pub low: i64,
    /// Price of the last trade.
    pub close: i64,
    /// Sum of the traded quantities.
    pub volume: i64,
    /// Number of trades.
    pub trades: i64,
}

/// Open, high and low of a symbol's trades since some time (raw units); `None` without trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    /// Price of the first trade in the window.
    pub open: i64,
    /// Highest price in the window.
    pub high: i64,
    /// Lowest price in the window.
    pub low: i64,
}

/// The aggregation, shared by both backends but for `$bucket`: the dialect's "seconds since the
/// epoch divided by the interval" expression.
macro_rules! candles_sql {
    ($bucket:literal) => {
        concat!(
            "WITH b AS (SELECT ", $bucket, " AS bucket, seq, price, qty FROM trades
                WHERE symbol = $1 AND created_at >= $2 AND created_at < $3),
            g AS (SELECT bucket, MIN(seq) AS first_seq, MAX(seq) AS last_seq, MAX(price) AS high,
                MIN(price) AS low, CAST(SUM(qty) AS BIGINT) AS volume, COUNT(*) AS n
                FROM b GROUP BY bucket)
            SELECT CAST(g.bucket AS BIGINT) AS bucket, o.price AS open, g.high, g.low,
                c.price AS close, g.volume, CAST(g.n AS BIGINT) AS n
            FROM g
            JOIN trades o ON o.symbol = $1 AND o.seq = g.first_seq
            JOIN trades c ON c.symbol = $1 AND c.seq = g.last_seq
            ORDER BY g.bucket"
        )
    };
}

const PG_CANDLES: &str = candles_sql!("FLOOR(EXTRACT(EPOCH FROM created_at) / $4)");
const SQLITE_CANDLES: &str =
    candles_sql!("(CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) / $4)");

const WINDOW_SQL: &str = "SELECT MIN(price) AS low, MAX(price) AS high,
    (SELECT price FROM trades WHERE symbol = $1 AND created_at >= $2 ORDER BY seq LIMIT 1) AS open
FROM trades WHERE symbol = $1 AND created_at >= $2";

impl Store {
    /// The candles of `symbol` whose buckets of `interval_secs` seconds start in
    /// `[from, to)` (both multiples of the interval), oldest first; buckets without trades are
    /// absent.
    pub async fn candles(
        &self,
        symbol: &str,
        interval_secs: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CandleRow>, sqlx::Error> {
        let sql = match self.backend() {
            Backend::Postgres => PG_CANDLES,
            Backend::Sqlite => SQLITE_CANDLES,
        };
        with_pool!(self, super::telemetry::Op::CandlesRead, pool => {
            let rows = sqlx::query(sql)
                .bind(symbol)
                .bind(from)
                .bind(to)
                .bind(interval_secs)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(CandleRow {
                        start: r.try_get::<i64, _>("bucket")? * interval_secs,
                        open: r.try_get("open")?,
                        high: r.try_get("high")?,
                        low: r.try_get("low")?,
                        close: r.try_get("close")?,
                        volume: r.try_get("volume")?,
                        trades: r.try_get("n")?,
                    })
                })
                .collect()
        })
    }

    /// Open, high and low of `symbol`'s trades at or after `since` (the ticker's 24 hours).
    pub async fn window_stats(
        &self,
        symbol: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<WindowStats>, sqlx::Error> {
        with_pool!(self, super::telemetry::Op::CandlesRead, pool => {
            let row = sqlx::query(WINDOW_SQL)
                .bind(symbol)
                .bind(since)
                .fetch_one(pool)
                .await?;
            let open: Option<i64> = row.try_get("open")?;
            let high: Option<i64> = row.try_get("high")?;
            let low: Option<i64> = row.try_get("low")?;
            Ok(match (open, high, low) {
                (Some(open), Some(high), Some(low)) => Some(WindowStats { open, high, low }),
                _ => None,
            })
        })
    }
}
