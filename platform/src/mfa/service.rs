//! The MFA flows: enrolment, confirmation, the login challenge and its completion, disabling,
//! and whether an admin must enrol first (`REQUIRE_ADMIN_MFA`). HTTP handlers
//! (`crate::http::mfa`) only parse and shape; the rules are here and in [`super`], the SQL in
//! [`crate::store::mfa`].
//!
//! Every wrong code (at confirmation, login or disabling) counts toward the failed-login cap of
//! the user (`FAILED_LOGIN_LIMIT_PER_HOUR`, the limiter's `failed_login` kind), is audited as
//! `mfa_failed`, and while the cap is used up no code is even checked (429 `login_locked`).

use std::sync::Arc;

use axum::http::StatusCode;
use prometheus::{IntCounterVec, Opts, Registry};

use super::MfaKeyring;
use crate::auth::{self, Claims, Role};
use crate::error::ApiError;
use crate::input;
use crate::resilience::{self, ratelimit::LimitKind};
use crate::state::AppState;
use crate::store::{NewAuditEvent, UserRecord, mfa::MfaRecord};

/// Outcomes counted in `auth_mfa_total{outcome}`.
const OUTCOMES: [&str; 9] = [
    "enrolled",
    "confirmed",
    "challenged",
    "verified_totp",
    "verified_recovery_code",
    "failed",
    "replayed",
    "disabled",
    "enrolment_required",
];

/// The MFA configuration and metrics; one per process.
#[derive(Debug, Clone)]
pub struct Mfa {
    keys: Option<Arc<MfaKeyring>>,
    require_admin: bool,
    outcomes: IntCounterVec,
}

impl Mfa {
    /// From `MFA_ENCRYPTION_KEY`(`_OLD`) and `REQUIRE_ADMIN_MFA`; registers `auth_mfa_total`.
    pub fn new(
        keys: Option<Arc<MfaKeyring>>,
        require_admin: bool,
        registry: &Registry,
    ) -> Result<Mfa, prometheus::Error> {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "auth_mfa_total",
                "MFA events by outcome (enrolled, confirmed, challenged, verified_totp, verified_recovery_code, failed, replayed, disabled, enrolment_required).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        for o in OUTCOMES {
            outcomes.with_label_values(&[o]);
        }
        Ok(Mfa {
            keys,
            require_admin,
            outcomes,
        })
    }

    /// The keyring, or 503 `mfa_unavailable` when `MFA_ENCRYPTION_KEY` is not set.
    pub fn keys(&self) -> Result<&MfaKeyring, ApiError> {
        self.keys.as_deref().ok_or_else(|| ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "mfa_unavailable",
            message:
                "MFA is not available: the server has no MFA_ENCRYPTION_KEY (see docs/security.md)"
                    .into(),
        })
    }

    fn count(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }
}

/// What a correct password leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Tokens; `enrol_only` when they only allow enrolling in MFA (`REQUIRE_ADMIN_MFA`).
    Tokens {
        /// The tokens are restricted to enrolment.
        enrol_only: bool,
    },
    /// The user has MFA: a code must complete the login with this challenge.
    Challenge {
        /// The single-use challenge (only its hash is stored).
        challenge: String,
        /// Seconds it stays valid.
        expires_in: i64,
    },
}

/// A user's MFA state as `GET /me` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaStatus {
    /// MFA is on.
    pub enabled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// `REQUIRE_ADMIN_MFA` applies and the user has not enrolled: only enrolment is allowed.
    pub enrolment_required: bool,
}

/// A new enrolment, shown once.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The secret in base32, for typing into an app.
    pub secret: String,
    /// The `otpauth://` URI (the QR code's text).
    pub otpauth_uri: String,
}

fn status_error(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::Status {
        status,
        code,
        message: message.to_owned(),
    }
}

async fn user(state: &AppState, claims: &Claims) -> Result<UserRecord, ApiError> {
    state
        .store
        .user_by_id(claims.uid)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the user no longer exists".into()))
}

