//! `GET /api/v1/ws`: the market-data WebSocket, and what keeps it cheap and bounded.
//!
//! - Each market event is serialised once, by one fan-out task ([`WsHub::start`]), into a
//!   shared [`Utf8Bytes`] that every subscriber sends as is (before, every subscriber cloned
//!   and serialised every event).
//! - Each connection has small read and write buffers ([`READ_BUFFER_BYTES`]): tungstenite's
//!   default 128 KiB read buffer, zero-filled at every wake-up, was most of the fan-out's CPU
//!   and ~130 KB of memory per idle subscriber.
//! - `WS_MAX_CONNECTIONS_PER_IP` open WebSockets per client IP (past it: 429
//!   `too_many_connections` before the upgrade), `WS_MAX_SUBSCRIPTIONS` symbols per connection
//!   and per subscribe message (past it: close 1008), client messages of at most
//!   `WS_MAX_MESSAGE_BYTES` (past it: close 1009). Symbols repeated in one subscribe count
//!   once and get one snapshot.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::market::book_view;
use super::serve::{PerIp, PerIpGuard};
use crate::config::WsConfig;
use crate::error::ApiError;
use crate::state::AppState;
use crate::trading::MarketEvent;

/// Read buffer of one WebSocket: client messages are small subscribe/unsubscribe requests.
pub const READ_BUFFER_BYTES: usize = 4096;

/// Events the fan-out keeps for subscribers that are behind; past it a subscriber is closed
/// with 1008 (too slow).
const FANOUT_DEPTH: usize = 4096;

/// One market event, serialised once for every subscriber.
#[derive(Debug)]
pub struct WireEvent {
    /// Instrument.
    pub symbol: String,
    /// Its market-data sequence number.
    pub md_seq: u64,
    /// The JSON text sent to subscribers.
    pub text: Utf8Bytes,
}

/// The per-process WebSocket state: the serialised fan-out, the per-IP cap and the metrics.
#[derive(Clone, Debug)]
pub struct WsHub {
    events: broadcast::Sender<Arc<WireEvent>>,
    per_ip: PerIp,
    refused: IntCounterVec,
    closed: IntCounterVec,
}

impl WsHub {
    /// Registers `websocket_refused_total{reason}` and `websocket_closed_total{code}`, and
    /// starts the task that serialises each event of `trading` once, until `shutdown`.
    pub fn start(
        trading: &crate::trading::Trading,
        config: &WsConfig,
        registry: &Registry,
        shutdown: CancellationToken,
    ) -> Result<WsHub, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "websocket_refused_total",
                "WebSocket upgrades refused, by reason (per_ip: WS_MAX_CONNECTIONS_PER_IP).",
            ),
            &["reason"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "websocket_closed_total",
                "WebSockets closed by the server, by close code (1001 shutdown, 1008 policy: too slow or too many subscriptions, 1009 message too big).",
            ),
            &["code"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        refused.with_label_values(&["per_ip"]);
        for code in ["1001", "1008", "1009"] {
            closed.with_label_values(&[code]);
        }
        let (events, _) = broadcast::channel(FANOUT_DEPTH);
        tokio::spawn(fan_out(trading.subscribe(), events.clone(), shutdown));
        Ok(WsHub {
            events,
            per_ip: PerIp::new(config.max_connections_per_ip),
            refused,
            closed,
        })
    }
}

/// Serialises every event once (without `origin`, the replicas' bookkeeping) and passes it on.
async fn fan_out(
    mut source: broadcast::Receiver<Arc<MarketEvent>>,
    sink: broadcast::Sender<Arc<WireEvent>>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = source.recv() => event,
        };
        match event {
            Ok(event) => {
                let public = MarketEvent {
                    origin: String::new(),
                    ..(*event).clone()
                };
                match serde_json::to_string(&public) {
                    Ok(text) => {
                        let _ = sink.send(Arc::new(WireEvent {
                            symbol: public.symbol,
                            md_seq: public.md_seq,
                            text: text.into(),
                        }));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serialise a market event"),
                }
            }
            // Subscribers see the md_seq gap and subscribe again for a snapshot.
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "WebSocket fan-out fell behind the market events"
                )
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// A message from a WebSocket client.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMessage {
    /// Start receiving a snapshot and then the events of these symbols.
    Subscribe { symbols: Vec<String> },
    /// Stop receiving these symbols.
    Unsubscribe { symbols: Vec<String> },
}

/// `GET /api/v1/ws`: the market-data stream (protocol in `openapi/ws.md`).
///
/// Send `{"op":"subscribe","symbols":["BTC-USD"]}`; the server answers with a `snapshot`
/// (book levels and the `md_seq` it reflects) and then every `trade`, `book` and `status` event
/// of the symbol with its `md_seq`. Events are contiguous per symbol: a jump means a gap, and the
/// client should subscribe again for a fresh snapshot. A client that falls too far behind is
/// disconnected (close code 1008) rather than slowing anyone else down; on shutdown every client
/// gets close code 1001.
pub async fn ws(State(state): State<AppState>, req: Request) -> Response {
    let ip = crate::http::guard::client_ip(&req, state.config.resilience.forwarded_for_hops)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // The TCP connection's cap slots, held until the WebSocket closes.
    let conn_slot = req
        .extensions()
        .get::<super::serve::ConnectionSlot>()
        .cloned();
    let upgrade = match WebSocketUpgrade::from_request(req, &state).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let limits = state.config.ws.clone();
    let Some(slot) = state.ws.per_ip.acquire(ip) else {
        state.ws.refused.with_label_values(&["per_ip"]).inc();
        return ApiError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_connections",
            message: format!(
                "at most {} WebSocket connections per client",
                limits.max_connections_per_ip
            ),
        }
        .into_response();
    };
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| async move {
            stream(state, socket, limits, slot).await;
            drop(conn_slot);
        })
}

