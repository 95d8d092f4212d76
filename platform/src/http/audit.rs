//! `GET /api/v1/admin/audit`: the audit trail, filtered, paged by cursor, or exported as NDJSON.
//!
//! The page body stays a JSON array of events, as before the filters existed, so the web app and
//! existing API clients keep working; the next page's cursor is in the `x-next-cursor` header
//! (absent on the last page). The cursor is opaque (base64url of the last id) and `before`
//! (the last id itself) keeps working. Every filter value is checked here (a kind's alphabet,
//! a tag of the vocabulary, a score 0–100, RFC 3339 times) and bound, never spliced, by the
//! store; a bad one is 400 `invalid_filter` naming the parameter.
//!
//! The NDJSON export (`format=ndjson` or `Accept: application/x-ndjson`) streams every matching
//! event, one JSON object per line, reading [`EXPORT_CHUNK`] rows at a time, so its memory stays
//! bounded whatever the trail's size; `limit` then caps the number of lines.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::extract::{AdminUser, ApiQuery};
use crate::audit::{MAX_SCORE, Tag};
use crate::error::ApiError;
use crate::input::Validate;
use crate::state::AppState;
use crate::store::{AuditEvent, AuditFilter};

/// Rows the export reads per statement.
pub const EXPORT_CHUNK: u32 = 500;
/// The NDJSON media type.
pub const NDJSON: &str = "application/x-ndjson";
/// The response header carrying the next page's cursor.
pub const NEXT_CURSOR: &str = "x-next-cursor";
/// Longest kind (`action`) a filter may name.
const MAX_KIND: usize = 64;

/// The response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// A JSON array (a page).
    Json,
    /// Newline-delimited JSON (every matching event, streamed).
    Ndjson,
}

/// Query of the audit listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 500 (default 100; else 422 `invalid_page_size`). With NDJSON, the most
    /// lines exported (default: all).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, nullable = false)]
    pub limit: Option<u32>,
    /// Only events older than this id (the last id of the previous page). Prefer `cursor`.
    #[serde(default)]
    #[param(nullable = false)]
    pub before: Option<i64>,
    /// The `x-next-cursor` of the previous page (opaque; not with `before`).
    #[serde(default)]
    #[param(nullable = false, max_length = 32)]
    pub cursor: Option<String>,
    /// Only this kind (`action`, e.g. `login.failed`): 1–64 of `a-z 0-9 . _`.
    #[serde(default)]
    #[param(nullable = false, max_length = 64, pattern = "^[a-z0-9._]{1,64}$")]
    pub kind: Option<String>,
    /// Only this actor (e.g. `user:7`, `account:3`, `anonymous`, `system`): 1–256 characters.
    #[serde(default)]
    #[param(nullable = false, min_length = 1, max_length = 256)]
    pub actor: Option<String>,
    /// Only events scoring at least this (0–100; high risk is 70).
    #[serde(default)]
    #[param(nullable = false, minimum = 0, maximum = 100)]
    pub min_risk: Option<u32>,
    /// Only events with this compliance tag.
    #[serde(default)]
    #[param(nullable = false, inline, value_type = Option<AuditTag>)]
    pub tag: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(default)]
    #[param(nullable = false, value_type = Option<super::openapi::Timestamp>)]
    pub from: Option<String>,
    /// Only events before this time (RFC 3339; after `from`).
    #[serde(default)]
    #[param(nullable = false, value_type = Option<super::openapi::Timestamp>)]
    pub to: Option<String>,
    /// `ndjson` exports (as does `Accept: application/x-ndjson`); default `json`.
    #[serde(default)]
    #[param(nullable = false, inline)]
    pub format: Option<AuditFormat>,
}

/// A compliance tag (docs/security.md), for the OpenAPI document.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AuditTag {
    /// Authentication and access control.
    Auth,
    /// Money or positions move.
    Financial,
    /// Personal data.
    Pii,
    /// A privileged action.
    Admin,
    /// SOX evidence.
    Sox,
    /// PCI DSS evidence.
    Pci,
    /// GDPR processing.
    Gdpr,
}

impl Validate for AuditQuery {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(()) // checked with their meaning by `filter`
    }
}

fn invalid(param: &str, rule: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_filter",
        message: format!("{param}: {rule}"),
    }
}

/// The cursor of a page that ended with event `id`.
pub fn cursor_of(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(id.to_string())
}

fn parse_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
}

fn time(param: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(param, "an RFC 3339 time, e.g. 2026-01-02T15:04:05Z"))
        })
        .transpose()
}