/// Starts an enrolment: a new secret, sealed and stored, not active until confirmed. Calling
/// it again before confirming replaces the secret; 409 `mfa_already_enabled` once MFA is on.
pub async fn enroll(
    state: &AppState,
    claims: &Claims,
    request_id: Option<&str>,
) -> Result<Enrollment, ApiError> {
    let keys = state.mfa.keys()?;
    let user = user(state, claims).await?;
    let secret = super::new_secret();
    let (key_id, sealed) = keys
        .seal(user.id, &secret)
        .map_err(|e| ApiError::Internal(e.into()))?;
    if !state
        .store
        .mfa_enroll(user.id, &key_id, &sealed, request_id)
        .await?
    {
        return Err(already_enabled());
    }
    state.mfa.count("enrolled");
    Ok(Enrollment {
        secret: super::secret_base32(&secret),
        otpauth_uri: super::otpauth_uri(&secret, &user.username, user.id)?,
    })
}

fn already_enabled() -> ApiError {
    status_error(
        StatusCode::CONFLICT,
        "mfa_already_enabled",
        "MFA is already enabled; disable it first to enrol a new device",
    )
}

/// Confirms a pending enrolment with a current code: MFA is on from now, and the ten recovery
/// codes returned here are shown this once (only their hashes are stored).
pub async fn confirm(
    state: &AppState,
    claims: &Claims,
    code: &str,
    request_id: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let keys = state.mfa.keys()?;
    let user = user(state, claims).await?;
    let record = match state.store.mfa_record(user.id).await? {
        Some(r) if r.enabled => return Err(already_enabled()),
        Some(r) => r,
        None => {
            return Err(status_error(
                StatusCode::CONFLICT,
                "mfa_not_enrolled",
                "no pending MFA enrolment: POST /auth/mfa/enroll first",
            ));
        }
    };
    ensure_unlocked(state, &user).await?;
    let secret = open(keys, &record)?;
    let now = state.clock.now().timestamp();
    let Some(step) = super::check_code(&secret, code, now) else {
        return Err(failed(
            state,
            &user,
            "confirm",
            "wrong_code",
            request_id,
            invalid_code(),
        )
        .await);
    };
    let codes = super::new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .filter_map(|c| super::normalize_recovery_code(c))
        .map(|c| super::recovery_code_hash(user.id, &c))
        .collect();
    if !state
        .store
        .mfa_confirm(user.id, step, &hashes, request_id)
        .await?
    {
        return Err(already_enabled());
    }
    state.mfa.count("confirmed");
    Ok(codes)
}

/// After a correct password: a challenge for an MFA user (503 `mfa_unavailable` without the
/// key, so such users fail closed), else tokens, restricted to enrolment for an admin who
/// must enrol (`REQUIRE_ADMIN_MFA`).
pub async fn after_password(state: &AppState, user: &UserRecord) -> Result<LoginStep, ApiError> {
    let record = state.store.mfa_record(user.id).await?;
    if record.as_ref().is_some_and(|r| r.enabled) {
        state.mfa.keys()?;
        let challenge = auth::new_refresh_token();
        let expires = state.clock.now() + chrono::Duration::seconds(super::CHALLENGE_TTL_SECONDS);
        state
            .store
            .insert_mfa_challenge(user.id, &auth::refresh_token_hash(&challenge), expires)
            .await?;
        state.mfa.count("challenged");
        return Ok(LoginStep::Challenge {
            challenge,
            expires_in: super::CHALLENGE_TTL_SECONDS,
        });
    }
    let enrol_only = must_enrol(state, user.role, false);
    if enrol_only {
        state.mfa.count("enrolment_required");
    }
    Ok(LoginStep::Tokens { enrol_only })
}

fn must_enrol(state: &AppState, role: Role, enabled: bool) -> bool {
    state.mfa.require_admin && role == Role::Admin && !enabled
}

/// Whether tokens issued now for `user` (a login or a refresh) are restricted to enrolment.
pub async fn enrol_only(state: &AppState, user: &UserRecord) -> Result<bool, ApiError> {
    if !must_enrol(state, user.role, false) {
        return Ok(false);
    }
    let enabled = state
        .store
        .mfa_record(user.id)
        .await?
        .is_some_and(|r| r.enabled);
    Ok(must_enrol(state, user.role, enabled))
}

/// Which factor completed a login or authorised a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A TOTP code.
    Totp,
    /// A recovery code (now spent).
    RecoveryCode,
}