/// Why the server closes a connection.
enum Close {
    /// The process is draining (1001).
    Shutdown,
    /// A policy violation (1008) with its reason.
    Policy(String),
    /// A client message over `WS_MAX_MESSAGE_BYTES` (1009).
    TooBig,
}

async fn send_json(socket: &mut WebSocket, value: &impl Serialize) -> bool {
    match serde_json::to_string(value) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

/// A read error that is tungstenite's message or frame size limit.
fn is_too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

/// One subscriber's state.
struct Subscriber {
    subscribed: HashSet<String>,
    last_seen: HashMap<String, u64>,
}

async fn stream(state: AppState, mut socket: WebSocket, limits: WsConfig, _slot: PerIpGuard) {
    let gauge = state.trading.metrics().websocket_subscribers.clone();
    gauge.inc();
    let close = serve_socket(&state, &mut socket, &limits).await;
    if let Some(close) = close {
        let (code, reason) = match close {
            Close::Shutdown => (1001, "server shutting down".to_owned()),
            Close::Policy(reason) => (1008, reason),
            Close::TooBig => (
                1009,
                format!(
                    "message too big: at most {} bytes",
                    limits.max_message_bytes
                ),
            ),
        };
        state
            .ws
            .closed
            .with_label_values(&[&code.to_string()])
            .inc();
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    gauge.dec();
}

/// Serves one connection until it ends; `Some` when the server must close it.
async fn serve_socket(
    state: &AppState,
    socket: &mut WebSocket,
    limits: &WsConfig,
) -> Option<Close> {
    let mut events = state.ws.events.subscribe();
    let mut sub = Subscriber {
        subscribed: HashSet::new(),
        last_seen: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return Some(Close::Shutdown),
            event = events.recv() => match event {
                Ok(event) => {
                    if !sub.subscribed.contains(&event.symbol) {
                        continue;
                    }
                    let seen = sub.last_seen.entry(event.symbol.clone()).or_insert(0);
                    if event.md_seq <= *seen {
                        continue; // already reflected in the snapshot
                    }
                    *seen = event.md_seq;
                    if socket.send(Message::Text(event.text.clone())).await.is_err() {
                        return None;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    return Some(Close::Policy("too slow: fell behind the market-data stream".into()));
                }
                Err(RecvError::Closed) => return None,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(ClientMessage::Subscribe { symbols }) => {
                            if let Some(close) = subscribe(state, socket, &mut sub, symbols, limits).await {
                                return close;
                            }
                        }
                        Ok(ClientMessage::Unsubscribe { symbols }) => {
                            for s in symbols {
                                sub.subscribed.remove(&s);
                                sub.last_seen.remove(&s);
                            }
                        }
                        Err(e) => {
                            let err = serde_json::json!({"type": "error", "code": "bad_request", "message": e.to_string()});
                            if !send_json(socket, &err).await {
                                return None;
                            }
                        }
                    }
                }
                Some(Err(e)) => return is_too_big(e).then_some(Close::TooBig),
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Handles one subscribe: each distinct symbol once, within `WS_MAX_SUBSCRIPTIONS`. `Some` ends
/// the connection (`Some(None)`: the client went away).
async fn subscribe(
    state: &AppState,
    socket: &mut WebSocket,
    sub: &mut Subscriber,
    symbols: Vec<String>,
    limits: &WsConfig,
) -> Option<Option<Close>> {
    let mut distinct = HashSet::new();
    let symbols: Vec<String> = symbols
        .into_iter()
        .filter(|s| distinct.insert(s.clone()))
        .collect();
    let new = symbols
        .iter()
        .filter(|s| !sub.subscribed.contains(*s))
        .count();
    if symbols.len() > limits.max_subscriptions
        || sub.subscribed.len() + new > limits.max_subscriptions
    {
        return Some(Some(Close::Policy(format!(
            "too many subscriptions: at most {} symbols per connection",
            limits.max_subscriptions
        ))));
    }
    for symbol in symbols {
        if !state.trading.instruments().contains_key(&symbol) {
            let err = serde_json::json!({"type": "error", "code": "unknownSymbol", "message": format!("no instrument {symbol}")});
            if !send_json(socket, &err).await {
                return Some(None);
            }
            continue;
        }
        match book_view(state, &symbol, 50).await {
            Ok(book) => {
                sub.last_seen
                    .insert(symbol.clone(), u64::try_from(book.md_seq).unwrap_or(0));
                sub.subscribed.insert(symbol);
                let snapshot = serde_json::json!({"type": "snapshot", "symbol": book.symbol, "md_seq": book.md_seq, "bids": book.bids, "asks": book.asks});
                if !send_json(socket, &snapshot).await {
                    return Some(None);
                }
            }
            Err(e) => {
                let err = serde_json::json!({"type": "error", "code": e.code(), "message": e.to_string()});
                if !send_json(socket, &err).await {
                    return Some(None);
                }
            }
        }
    }
    None
}
