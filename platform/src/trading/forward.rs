//! Forwarding a command to the replica that owns its symbol, and the wire format of the
//! internal endpoint (`POST /internal/v1/commands`) that receives it.
//!
//! The forwarded command keeps the client's request id and what is left of its deadline; the
//! owner runs it on its own matcher exactly as a local command and answers with the matcher's
//! reply, which the forwarding replica hands to its client unchanged: the client sees one
//! answer. Requests are signed with HMAC-SHA256 under a key derived from `JWT_SECRET` (which
//! every replica shares), so only a replica can submit commands on an account's behalf.
//!
//! A forward is sent once. If the connection fails before the request was written it is safe to
//! route again; if it fails after, the owner may have executed it, so the client is told the
//! outcome is unknown (504), never "failed".

use std::time::Duration;

use axum::body::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tradeplane_engine::num::Qty;

use super::{Done, Refusal, Reply, Request};
use crate::store::views::OrderView;

/// The internal endpoint's path.
pub const PATH: &str = "/internal/v1/commands";
/// The header carrying the request's signature (hex).
pub const SIGNATURE: &str = "x-tradeplane-signature";

/// A command as one replica sends it to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// The command.
    pub request: Request,
    /// What is left of the client's deadline, in milliseconds.
    pub timeout_ms: u64,
}

/// A matcher reply on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireReply {
    Order { order: Box<OrderView> },
    Status,
    Credited { qty: Qty },
    Refused { refusal: WireRefusal },
}

/// A refusal on the wire; codes are mapped back to the static ones the API knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireRefusal {
    Rule { code: String, message: String },
    NotFound { message: String },
    Conflict { message: String },
    IdempotencyConflict { message: String },
    AccountGone,
    DatabaseDown { message: String },
    Expired,
    NotOwner,
    OutcomeUnknown,
    Unavailable { message: String },
    Internal { message: String },
    NotPending { message: String },
}

/// Every rule code the engine and the order path produce, so that a code read off the wire is
/// the same `&'static str` as a local one (unknown codes become `unprocessable`).
const RULE_CODES: &[&str] = &[
    "unknownSymbol",
    "symbolHalted",
    "unknownAccount",
    "duplicateOrderId",
    "invalidQuantity",
    "quantityNotOnLot",
    "quantityBelowMin",
    "quantityAboveMax",
    "missingPrice",
    "unexpectedPrice",
    "marketOrderNeedsIocOrFok",
    "priceNotOnTick",
    "priceOutsideBand",
    "notionalTooLarge",
    "insufficientCash",
    "insufficientPosition",
    "openOrderLimit",
    "unknownOrder",
    "notOwner",
    "amountTooLarge",
    "invalidPrice",
    "invalidClientOrderId",
];

fn static_code(code: &str) -> &'static str {
    RULE_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("unprocessable")
}

impl From<Reply> for WireReply {
    fn from(reply: Reply) -> WireReply {
        match reply {
            Ok(Done::Order(order)) => WireReply::Order { order },
            Ok(Done::Status) => WireReply::Status,
            Ok(Done::Credited(qty)) => WireReply::Credited { qty },
            Err(r) => WireReply::Refused {
                refusal: match r {
                    Refusal::Rule { code, message } => WireRefusal::Rule {
                        code: code.to_owned(),
                        message,
                    },
                    Refusal::NotFound(message) => WireRefusal::NotFound { message },
                    Refusal::Conflict(message) => WireRefusal::Conflict { message },
                    Refusal::IdempotencyConflict(message) => {
                        WireRefusal::IdempotencyConflict { message }
                    }
                    Refusal::AccountGone => WireRefusal::AccountGone,
                    Refusal::DatabaseDown(message) => WireRefusal::DatabaseDown { message },
                    Refusal::Expired => WireRefusal::Expired,
                    Refusal::NotOwner => WireRefusal::NotOwner,
                    Refusal::OutcomeUnknown => WireRefusal::OutcomeUnknown,
                    Refusal::Unavailable(message) => WireRefusal::Unavailable { message },
                    Refusal::Internal(message) => WireRefusal::Internal { message },
                    Refusal::NotPending(message) => WireRefusal::NotPending { message },
                },
            },
        }
    }
}

impl From<WireReply> for Reply {
    fn from(wire: WireReply) -> Reply {
        match wire {
            WireReply::Order { order } => Ok(Done::Order(order)),
            WireReply::Status => Ok(Done::Status),
            WireReply::Credited { qty } => Ok(Done::Credited(qty)),
            WireReply::Refused { refusal } => Err(match refusal {
                WireRefusal::Rule { code, message } => Refusal::Rule {
                    code: static_code(&code),
                    message,
                },
                WireRefusal::NotFound { message } => Refusal::NotFound(message),
                WireRefusal::Conflict { message } => Refusal::Conflict(message),
                WireRefusal::IdempotencyConflict { message } => {
                    Refusal::IdempotencyConflict(message)
                }
                WireRefusal::AccountGone => Refusal::AccountGone,
                WireRefusal::DatabaseDown { message } => Refusal::DatabaseDown(message),
                WireRefusal::Expired => Refusal::Expired,
                WireRefusal::NotOwner => Refusal::NotOwner,
                WireRefusal::OutcomeUnknown => Refusal::OutcomeUnknown,
                WireRefusal::Unavailable { message } => Refusal::Unavailable(message),
                WireRefusal::Internal { message } => Refusal::Internal(message),
                WireRefusal::NotPending { message } => Refusal::NotPending(message),
            }),
        }
    }
}