/// Completes a login: the challenge and a TOTP or recovery code. Returns the user, whose
/// tokens the caller issues. 401 `mfa_challenge_invalid` for an unknown, expired, spent or
/// exhausted challenge; 401 `mfa_code_invalid` for a wrong or replayed code.
pub async fn verify(
    state: &AppState,
    challenge: &str,
    code: &str,
    request_id: Option<&str>,
    ip: Option<std::net::IpAddr>,
) -> Result<(UserRecord, Factor), ApiError> {
    let keys = state.mfa.keys()?;
    let now = state.clock.now();
    let invalid_challenge = || {
        status_error(
            StatusCode::UNAUTHORIZED,
            "mfa_challenge_invalid",
            "the login challenge is unknown, expired or used up; log in with the password again",
        )
    };
    let Some(row) = state
        .store
        .mfa_challenge(
            &auth::refresh_token_hash(challenge),
            now,
            super::CHALLENGE_MAX_ATTEMPTS,
        )
        .await?
    else {
        return Err(invalid_challenge());
    };
    let user = state
        .store
        .user_by_id(row.user_id)
        .await?
        .ok_or_else(invalid_challenge)?;
    ensure_unlocked(state, &user).await?;
    let record = state
        .store
        .mfa_record(user.id)
        .await?
        .filter(|r| r.enabled)
        .ok_or_else(invalid_challenge)?;
    let wrong = || {
        status_error(
            StatusCode::UNAUTHORIZED,
            "mfa_code_invalid",
            "wrong, expired or already used code",
        )
    };
    let factor = match check_factor(state, keys, &record, code, now.timestamp()).await? {
        Ok(f) => f,
        Err(reason) => {
            state.store.mfa_challenge_failed(row.id).await?;
            return Err(failed(state, &user, "login", reason, request_id, wrong()).await);
        }
    };
    if !state.store.consume_mfa_challenge(row.id).await? {
        return Err(invalid_challenge());
    }
    state.mfa.count(match factor {
        Factor::Totp => "verified_totp",
        Factor::RecoveryCode => "verified_recovery_code",
    });
    if factor == Factor::RecoveryCode {
        recovery_code_used(state, &user, "login", request_id).await?;
    }
    state
        .store
        .append_audit(&NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "login".into(),
            subject: None,
            request_id: request_id.map(str::to_owned),
            details: crate::http::auth::login_details(
                state,
                &user,
                ip,
                serde_json::json!({ "mfa": factor_name(factor) }),
            )
            .await?,
        })
        .await?;
    Ok((user, factor))
}

fn factor_name(f: Factor) -> &'static str {
    match f {
        Factor::Totp => "totp",
        Factor::RecoveryCode => "recovery_code",
    }
}

async fn recovery_code_used(
    state: &AppState,
    user: &UserRecord,
    during: &str,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    let left = state.store.mfa_recovery_codes_left(user.id).await?;
    state
        .store
        .append_audit(&NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "mfa_recovery_code_used".into(),
            subject: Some(format!("user:{}", user.id)),
            request_id: request_id.map(str::to_owned),
            details: serde_json::json!({ "during": during, "recovery_codes_left": left }),
        })
        .await?;
    Ok(())
}

/// Turns MFA off; needs a current TOTP code or a recovery code. An admin cannot while
/// `REQUIRE_ADMIN_MFA` is on (409 `admin_mfa_required`).
pub async fn disable(
    state: &AppState,
    claims: &Claims,
    code: &str,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    let keys = state.mfa.keys()?;
    let user = user(state, claims).await?;
    let Some(record) = state.store.mfa_record(user.id).await?.filter(|r| r.enabled) else {
        return Err(status_error(
            StatusCode::CONFLICT,
            "mfa_not_enabled",
            "MFA is not enabled",
        ));
    };
    if state.mfa.require_admin && user.role == Role::Admin {
        return Err(status_error(
            StatusCode::CONFLICT,
            "admin_mfa_required",
            "admins must keep MFA while REQUIRE_ADMIN_MFA is on",
        ));
    }
    ensure_unlocked(state, &user).await?;
    let now = state.clock.now().timestamp();
    let factor = match check_factor(state, keys, &record, code, now).await? {
        Ok(f) => f,
        Err(reason) => {
            return Err(failed(state, &user, "disable", reason, request_id, invalid_code()).await);
        }
    };
    if factor == Factor::RecoveryCode {
        recovery_code_used(state, &user, "disable", request_id).await?;
    }
    state
        .store
        .mfa_disable(
            user.id,
            request_id,
            serde_json::json!({ "factor": factor_name(factor) }),
        )
        .await?;
    state.mfa.count("disabled");
    Ok(())
}

