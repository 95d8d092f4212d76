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

/// A recorded audit event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Monotonic id; also the pagination cursor.
    pub id: i64,
    /// When it was recorded.
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// What it happened to.
    pub subject: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// Structured details.
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
        sqlx::query($crate::store::audit::INSERT)
            .bind(chrono::Utc::now())
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.subject)
            .bind(&event.request_id)
            .bind(event.details.to_string())
            .execute($exec)
            .await
    }};
}
pub(crate) use audit_in;

impl Store {
    /// Appends an event and returns its id.
    pub async fn append_audit(&self, event: &NewAuditEvent) -> Result<i64, sqlx::Error> {
        let now = Utc::now();
        let details = event.details.to_string();
        with_pool!(self, pool => {
            let row = sqlx::query(INSERT)
                .bind(now)
                .bind(&event.actor)
                .bind(&event.action)
                .bind(&event.subject)
                .bind(&event.request_id)
                .bind(&details)
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
        with_pool!(self, pool => {
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
