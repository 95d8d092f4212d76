//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API, generated with `utoipa`
//! from the handlers' `#[utoipa::path]` attributes and the request and response types.
//!
//! `utoipa` rather than `aide`: it documents handlers and types where they are written without
//! changing how the router is built (aide wants an `ApiRouter` and an `OperationInput` impl for
//! every custom extractor), and it writes OpenAPI 3.1 with JSON Schema 2020-12, which the
//! document's tests validate examples and live responses against.
//!
//! What the types cannot say is added here once for every operation ([`Standard`]): the error
//! responses every operation can give (400 for bad input, 401 for bearer-protected routes, 403
//! for admin routes, 408, 413, 415, 429, 500, 503), the bearer scheme, and the overview.
//!
//! The generated document is checked in as `platform/openapi.json` so that API changes show in
//! reviews: a test fails when the two differ; `UPDATE_OPENAPI=1 cargo test -p
//! tradeplane-platform openapi` rewrites the file.

mod schemas;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

pub use schemas::{
    ClientOrderId, Decimal, Instrument, Liquidity, OrderStatus, OrderType, Password, Registration,
    Side, Symbol, Text, TimeInForce, Timestamp, TradingStatus, UnsignedDecimal, Username,
};

/// The document's overview (`info.description`).
const OVERVIEW: &str = include_str!("overview.md");

/// The generated document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tradeplane API", version = "1", license(name = "Apache-2.0", identifier = "Apache-2.0")),
    servers((url = "/api/v1", description = "This server")),
    tags(
        (name = "auth", description = "Registration, login and sessions."),
        (name = "orders", description = "The caller's orders, fills and portfolio."),
        (name = "market", description = "Public market data: instruments, book, trades, ticker, WebSocket stream."),
        (name = "admin", description = "Admin-only operations."),
        (name = "meta", description = "This document."),
    ),
    paths(
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::mfa::enroll,
        super::mfa::confirm,
        super::mfa::verify,
        super::mfa::disable,
        super::auth::me,
        super::admin::deposit,
        super::audit::audit,
        super::approvals::pending,
        super::approvals::approve,
        super::approvals::reject,
        super::slo::report,
        super::market::halt,
        super::market::resume,
        super::orders::place,
        super::orders::list,
        super::orders::get,
        super::orders::cancel,
        super::orders::fills,
        super::orders::portfolio,
        super::market::instruments,
        super::market::book,
        super::market::trades,
        super::market::ticker,
        super::candles::candles,
        ws,
        document,
    ),
    components(schemas(
        schemas::WsClientMessage,
        schemas::WsSnapshot,
        schemas::WsEvent,
        schemas::WsError,
    )),
    modifiers(&Standard),
)]
pub struct ApiDoc;

/// The document as served, rendered once.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"rendering the OpenAPI document: {e}\"}}"));
    text.push('\n');
    text
});

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document of the API.", content_type = "application/json", body = Object, example = json!({"openapi": "3.1.0", "info": {"title": "Tradeplane API", "version": "1"}, "paths": {}})))
)]
pub async fn document() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        DOCUMENT.as_str(),
    )
}