/// The user's MFA state.
pub async fn status(state: &AppState, claims: &Claims) -> Result<MfaStatus, ApiError> {
    let enabled = state
        .store
        .mfa_record(claims.uid)
        .await?
        .is_some_and(|r| r.enabled);
    let recovery_codes_left = if enabled {
        state.store.mfa_recovery_codes_left(claims.uid).await?
    } else {
        0
    };
    Ok(MfaStatus {
        enabled,
        recovery_codes_left,
        enrolment_required: must_enrol(state, claims.role, enabled),
    })
}

fn invalid_code() -> ApiError {
    ApiError::Unprocessable {
        code: "mfa_code_invalid",
        message: "wrong, expired or already used code".into(),
    }
}

fn open(keys: &MfaKeyring, record: &MfaRecord) -> Result<Vec<u8>, ApiError> {
    keys.open(record.user_id, &record.key_id, &record.secret_ciphertext)
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Checks a TOTP code (spending its step) or a recovery code (spending it). `Ok(Err(reason))`
/// for a wrong one: `wrong_code` or `replayed`.
async fn check_factor(
    state: &AppState,
    keys: &MfaKeyring,
    record: &MfaRecord,
    code: &str,
    now: i64,
) -> Result<Result<Factor, &'static str>, ApiError> {
    if super::is_totp_code(code) {
        let secret = open(keys, record)?;
        let Some(step) = super::check_code(&secret, code, now) else {
            return Ok(Err("wrong_code"));
        };
        if !state.store.mfa_use_step(record.user_id, step).await? {
            state.mfa.count("replayed");
            return Ok(Err("replayed"));
        }
        return Ok(Ok(Factor::Totp));
    }
    let Some(normalized) = super::normalize_recovery_code(code) else {
        return Ok(Err("wrong_code"));
    };
    let hash = super::recovery_code_hash(record.user_id, &normalized);
    Ok(
        if state
            .store
            .mfa_use_recovery_code(record.user_id, &hash)
            .await?
        {
            Ok(Factor::RecoveryCode)
        } else {
            Err("wrong_code")
        },
    )
}

/// 429 `login_locked` while the user's failed-login cap is used up.
async fn ensure_unlocked(state: &AppState, user: &UserRecord) -> Result<(), ApiError> {
    let lock = state
        .resilience
        .limiter
        .peek(LimitKind::FailedLogin, &input::username_key(&user.username))
        .await;
    if lock.allowed {
        Ok(())
    } else {
        Err(resilience::limit_error(&lock))
    }
}

/// Records a wrong code: counted toward the failed-login cap, audited as `mfa_failed`. Returns
/// `error`, or `login_locked` when this failure used the cap up.
async fn failed(
    state: &AppState,
    user: &UserRecord,
    stage: &str,
    reason: &str,
    request_id: Option<&str>,
    error: ApiError,
) -> ApiError {
    state.mfa.count("failed");
    let failures = state
        .resilience
        .limiter
        .check(LimitKind::FailedLogin, &input::username_key(&user.username))
        .await;
    let audit = state
        .store
        .append_audit(&NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "mfa_failed".into(),
            subject: Some(format!("user:{}", user.id)),
            request_id: request_id.map(str::to_owned),
            details: serde_json::json!({
                "stage": stage,
                "reason": reason,
                "locked": !failures.allowed || failures.remaining == 0,
                "failed_logins": failures.quota.burst.saturating_sub(failures.remaining),
            }),
        })
        .await;
    if let Err(e) = audit {
        return e.into();
    }
    if failures.allowed {
        error
    } else {
        resilience::limit_error(&failures)
    }
}
