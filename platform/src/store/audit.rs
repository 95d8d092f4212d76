//! The append-only audit trail: who did what, when, in which request, how risky it was.
//!
//! Each row is scored and tagged when it is built ([`NewAuditEvent::columns`], by the rules of
//! [`crate::audit`]); rows recorded before migration 0060 have no score and no tags (see
//! docs/security.md). Listing filters by kind, actor, score, tag and time, newest first.

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

/// Longest client address stored (an IPv6 address with a zone is shorter).
pub const MAX_AUDIT_IP: usize = 45;

/// The columns of one audit row, every text bounded.
pub(crate) struct AuditColumns {
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    /// 0–100, by [`crate::audit::score`].
    pub risk_score: i16,
    /// `,tag,tag,` (see [`crate::audit::tags_column`]).
    pub tags: String,
    /// The `ip` detail when it is an IP address, normalised.
    pub client_ip: Option<String>,
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
        let context = crate::audit::RiskContext::from_details(
            &self.details,
            crate::audit::runtime::large_order_notional(),
        );
        let client_ip = self
            .details
            .get("ip")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .map(|ip| bounded(&ip.to_string(), MAX_AUDIT_IP));
        AuditColumns {
            risk_score: i16::from(crate::audit::score(&self.action, &context)),
            tags: crate::audit::tags_column(crate::audit::tags_of(&self.action)),
            client_ip,
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

impl AuditColumns {
    /// Counts the row in `audit_high_risk_events_total` once it is written.
    pub(crate) fn written(&self) {
        crate::audit::runtime::observe(&self.action, u8::try_from(self.risk_score).unwrap_or(0));
    }
}

/// A recorded audit event.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"id": 7, "occurred_at": "2026-01-02T15:04:05.123456Z", "actor": "user:1", "action": "account.deposit", "subject": "account:2", "request_id": "3f8a0c1e-8d2b-4c4e-9a57-2f1d9c0b7e21", "details": {"amount_raw": 1000000000000_i64, "cash_raw": 1000000000000_i64}, "risk_score": 80, "tags": ["financial", "admin", "sox"], "client_ip": null}))]
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
    /// Risk score 0–100 (docs/security.md); `null` for events recorded before scoring existed.
    #[schema(minimum = 0, maximum = 100)]
    pub risk_score: Option<u8>,
    /// Compliance tags: `auth`, `financial`, `pii`, `admin`, `sox`, `pci`, `gdpr` (none for events
    /// recorded before tagging existed).
    pub tags: Vec<String>,
    /// The client address of a login event, when known.
    pub client_ip: Option<String>,
}

/// Which events [`Store::list_audit`] returns: every filter is a validated value, bound, never spliced.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this kind (`action`).
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only events scoring at least this.
    pub min_risk: Option<u8>,
    /// Only events with this tag.
    pub tag: Option<crate::audit::Tag>,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only events older than this id (the cursor).
    pub before: Option<i64>,
}

pub(crate) const INSERT: &str = "INSERT INTO audit_events (occurred_at, actor, action, subject, request_id, details, \
                      risk_score, tags, client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
const SELECT: &str = "SELECT id, occurred_at, actor, action, subject, request_id, details, risk_score, tags, client_ip \
                      FROM audit_events WHERE id < $1";

/// The `WHERE` clause of `filter` after `id < $1`, with placeholders from `$2`, and the `LIMIT`
/// placeholder's number. The text is made of constants only; the values are bound in the same
/// order by [`list_audit`](Store::list_audit).
fn filter_sql(filter: &AuditFilter) -> (String, usize) {
    let mut sql = String::from(SELECT);
    let mut n = 1;
    let mut clause = |present: bool, text: &str| {
        if present {
            n += 1;
            sql.push_str(&text.replace('?', &format!("${n}")));
        }
    };
    clause(filter.action.is_some(), " AND action = ?");
    clause(filter.actor.is_some(), " AND actor = ?");
    clause(filter.min_risk.is_some(), " AND risk_score >= ?");
    clause(filter.tag.is_some(), " AND tags LIKE ?");
    clause(filter.from.is_some(), " AND occurred_at >= ?");
    clause(filter.to.is_some(), " AND occurred_at < ?");
    (format!("{sql} ORDER BY id DESC LIMIT ${}", n + 1), n + 1)
}