/// Documents `GET /ws`, whose handler lives with the WebSocket code: the upgrade, and the
/// protocol in the description.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "market",
    operation_id = "marketDataStream",
    summary = "Market-data WebSocket",
    description = include_str!("ws.md"),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open. The messages are `WsClientMessage` (client to server), `WsSnapshot`, `WsEvent` and `WsError` (server to client)."),
        (status = 400, description = "`bad_request`: not a valid WebSocket upgrade (missing or wrong `Connection`, `Upgrade`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version: 13`).", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_connections`: this client already has `WS_MAX_CONNECTIONS_PER_IP` WebSockets open; or `rate_limited` (see the `RateLimited` response), with `Retry-After`.", body = crate::error::ErrorBody),
        (status = 426, description = "`error`: the connection cannot be upgraded (for example HTTP/2 without extended CONNECT).", body = crate::error::ErrorBody),
    )
)]
#[allow(dead_code)] // documents super::ws::ws
fn ws() {}

/// Standard responses, shared by reference (`#/components/responses/...`).
const STANDARD: &[(&str, &str, &str, &str)] = &[
    (
        "BadRequest",
        "400",
        "bad_request",
        "`bad_request`: malformed JSON, wrong types, missing or unknown fields, a path or query parameter of the wrong type.",
    ),
    (
        "Unauthorized",
        "401",
        "unauthorized",
        "`unauthorized`: missing, malformed, invalid or expired bearer token, a session that has ended (logout, refresh-token reuse, user deleted), or wrong credentials. The `Bearer` scheme name is case-insensitive.",
    ),
    (
        "Forbidden",
        "403",
        "forbidden",
        "`forbidden`: the operation needs the admin role.",
    ),
    (
        "RequestTimeout",
        "408",
        "request_timeout",
        "`request_timeout`: the request took longer than `REQUEST_TIMEOUT_SECONDS`, or its body longer than `REQUEST_BODY_TIMEOUT_SECONDS`.",
    ),
    (
        "PayloadTooLarge",
        "413",
        "payload_too_large",
        "`payload_too_large`: the body exceeds `MAX_BODY_BYTES`.",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "unsupported_media_type",
        "`unsupported_media_type`: the body is not `Content-Type: application/json`.",
    ),
    (
        "RateLimited",
        "429",
        "rate_limited",
        "`rate_limited` (with `Retry-After` and `RateLimit` headers), or `login_locked` after too many failed logins for one username.",
    ),
    (
        "Internal",
        "500",
        "internal_error",
        "`internal_error`: a bug; details are in the log under the request id.",
    ),
    (
        "OutcomeUnknown",
        "504",
        "outcome_unknown",
        "`outcome_unknown`: the command reached the database but its COMMIT was not resolved in time; look the order up, or retry with the same `client_order_id` (which never executes twice).",
    ),
    (
        "Unavailable",
        "503",
        "unavailable",
        "`unavailable` (the matcher or a dependency is unavailable), `overloaded` (the service shed the request) or `dependency_unavailable` (a circuit breaker is open): nothing was applied; retry later with backoff.",
    ),
];

fn error_response(status: &str, code: &str, description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .example(Some(json!({
                    "code": code,
                    "message": format!("what went wrong (HTTP {status})"),
                    "request_id": "3f8a0c1e-8d2b-4c4e-9a57-2f1d9c0b7e21",
                })))
                .build(),
        )
        .build()
}

/// Operations that go through the matcher, whose COMMIT may be unresolved (504).
const MATCHER_OPERATIONS: &[&str] = &[
    "placeOrder",
    "cancelOrder",
    "deposit",
    "haltMarket",
    "resumeMarket",
];

/// Adds what every operation shares: the overview, the bearer scheme, and the standard error
/// responses of each operation by what it takes (a body, parameters, a token, the admin role).
pub struct Standard;

/// Makes the optional properties of schema `name` non-nullable (`oneOf: [X, null]` becomes `X`):
/// the server refuses their `null` (see `super::orders::PlaceOrderBody`). The type lives with
/// the order flow, whose `Option` fields utoipa documents as nullable.
fn not_nullable(components: &mut utoipa::openapi::Components, name: &str) {
    use utoipa::openapi::schema::Schema;
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) else {
        return;
    };
    let null = json!({"type": "null"});
    for property in object.properties.values_mut() {
        let RefOr::T(Schema::OneOf(one_of)) = property else {
            continue;
        };
        let (nulls, rest): (Vec<_>, Vec<_>) = one_of
            .items
            .iter()
            .cloned()
            .partition(|item| serde_json::to_value(item).is_ok_and(|v| v == null));
        if let ([_], [only]) = (nulls.as_slice(), rest.as_slice()) {
            *property = only.clone();
        }
    }
}

impl Modify for Standard {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.description = Some(OVERVIEW.to_owned());
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("`Authorization: Bearer <access_token>` from `POST /auth/login` or `POST /auth/refresh`."))
                    .build(),
            ),
        );
        not_nullable(components, "PlaceOrder");
        for (name, status, code, description) in STANDARD {
            components.responses.insert(
                (*name).to_owned(),
                RefOr::T(error_response(status, code, description)),
            );
        }
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let secured = op.security.as_ref().is_some_and(|s| {
                    !s.is_empty()
                        && serde_json::to_value(s)
                            .is_ok_and(|v| v.to_string().contains("bearerAuth"))
                });
                let admin = op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == "admin"));
                let mut wanted = vec!["RequestTimeout", "RateLimited", "Internal", "Unavailable"];
                if op.request_body.is_some() {
                    wanted.extend(["BadRequest", "PayloadTooLarge", "UnsupportedMediaType"]);
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    wanted.push("BadRequest");
                }
                if secured {
                    wanted.push("Unauthorized");
                }
                if admin {
                    wanted.push("Forbidden");
                }
                if op
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| MATCHER_OPERATIONS.contains(&id))
                {
                    wanted.push("OutcomeUnknown");
                }
                for name in wanted {
                    let status = STANDARD
                        .iter()
                        .find(|s| s.0 == name)
                        .map(|s| s.1)
                        .unwrap_or("500");
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                        });
                }
            }
        }
    }
}
