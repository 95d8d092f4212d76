//! The append-only audit trail: who did what, when, in which request.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, with_pool};

/// An event to record. `details` is free-form JSON (amounts, order ids, reasons).
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// Who acted: a user id, `system`, or `anonymous`.
    pub actor: String,
    /// What happened, e.g. `login.failed`, `order.placed`.
    pub action: String,
    /// What it happened to, e.g. an order id.
    pub subject: Option<String>,
    /// The request that caused it, for correlating with logs.
    pub request_id: Option<String>,
    /// Structured details.
    pub details: serde_json::Value,
}

/// Longest actor, action or subject stored; longer values are cut (and marked with `…`).
pub const MAX_AUDIT_FIELD: usize = 256;
/// Longest request id stored (the HTTP layer already replaces longer foreign ids).
pub const MAX_AUDIT_REQUEST_ID: usize = 128;
/// Largest `details` JSON stored; a larger one is replaced by `{"truncated": true, "bytes": n}`.
pub const MAX_AUDIT_DETAILS: usize = 4096;

/// The columns of one audit row, every text bounded.
pub(crate) struct AuditColumns {
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
}

impl NewAuditEvent {
    /// The event as stored: every field bounded and free of control characters, so no client
    /// input can grow a row of the append-only trail beyond a few kilobytes.
    pub(crate) fn columns(&self) -> AuditColumns {
        use crate::input::bounded;
        let details = self.details.to_string();
        let details = if details.len() > MAX_AUDIT_DETAILS {
            serde_json::json!({ "truncated": true, "bytes": details.len() }).to_string()
        } else {
            details
        };
        AuditColumns {
            actor: bounded(&self.actor, MAX_AUDIT_FIELD),
            action: bounded(&self.action, MAX_AUDIT_FIELD),
            subject: self.subject.as_deref().map(|s| bounded(s, MAX_AUDIT_FIELD)),
            request_id: self
                .request_id
                .as_deref()
                .map(|s| bounded(s, MAX_AUDIT_REQUEST_ID)),
            details,
        }
    }
}

/// A recorded audit event.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"id": 7, "occurred_at": "2026-01-02T15:04:05.123456Z", "actor": "user:1", "action": "account.deposit", "subject": "account:2", "request_id": "3f8a0c1e-8d2b-4c4e-9a57-2f1d9c0b7e21", "details": {"amount_raw": 1000000000000_i64, "cash_raw": 1000000000000_i64}}))]
pub struct AuditEvent {
    /// Monotonic id; also the pagination cursor.
    pub id: i64,
    /// When it was recorded.
    #[schema(value_type = crate::http::openapi::Timestamp)]
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// What it happened to.
    pub subject: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// Structured details (any JSON object).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

pub(crate) const INSERT: &str = "INSERT INTO audit_events (occurred_at, actor, action, subject, request_id, details) \
                      VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const SELECT: &str = "SELECT id, occurred_at, actor, action, subject, request_id, details FROM audit_events \
                      WHERE id < $1 ORDER BY id DESC LIMIT $2";

/// Appends an audit event inside an open transaction (or on any executor), so a financial change
/// and its audit record commit together. Expands per backend like [`super::with_pool`].
macro_rules! audit_in {
    ($exec:expr, $event:expr) => {{
        let event: &$crate::store::NewAuditEvent = $event;
        let columns = event.columns();
        sqlx::query($crate::store::audit::INSERT)
            .bind(chrono::Utc::now())
            .bind(columns.actor)
            .bind(columns.action)
            .bind(columns.subject)
            .bind(columns.request_id)
            .bind(columns.details)
            .execute($exec)
            .await
    }};
}
pub(crate) use audit_in;

impl Store {
    /// Appends an event and returns its id.
    pub async fn append_audit(&self, event: &NewAuditEvent) -> Result<i64, sqlx::Error> {
        let now = Utc::now();
        let c = event.columns();
        with_pool!(self, super::telemetry::Op::AuditWrite, pool => {
            let row = sqlx::query(INSERT)
                .bind(now)
                .bind(&c.actor)
                .bind(&c.action)
                .bind(&c.subject)
                .bind(&c.request_id)
                .bind(&c.details)
                .fetch_one(pool)
                .await?;
            row.try_get::<i64, _>(0)
        })
    }

    /// Lists events newest first, at most `limit`, strictly older than the `before` id if given.
    pub async fn list_audit(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        let before = before.unwrap_or(i64::MAX);
        with_pool!(self, super::telemetry::Op::AuditRead, pool => {
            let rows = sqlx::query(SELECT).bind(before).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let details: String = row.try_get("details")?;
                    Ok(AuditEvent {
                        id: row.try_get("id")?,
                        occurred_at: row.try_get("occurred_at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        request_id: row.try_get("request_id")?,
                        details: serde_json::from_str(&details).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    })
                })
                .collect()
        })
    }
}