/// Appends an audit event inside an open transaction (or on any executor), so a financial change
/// and its audit record commit together. Expands per backend like [`super::with_pool`].
macro_rules! audit_in {
    ($exec:expr, $event:expr) => {{
        let event: &$crate::store::NewAuditEvent = $event;
        let columns = event.columns();
        let done = sqlx::query($crate::store::audit::INSERT)
            .bind(chrono::Utc::now())
            .bind(&columns.actor)
            .bind(&columns.action)
            .bind(&columns.subject)
            .bind(&columns.request_id)
            .bind(&columns.details)
            .bind(columns.risk_score)
            .bind(&columns.tags)
            .bind(&columns.client_ip)
            .execute($exec)
            .await;
        if done.is_ok() {
            columns.written();
        }
        done
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
                .bind(c.risk_score)
                .bind(&c.tags)
                .bind(&c.client_ip)
                .fetch_one(pool)
                .await?;
            c.written();
            row.try_get::<i64, _>(0)
        })
    }

    /// Whether `actor` logged in before from `ip`, and whether from any recorded address: one
    /// statement of two index probes (`audit_events_login_ip`).
    pub async fn login_ip_seen(&self, actor: &str, ip: &str) -> Result<(bool, bool), sqlx::Error> {
        with_pool!(self, super::telemetry::Op::AuditRead, pool => {
            let row = sqlx::query(
                "SELECT EXISTS (SELECT 1 FROM audit_events WHERE actor = $1 AND action = 'login' AND client_ip = $2), \
                 EXISTS (SELECT 1 FROM audit_events WHERE actor = $1 AND action = 'login' AND client_ip IS NOT NULL)",
            )
            .bind(actor)
            .bind(ip)
            .fetch_one(pool)
            .await?;
            Ok((row.try_get::<bool, _>(0)?, row.try_get::<bool, _>(1)?))
        })
    }

    /// Lists events newest first, at most `limit`, strictly older than the `before` id if given.
    pub async fn list_audit(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        self.list_audit_filtered(
            limit,
            &AuditFilter {
                before,
                ..AuditFilter::default()
            },
        )
        .await
    }

    /// Lists events matching `filter` newest first, at most `limit`.
    pub async fn list_audit_filtered(
        &self,
        limit: u32,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        let (sql, _) = filter_sql(filter);
        let tag = filter.tag.map(|t| format!("%,{t},%"));
        with_pool!(self, super::telemetry::Op::AuditRead, pool => {
            let mut q = sqlx::query(&sql).bind(filter.before.unwrap_or(i64::MAX));
            if let Some(v) = &filter.action { q = q.bind(v); }
            if let Some(v) = &filter.actor { q = q.bind(v); }
            if let Some(v) = filter.min_risk { q = q.bind(i16::from(v)); }
            if let Some(v) = &tag { q = q.bind(v); }
            if let Some(v) = filter.from { q = q.bind(v); }
            if let Some(v) = filter.to { q = q.bind(v); }
            let rows = q.bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let details: String = row.try_get("details")?;
                    let score: Option<i16> = row.try_get("risk_score")?;
                    let tags: Option<String> = row.try_get("tags")?;
                    Ok(AuditEvent {
                        id: row.try_get("id")?,
                        occurred_at: row.try_get("occurred_at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        request_id: row.try_get("request_id")?,
                        details: serde_json::from_str(&details).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                        risk_score: score.and_then(|s| u8::try_from(s).ok()),
                        tags: tags
                            .map(|t| crate::audit::parse_tags_column(&t).iter().map(|t| t.as_str().to_owned()).collect())
                            .unwrap_or_default(),
                        client_ip: row.try_get("client_ip")?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_add_numbered_placeholders_in_bind_order() {
        let (sql, limit) = filter_sql(&AuditFilter::default());
        assert!(
            sql.ends_with("WHERE id < $1 ORDER BY id DESC LIMIT $2"),
            "{sql}"
        );
        assert_eq!(limit, 2);
        let all = AuditFilter {
            action: Some("login".into()),
            actor: Some("user:1".into()),
            min_risk: Some(70),
            tag: Some(crate::audit::Tag::Pii),
            from: Some(Utc::now()),
            to: Some(Utc::now()),
            before: Some(5),
        };
        let (sql, limit) = filter_sql(&all);
        assert!(
            sql.ends_with(
                "id < $1 AND action = $2 AND actor = $3 AND risk_score >= $4 AND tags LIKE $5 \
                           AND occurred_at >= $6 AND occurred_at < $7 ORDER BY id DESC LIMIT $8"
            ),
            "{sql}"
        );
        assert_eq!(limit, 8);
    }

    #[test]
    fn rows_are_scored_tagged_and_keep_a_valid_ip_only() {
        let event = |action: &str, details: serde_json::Value| NewAuditEvent {
            actor: "user:1".into(),
            action: action.into(),
            subject: None,
            request_id: None,
            details,
        };
        let c = event(
            "login.failed",
            serde_json::json!({"failed_logins": 5, "ip": "10.0.0.1"}),
        )
        .columns();
        assert_eq!(
            (c.risk_score, c.tags.as_str(), c.client_ip.as_deref()),
            (75, ",auth,pii,gdpr,", Some("10.0.0.1"))
        );
        let c = event("login", serde_json::json!({"ip": "not an ip; DROP TABLE"})).columns();
        assert_eq!(c.client_ip, None);
        let c = event("login", serde_json::json!({"ip": "::FFFF:10.0.0.1"})).columns();
        assert_eq!(c.client_ip.as_deref(), Some("::ffff:10.0.0.1"));
    }
}