/// The key replicas sign forwarded commands with, derived from the shared `JWT_SECRET` (a
/// separate key, so a signature can never pass for a token or the other way round).
#[derive(Clone)]
pub struct ForwardKey(Vec<u8>);

impl ForwardKey {
    /// Derives the key.
    pub fn derive(jwt_secret: &[u8]) -> ForwardKey {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(jwt_secret).unwrap_or_else(|_| unreachable_mac());
        mac.update(b"tradeplane internal commands v1");
        ForwardKey(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_mac())
    }

    /// The hex signature of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` (hex) signs `body`; compared in constant time.
    pub fn verify(&self, body: &[u8], signature: &str) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&raw).is_ok()
    }
}

/// HMAC accepts keys of any length; this is never reached.
fn unreachable_mac() -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("a 32-byte key is valid")
}

/// Why a forward gave no reply.
#[derive(Debug)]
pub enum ForwardError {
    /// The request was never delivered (connection refused, reset before sending): route again.
    NotSent(String),
    /// It may have been delivered and executed; its outcome is unknown.
    Unknown(String),
}

/// Sends commands to other replicas over pooled HTTP/1.1 connections.
#[derive(Clone)]
pub struct Forwarder {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    key: ForwardKey,
}

impl Forwarder {
    /// A forwarder signing with `key`.
    pub fn new(key: ForwardKey) -> Forwarder {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        Forwarder { client, key }
    }

    /// The signing key (the internal endpoint verifies with it).
    pub fn key(&self) -> &ForwardKey {
        &self.key
    }

    /// Sends `command` to the replica at `address` and returns its reply.
    pub async fn send(
        &self,
        address: &str,
        command: &Forwarded,
        request_id: Option<&str>,
    ) -> Result<Reply, ForwardError> {
        let body = serde_json::to_vec(command)
            .map_err(|e| ForwardError::NotSent(format!("encoding the command: {e}")))?;
        let mut builder = http::Request::post(format!("http://{address}{PATH}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE, self.key.sign(&body));
        if let Some(id) = request_id {
            builder = builder.header("x-request-id", id);
        }
        if let Some(headers) = builder.headers_mut() {
            crate::telemetry::otel::inject(headers);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ForwardError::NotSent(format!("building the request: {e}")))?;
        let limit = Duration::from_millis(command.timeout_ms) + Duration::from_secs(2);
        let response = match tokio::time::timeout(limit, self.client.request(request)).await {
            Err(_) => {
                return Err(ForwardError::Unknown(format!(
                    "{address} did not answer in time"
                )));
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(ForwardError::NotSent(format!(
                    "cannot connect to {address}: {e}"
                )));
            }
            Ok(Err(e)) => return Err(ForwardError::Unknown(format!("{address}: {e}"))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ForwardError::Unknown(format!("{address}: reading the reply: {e}")))?
            .to_bytes();
        if !status.is_success() {
            // The owner refused the request itself (a bad signature, shedding): not executed.
            return Err(ForwardError::NotSent(format!(
                "{address} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        serde_json::from_slice::<WireReply>(&bytes)
            .map(Reply::from)
            .map_err(|e| ForwardError::Unknown(format!("{address}: unreadable reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_same_secret_and_body() {
        let key = ForwardKey::derive(b"a shared secret of enough length");
        let sig = key.sign(b"{\"a\":1}");
        assert!(key.verify(b"{\"a\":1}", &sig));
        assert!(!key.verify(b"{\"a\":2}", &sig));
        assert!(!ForwardKey::derive(b"another secret").verify(b"{\"a\":1}", &sig));
        assert!(!key.verify(b"{\"a\":1}", "not hex"));
    }

    #[test]
    fn replies_survive_the_wire() {
        let replies: Vec<Reply> = vec![
            Ok(Done::Status),
            Ok(Done::Credited("1.5".parse().expect("qty"))),
            Err(Refusal::Rule {
                code: "insufficientCash",
                message: "m".into(),
            }),
            Err(Refusal::NotOwner),
            Err(Refusal::Expired),
        ];
        for reply in replies {
            let wire = serde_json::to_string(&WireReply::from(reply.clone())).expect("encode");
            let back: Reply = serde_json::from_str::<WireReply>(&wire)
                .expect("decode")
                .into();
            assert_eq!(format!("{back:?}"), format!("{reply:?}"));
        }
        let odd = WireReply::Refused {
            refusal: WireRefusal::Rule {
                code: "madeUp".into(),
                message: "m".into(),
            },
        };
        assert!(matches!(
            Reply::from(odd),
            Err(Refusal::Rule {
                code: "unprocessable",
                ..
            })
        ));
    }
}
