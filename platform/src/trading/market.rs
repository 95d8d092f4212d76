//! Public market data as published to WebSocket clients and across replicas.

use serde::{Deserialize, Serialize};
use tradeplane_engine::events::{Event, EventKind};

/// One public event of a symbol. `md_seq` is contiguous per symbol, so a client that sees a
/// jump knows it missed something and should re-fetch the book.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketEvent {
    /// Instrument.
    pub symbol: String,
    /// Market-data sequence number.
    pub md_seq: u64,
    /// `trade`, `book` or `status`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's data (no account or order ids: those are private).
    pub data: serde_json::Value,
    /// The replica that published it (used to skip our own events coming back from Redis).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

impl MarketEvent {
    /// The public view of an engine event, or `None` for private events.
    pub fn from_engine(symbol: &str, event: &Event, origin: &str) -> Option<MarketEvent> {
        let md_seq = event.md_seq?;
        let (kind, data) = match &event.kind {
            EventKind::Trade(t) => (
                "trade",
                serde_json::json!({
                    "tradeSeq": event.seq,
                    "price": t.price,
                    "qty": t.qty,
                    "takerSide": t.taker_side,
                }),
            ),
            EventKind::BookLevel(l) => (
                "book",
                serde_json::json!({ "side": l.side, "price": l.price, "qty": l.qty, "orders": l.orders }),
            ),
            EventKind::Status { status } => ("status", serde_json::json!({ "status": status })),
            _ => return None,
        };
        Some(MarketEvent {
            symbol: symbol.to_owned(),
            md_seq,
            kind: kind.to_owned(),
            data,
            origin: origin.to_owned(),
        })
    }
}
