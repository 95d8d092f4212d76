//! Risk scores and compliance tags of audit events: the one table of every event kind.
//!
//! Pure domain code (no SQL, no HTTP), so the rules are unit-tested on their own and the store,
//! the HTTP API and the docs all read the same [`KINDS`] table. `docs/security.md` ("Audit
//! risk scores and tags") shows the table; a test keeps the two equal.
//!
//! A score is `base + modifiers`, capped at 100, computed when the event is recorded. The
//! modifiers read a [`RiskContext`] that is taken from the event's own `details` (documented
//! keys: `failed_logins`, `new_ip`, `notional`, `price` + `qty`, `amount_raw`, `qty` + `cost`),
//! not from a separate argument, for two reasons: every input of a score is stored in the record
//! it scored, so a reviewer can see (and recompute) why an event scored 80; and
//! [`crate::store::NewAuditEvent`] keeps its shape, so code that records events (and other
//! branches adding some) needs no change to be scored by kind. An event kind missing from the
//! table scores [`UNKNOWN_BASE`] with no tags, so a forgotten kind stands out rather than
//! hiding at 0.
//!
//! Tags are stored as `,tag,tag,` text (see [`tags_column`]), which both backends filter with
//! `LIKE '%,tag,%'` on a value from the fixed [`Tag`] vocabulary only.

pub mod runtime;

use std::fmt;
use std::str::FromStr;

use tradeplane_engine::num::{Cash, Price, Qty, notional};

/// Scores at or above this are high risk: counted in `audit_high_risk_events_total` and alerted
/// on (`TradeplaneHighRiskAuditEvents`).
pub const HIGH_RISK: u8 = 70;
/// The highest score.
pub const MAX_SCORE: u8 = 100;
/// The score of a kind missing from [`KINDS`].
pub const UNKNOWN_BASE: u8 = 30;
/// Added per failed login before this one (`failed_logins` − 1) to a failed login or MFA code.
pub const FAILED_LOGIN_STEP: u8 = 15;
/// Added to a login from an address this user never logged in from (but who logged in before).
pub const NEW_IP_BUMP: u8 = 40;
/// Added to an order, approval or deposit whose value reaches `AUDIT_LARGE_ORDER_NOTIONAL`.
pub const LARGE_BUMP: u8 = 50;

/// The compliance vocabulary: fixed, so a filter value can be checked before it reaches SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tag {
    /// Authentication and access control.
    Auth,
    /// Money or positions move, or could.
    Financial,
    /// The record holds personal data (a username, an IP address).
    Pii,
    /// An operator's or the system's privileged action.
    Admin,
    /// Evidence for SOX controls over financial reporting (changes to trading, access to it).
    Sox,
    /// PCI DSS evidence: multi-factor authentication and key management.
    Pci,
    /// Processing of personal data under the GDPR (account creation, logins with addresses).
    Gdpr,
}

impl Tag {
    /// Every tag, in the order of the docs.
    pub const ALL: [Tag; 7] = [
        Tag::Auth,
        Tag::Financial,
        Tag::Pii,
        Tag::Admin,
        Tag::Sox,
        Tag::Pci,
        Tag::Gdpr,
    ];

    /// The tag as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Auth => "auth",
            Tag::Financial => "financial",
            Tag::Pii => "pii",
            Tag::Admin => "admin",
            Tag::Sox => "sox",
            Tag::Pci => "pci",
            Tag::Gdpr => "gdpr",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTag;

impl FromStr for Tag {
    type Err = UnknownTag;
    fn from_str(s: &str) -> Result<Tag, UnknownTag> {
        Tag::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnknownTag)
    }
}

/// What can raise a kind's score above its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// `+15` per failed login of the username before this one in the lockout window (the
    /// `failed_logins` detail counts this one too).
    FailedLoginsInARow,
    /// `+40` when the login comes from an address the user has not logged in from before.
    NewIp,
    /// `+50` when the value reaches `AUDIT_LARGE_ORDER_NOTIONAL`.
    Large,
}

impl Modifier {
    /// The name the docs table uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::FailedLoginsInARow => "failed_logins",
            Modifier::NewIp => "new_ip",
            Modifier::Large => "large",
        }
    }
}

/// One event kind's rule: its base score, what raises it, and its tags.
#[derive(Debug, Clone, Copy)]
pub struct KindRule {
    /// The event's `action`.
    pub kind: &'static str,
    /// Its score without modifiers.
    pub base: u8,
    /// What may add to it.
    pub modifiers: &'static [Modifier],
    /// Its compliance tags.
    pub tags: &'static [Tag],
}

use Modifier::{FailedLoginsInARow, Large, NewIp};
use Tag::{Admin, Auth, Financial, Gdpr, Pci, Pii, Sox};

const fn rule(
    kind: &'static str,
    base: u8,
    modifiers: &'static [Modifier],
    tags: &'static [Tag],
) -> KindRule {
    KindRule {
        kind,
        base,
        modifiers,
        tags,
    }
}