impl AuditQuery {
    /// The store filter these parameters ask for, every value checked.
    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        if let Some(kind) = &self.kind {
            let ok = (1..=MAX_KIND).contains(&kind.len())
                && kind.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
                });
            if !ok {
                return Err(invalid("kind", "1 to 64 of a-z, 0-9, '.', '_'"));
            }
        }
        if let Some(actor) = &self.actor
            && crate::input::text("actor", actor).is_err()
        {
            return Err(invalid(
                "actor",
                "1 to 256 characters, none of them a control character",
            ));
        }
        let min_risk = match self.min_risk {
            Some(n) if n > u32::from(MAX_SCORE) => {
                return Err(invalid("min_risk", "a score from 0 to 100"));
            }
            n => n.and_then(|n| u8::try_from(n).ok()),
        };
        let tag = self
            .tag
            .as_deref()
            .map(|t| {
                t.parse::<Tag>().map_err(|_| {
                    invalid("tag", "one of auth, financial, pii, admin, sox, pci, gdpr")
                })
            })
            .transpose()?;
        let from = time("from", self.from.as_deref())?;
        let to = time("to", self.to.as_deref())?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(invalid("to", "must be after from"));
        }
        let before = match (&self.cursor, self.before) {
            (Some(_), Some(_)) => return Err(invalid("cursor", "not together with before")),
            (Some(c), None) => Some(
                parse_cursor(c)
                    .ok_or_else(|| invalid("cursor", "not a cursor this listing returned"))?,
            ),
            (None, b) => b,
        };
        Ok(AuditFilter {
            action: self.kind.clone(),
            actor: self.actor.clone(),
            min_risk,
            tag,
            from,
            to,
            before,
        })
    }
}

/// `GET /api/v1/admin/audit`: the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    operation_id = "listAudit",
    summary = "The audit trail, newest first: filter, page, export",
    description = "Admin only. Filters combine (AND): `kind`, `actor`, `min_risk`, `tag`, `from` (inclusive), `to` (exclusive). A page is a JSON array; the next page is `cursor` = the `x-next-cursor` response header, absent on the last page (`before` = the last id of the previous page works too). `format=ndjson` or `Accept: application/x-ndjson` streams every matching event as newline-delimited JSON instead (at most `limit` lines when given). Events carry a risk score (0–100, `null` before scoring existed) and compliance tags (docs/security.md). Every text in an event is bounded (256 characters per field, 128 for the request id, 4 KiB of details).",
    params(AuditQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Audit events (a JSON array), or the NDJSON export (one event per line).",
            headers(("x-next-cursor" = String, description = "The cursor of the next page (JSON pages only; absent on the last).")),
            content((Vec<AuditEvent> = "application/json"), (AuditEvent = "application/x-ndjson"))),
        (status = 400, description = "`invalid_filter` (the message names the parameter) or `bad_request`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_page_size`.", body = crate::error::ErrorBody),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter()?;
    let ndjson = match q.format {
        Some(f) => f == AuditFormat::Ndjson,
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|m| m.trim().starts_with(NDJSON))),
    };
    if ndjson {
        let cap = match q.limit {
            Some(_) => Some(u64::from(super::orders::page_size("limit", q.limit)?)),
            None => None,
        };
        return Ok(export(state, filter, cap));
    }
    let limit = super::orders::page_size("limit", q.limit)?;
    // One more than the page tells whether another page follows.
    let mut events = state.store.list_audit_filtered(limit + 1, &filter).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let mut response = Json(&events).into_response();
    if more && let Some(last) = events.last() {
        // base64url of digits: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&cursor_of(last.id)) {
            response.headers_mut().insert(NEXT_CURSOR, v);
        }
    }
    Ok(response)
}

/// Streams the events matching `filter`, at most `cap`, [`EXPORT_CHUNK`] rows per statement.
fn export(state: AppState, filter: AuditFilter, cap: Option<u64>) -> Response {
    struct Cursor {
        state: AppState,
        filter: AuditFilter,
        left: Option<u64>,
        done: bool,
    }
    let start = Cursor {
        state,
        filter,
        left: cap,
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut c| async move {
        if c.done || c.left == Some(0) {
            return None;
        }
        let chunk = c.left.map_or(EXPORT_CHUNK, |l| {
            u32::try_from(l).unwrap_or(u32::MAX).min(EXPORT_CHUNK)
        });
        let events: Vec<AuditEvent> = match c
            .state
            .store
            .list_audit_filtered(chunk, &c.filter)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                // The status line is sent: cutting the body short is how the client learns.
                tracing::warn!(error = %e, "audit export failed part way; the response is cut short");
                c.done = true;
                return Some((Err(std::io::Error::other("audit export failed")), c));
            }
        };
        c.done = events.len() < chunk as usize;
        c.filter.before = events.last().map(|e| e.id);
        if let Some(l) = &mut c.left {
            *l = l.saturating_sub(events.len() as u64);
        }
        let mut out = Vec::with_capacity(events.len() * 256);
        for e in &events {
            if serde_json::to_writer(&mut out, e).is_err() {
                c.done = true;
                return Some((
                    Err(std::io::Error::other("audit event not serialisable")),
                    c,
                ));
            }
            out.push(b'\n');
        }
        Some((Ok(Bytes::from(out)), c))
    });
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_tags_are_the_vocabulary() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json");
        let params = doc["paths"]["/admin/audit"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let tag = params.iter().find(|p| p["name"] == "tag").expect("tag");
        let documented: Vec<&str> = tag["schema"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let vocabulary: Vec<&str> = Tag::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(documented, vocabulary);
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_cursor(&cursor_of(42)), Some(42));
        for bad in ["", "!!", "LTE", "YWJj", &URL_SAFE_NO_PAD.encode("0")] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