/// Every event kind the platform records, with its rule. The one place kinds are scored and
/// tagged (docs/security.md shows it; a test checks they agree).
pub const KINDS: &[KindRule] = &[
    rule("user.registered", 5, &[], &[Auth, Pii, Gdpr]),
    rule("login", 5, &[NewIp], &[Auth, Pii, Gdpr]),
    rule(
        "login.failed",
        15,
        &[FailedLoginsInARow],
        &[Auth, Pii, Gdpr],
    ),
    rule("login.locked", 80, &[], &[Auth, Pii, Gdpr]),
    rule("mfa_enrolled", 20, &[], &[Auth, Pci]),
    rule("mfa_confirmed", 10, &[], &[Auth, Pci]),
    rule("mfa_failed", 20, &[FailedLoginsInARow], &[Auth, Pci]),
    rule("mfa_recovery_code_used", 50, &[], &[Auth, Pci]),
    rule("mfa_disabled", 70, &[], &[Auth, Pci, Sox]),
    rule("mfa.key_rotated", 40, &[], &[Auth, Admin, Pci]),
    rule("demo.login_disabled", 10, &[], &[Auth, Admin]),
    rule("account.deposit", 30, &[Large], &[Financial, Admin, Sox]),
    rule("order.placed", 20, &[Large], &[Financial, Sox]),
    rule("order.rejected", 10, &[], &[Financial]),
    rule("order.cancelled", 5, &[], &[Financial, Sox]),
    rule("order.approval_requested", 20, &[Large], &[Financial, Sox]),
    rule("order.approved", 30, &[Large], &[Financial, Admin, Sox]),
    rule("order.approval_rejected", 30, &[], &[Financial, Admin, Sox]),
    rule("order.approval_expired", 20, &[], &[Financial, Sox]),
    rule("order.approval_cancelled", 10, &[], &[Financial, Sox]),
    rule("market.halted", 80, &[], &[Financial, Admin, Sox]),
    rule("market.resumed", 50, &[], &[Financial, Admin, Sox]),
];

/// The rule of `kind`, if the table has one.
pub fn rule_of(kind: &str) -> Option<&'static KindRule> {
    KINDS.iter().find(|r| r.kind == kind)
}

/// The tags of `kind` (none for a kind missing from the table).
pub fn tags_of(kind: &str) -> &'static [Tag] {
    rule_of(kind).map_or(&[], |r| r.tags)
}

/// What the recorder knew when the event happened, read from its details by
/// [`RiskContext::from_details`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RiskContext {
    /// Failed logins of the username in the lockout window (`failed_logins`).
    pub failed_logins: u32,
    /// The login's address is new for this user (`new_ip`).
    pub new_ip: bool,
    /// The value reaches the large-order threshold.
    pub large: bool,
}

impl RiskContext {
    /// The context stated by an event's `details`; `large_threshold` is
    /// `AUDIT_LARGE_ORDER_NOTIONAL` (a raw cash amount). The value is `notional` (a decimal
    /// string), else `price` × `qty`, else `amount_raw` (a cash deposit), else `cost` × `qty`
    /// (an asset deposit). Anything missing or unreadable counts as absent, never as risky.
    pub fn from_details(details: &serde_json::Value, large_threshold: Cash) -> RiskContext {
        let failed_logins = details
            .get("failed_logins")
            .and_then(serde_json::Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let new_ip = details
            .get("new_ip")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let large = value_of(details).is_some_and(|v| v >= large_threshold);
        RiskContext {
            failed_logins,
            new_ip,
            large,
        }
    }
}

/// The cash value an event's details state, if any (see [`RiskContext::from_details`]).
fn value_of(details: &serde_json::Value) -> Option<Cash> {
    fn decimal<T: serde::de::DeserializeOwned>(d: &serde_json::Value, key: &str) -> Option<T> {
        d.get(key)
            .filter(|v| v.is_string())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
    if let Some(n) = decimal::<Cash>(details, "notional") {
        return Some(n);
    }
    let qty = decimal::<Qty>(details, "qty");
    if let (Some(price), Some(qty)) = (decimal::<Price>(details, "price"), qty) {
        return Some(notional(price, qty));
    }
    if let Some(raw) = details
        .get("amount_raw")
        .and_then(serde_json::Value::as_i64)
    {
        return Some(Cash::from_raw(i128::from(raw)));
    }
    match (decimal::<Price>(details, "cost"), qty) {
        (Some(cost), Some(qty)) => Some(notional(cost, qty)),
        _ => None,
    }
}

/// The risk score of an event of `kind` in `context`: the kind's base plus the modifiers it
/// allows, at most [`MAX_SCORE`].
pub fn score(kind: &str, context: &RiskContext) -> u8 {
    let Some(rule) = rule_of(kind) else {
        return UNKNOWN_BASE;
    };
    let mut total = u32::from(rule.base);
    for modifier in rule.modifiers {
        total += match modifier {
            FailedLoginsInARow => {
                u32::from(FAILED_LOGIN_STEP) * context.failed_logins.saturating_sub(1).min(10)
            }
            NewIp if context.new_ip => u32::from(NEW_IP_BUMP),
            Large if context.large => u32::from(LARGE_BUMP),
            NewIp | Large => 0,
        };
    }
    u8::try_from(total.min(u32::from(MAX_SCORE))).unwrap_or(MAX_SCORE)
}

/// Tags as stored: `,auth,pii,` (`,` for none), so `LIKE '%,pii,%'` finds one exactly.
pub fn tags_column(tags: &[Tag]) -> String {
    let mut out = String::from(",");
    for t in tags {
        out.push_str(t.as_str());
        out.push(',');
    }
    out
}

/// The tags of a stored column, in the stored order (the table's); unknown words and repeats
/// are dropped.
pub fn parse_tags_column(column: &str) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    for tag in column.split(',').filter_map(|w| w.parse::<Tag>().ok()) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

#[cfg(test)]
mod tests;
