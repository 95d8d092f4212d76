//! TOTP MFA end to end through the HTTP API, on SQLite and PostgreSQL: enrolment,
//! confirmation, login with and without a code, replays, recovery codes, disabling, the
//! failed-login lockout, `REQUIRE_ADMIN_MFA`, encryption at rest and key rotation.

#[macro_use]
mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::mfa::MfaKeyring;
use tradeplane_platform::state::AppState;
use tradeplane_platform::store::Store;

use common::send;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const NEW_KEY: &str = "HxcdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const ADMIN: (&str, &str) = ("root", "root-password-long");
const ENV: &[(&str, &str)] = &[
    ("MFA_ENCRYPTION_KEY", KEY),
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
];

state_on_both_backends!(super::ENV;
    enrol_login_replay_recovery_and_disable,
    secrets_are_encrypted_at_rest_and_keys_rotate,
);

/// `FAILED_LOGIN_LIMIT_PER_HOUR=4`: wrong codes use up the same cap as wrong passwords.
mod lockout {
    use super::*;

    const ENV: &[(&str, &str)] = &[
        ("MFA_ENCRYPTION_KEY", KEY),
        ("FAILED_LOGIN_LIMIT_PER_HOUR", "4"),
        ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
    ];

    state_on_both_backends!(super::ENV; wrong_codes_count_toward_the_lockout);
}

/// An authenticator app: the code of the base32 `secret` at Unix time `t` (computed with
/// `totp-rs` directly, not through the platform's wrapper).
fn code(secret: &str, t: i64) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    totp_rs::Builder::new()
        .with_secret(bytes.to_vec())
        .build()
        .expect("totp")
        .generate(t as u64)
        .to_string()
}

/// A code that is not `right`.
fn wrong(right: &str) -> String {
    let last = right.as_bytes()[5];
    let flipped = if last == b'9' {
        '0'
    } else {
        char::from(last + 1)
    };
    format!("{}{flipped}", &right[..5])
}

fn now(state: &AppState) -> i64 {
    state.clock.now().timestamp()
}

async fn register(state: &AppState, name: &str) -> String {
    common::register_and_login(state, name).await
}

async fn password_login(state: &AppState, name: &str, password: &str) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": name, "password": password})),
    )
    .await
}

async fn challenge(state: &AppState, name: &str) -> String {
    challenge_with(state, name, "password-123").await
}

async fn challenge_with(state: &AppState, name: &str, password: &str) -> String {
    let (status, body) = password_login(state, name, password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no tokens before the code: {body}"
    );
    body["challenge"].as_str().expect("challenge").to_owned()
}

async fn verify(state: &AppState, challenge: &str, code: &str) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/api/v1/auth/mfa/verify",
        None,
        Some(json!({"challenge": challenge, "code": code})),
    )
    .await
}

/// Enrols and confirms `token`'s user at the current step: (secret, recovery codes).
async fn enrol(state: &AppState, token: &str) -> (String, Vec<String>) {
    let (status, e) = send(state, "POST", "/api/v1/auth/mfa/enroll", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    let secret = e["secret"].as_str().expect("secret").to_owned();
    let uri = e["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/Tradeplane:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let (status, c) = send(
        state,
        "POST",
        "/api/v1/auth/mfa/confirm",
        Some(token),
        Some(json!({"code": code(&secret, now(state))})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let codes = c["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    (secret, codes)
}

async fn actions(state: &AppState) -> Vec<String> {
    state
        .store
        .list_audit(500, None)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn enrol_login_replay_recovery_and_disable(state: AppState) {
    let token = register(&state, "alice").await;
    let (status, me) = send(&state, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["mfa_enabled"], false);

    // Enrolled but not confirmed: not active; a wrong code does not confirm.
    let (status, e) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/enroll",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["confirmed"], false);
    let secret = e["secret"].as_str().expect("secret").to_owned();
    let tokens = common::login(&state, "alice", "password-123").await;
    assert!(
        tokens["access_token"].is_string(),
        "MFA is off until confirmed"
    );
    let right = code(&secret, now(&state));
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/confirm",
        Some(&token),
        Some(json!({"code": wrong(&right)})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("mfa_code_invalid")),
        "{err}"
    );
    let (status, c) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/confirm",
        Some(&token),
        Some(json!({"code": right})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let recovery: Vec<String> = c["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let (status, again) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/enroll",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("mfa_already_enabled"))
    );
    let (_, me) = send(&state, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(
        (
            me["mfa_enabled"].as_bool(),
            me["mfa"]["recovery_codes_left"].as_i64()
        ),
        (Some(true), Some(10)),
        "{me}"
    );

    // Login now needs a code: wrong refused, the confirmation's code is spent, the next step's
    // code works once, the challenge works once.
    let ch = challenge(&state, "alice").await;
    let t = now(&state);
    let (status, err) = verify(&state, &ch, &wrong(&code(&secret, t + 30))).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_code_invalid")),
        "{err}"
    );
    let (status, err) = verify(&state, &ch, &right).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_code_invalid")),
        "the confirmation's code is spent: {err}"
    );
    let next = code(&secret, t + 30);
    let (status, tokens) = verify(&state, &ch, &next).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access");
    let (status, me) = send(&state, "GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(
        (status, me["mfa_enabled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, err) = verify(&state, &ch, &code(&secret, t + 60)).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_challenge_invalid")),
        "single use: {err}"
    );
    let ch = challenge(&state, "alice").await;
    let (status, err) = verify(&state, &ch, &next).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_code_invalid")),
        "replayed: {err}"
    );

    // Two steps later (the clock moved, no sleeping) a fresh code works on the same challenge.
    state.clock.advance(60);
    let (status, body) = verify(&state, &ch, &code(&secret, now(&state))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A recovery code works once, typed in any case.
    let ch = challenge(&state, "alice").await;
    let (status, body) = verify(&state, &ch, &recovery[0].to_lowercase()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ch = challenge(&state, "alice").await;
    let (status, err) = verify(&state, &ch, &recovery[0]).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_code_invalid")),
        "{err}"
    );
    let (_, me) = send(&state, "GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(me["mfa"]["recovery_codes_left"], 9, "{me}");

    // Disabling needs a current code.
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/disable",
        Some(access),
        Some(json!({"code": "12345"})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("mfa_code_invalid")),
        "{err}"
    );
    state.clock.advance(30);
    let (status, body) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/disable",
        Some(access),
        Some(json!({"code": code(&secret, now(&state))})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let tokens = common::login(&state, "alice", "password-123").await;
    assert!(tokens["access_token"].is_string(), "password only again");
    let (_, me) = send(&state, "GET", "/api/v1/me", Some(access), None).await;
    assert_eq!(me["mfa_enabled"], false);

    let audit = actions(&state).await;
    for kind in [
        "mfa_enrolled",
        "mfa_confirmed",
        "mfa_failed",
        "mfa_recovery_code_used",
        "mfa_disabled",
    ] {
        assert!(audit.iter().any(|a| a == kind), "{kind} audited: {audit:?}");
    }
    let metrics = state
        .metrics
        .render(&state.store, &state.cache)
        .expect("metrics");
    for line in [
        "auth_mfa_total{outcome=\"verified_totp\"} 2",
        "auth_mfa_total{outcome=\"verified_recovery_code\"} 1",
        "auth_mfa_total{outcome=\"replayed\"} 2",
        "auth_mfa_total{outcome=\"disabled\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
}

pub(crate) async fn wrong_codes_count_toward_the_lockout(state: AppState) {
    let token = register(&state, "bob").await;
    let (secret, _) = enrol(&state, &token).await;
    let ch = challenge(&state, "bob").await;
    let right = code(&secret, now(&state) + 30);
    // FAILED_LOGIN_LIMIT_PER_HOUR = 4: one wrong password and three wrong codes use it up.
    let (status, _) = password_login(&state, "bob", "wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for i in 0..3 {
        let (status, err) = verify(&state, &ch, &wrong(&right)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong code {i}: {err}");
    }
    let (status, err) = verify(&state, &ch, &right).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("login_locked")),
        "even the right code: {err}"
    );
    let (status, err) = password_login(&state, "bob", "password-123").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("login_locked")),
        "{err}"
    );
    let failed = actions(&state)
        .await
        .into_iter()
        .filter(|a| a == "mfa_failed")
        .count();
    assert_eq!(failed, 3);
}

async fn raw_row(store: &Store) -> (String, String) {
    let sql = "SELECT key_id, secret_ciphertext FROM user_mfa ORDER BY user_id LIMIT 1";
    match store {
        Store::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
        Store::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .expect("a user_mfa row")
}

async fn secrets_are_encrypted_at_rest_and_keys_rotate(state: AppState) {
    use base64::Engine;
    let token = register(&state, "carol").await;
    let (secret, _) = enrol(&state, &token).await;
    let raw_secret = totp_rs::Secret::try_from_base32(&secret)
        .expect("base32")
        .to_vec();
    let (key_id, sealed) = raw_row(&state.store).await;
    let old = MfaKeyring::parse(KEY, None).expect("key");
    assert_eq!(key_id, old.current_id());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw_secret);
    for plain in [secret.as_str(), b64.as_str(), &hex::encode(&raw_secret)] {
        assert!(
            !sealed.contains(plain),
            "the row holds no plain form of the secret: {sealed}"
        );
    }

    // Rotate: the new key encrypts, the old one still opens until the rotation has run.
    let rotated = MfaKeyring::parse(NEW_KEY, Some(KEY)).expect("keys");
    let r = tradeplane_platform::mfa::rotate::rotate(&state.store, &rotated)
        .await
        .expect("rotate");
    assert_eq!((r.resealed, r.failed.len()), (1, 0));
    let (new_id, resealed) = raw_row(&state.store).await;
    assert_eq!(new_id, rotated.current_id());
    assert_ne!(resealed, sealed);
    let (_, me) = send(&state, "GET", "/api/v1/me", Some(&token), None).await;
    let user_id = me["user_id"].as_i64().expect("user id");
    let new_only = MfaKeyring::parse(NEW_KEY, None).expect("key");
    assert_eq!(
        new_only.open(user_id, &new_id, &resealed).expect("opens"),
        raw_secret
    );
    assert!(
        old.open(user_id, &new_id, &resealed).is_err(),
        "the old key alone no longer opens it"
    );
    let again = tradeplane_platform::mfa::rotate::rotate(&state.store, &rotated)
        .await
        .expect("rotate");
    assert_eq!(again.resealed, 0, "nothing left to rotate");
    let lost = MfaKeyring::parse(KEY, None).expect("key");
    let missing = tradeplane_platform::mfa::rotate::rotate(&state.store, &lost)
        .await
        .expect("rotate");
    assert_eq!(
        missing.failed,
        vec![user_id],
        "a secret whose key is gone is reported"
    );
    assert!(actions(&state).await.iter().any(|a| a == "mfa.key_rotated"));
}

/// `REQUIRE_ADMIN_MFA=true`: an admin without MFA may only enrol.
mod required {
    use super::*;

    const ENV: &[(&str, &str)] = &[
        ("MFA_ENCRYPTION_KEY", KEY),
        ("REQUIRE_ADMIN_MFA", "true"),
        ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
        ("ADMIN_USERNAME", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
    ];

    state_on_both_backends!(super::ENV; admins_must_enrol_before_anything_else);

    async fn admins_must_enrol_before_anything_else(state: AppState) {
        tradeplane_platform::server::ensure_admin(&state)
            .await
            .expect("admin");
        let tokens = common::login(&state, ADMIN.0, ADMIN.1).await;
        assert_eq!(tokens["mfa_enrollment_required"], true, "{tokens}");
        let access = tokens["access_token"].as_str().expect("access");
        let (status, err) = send(&state, "GET", "/api/v1/admin/audit", Some(access), None).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("mfa_enrollment_required")),
            "{err}"
        );
        let (status, err) = send(&state, "GET", "/api/v1/portfolio", Some(access), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
        let (status, me) = send(&state, "GET", "/api/v1/me", Some(access), None).await;
        assert_eq!(
            (status, me["mfa"]["enrollment_required"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{me}"
        );

        let (secret, _) = super::enrol(&state, access).await;
        let ch = super::challenge_with(&state, ADMIN.0, ADMIN.1).await;
        let (status, tokens) =
            super::verify(&state, &ch, &super::code(&secret, super::now(&state) + 30)).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        assert!(tokens.get("mfa_enrollment_required").is_none(), "{tokens}");
        let full = tokens["access_token"].as_str().expect("access");
        let (status, body) = send(&state, "GET", "/api/v1/admin/audit", Some(full), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, err) = send(
            &state,
            "POST",
            "/api/v1/auth/mfa/disable",
            Some(full),
            Some(json!({"code": "123456"})),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("admin_mfa_required")),
            "{err}"
        );

        // Traders are not affected.
        let trader = super::register(&state, "dave").await;
        let (status, _) = send(&state, "GET", "/api/v1/portfolio", Some(&trader), None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn without_a_key_mfa_is_unavailable_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let token = register(&state, "erin").await;
    let (status, err) = send(
        &state,
        "POST",
        "/api/v1/auth/mfa/enroll",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("mfa_unavailable")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("MFA_ENCRYPTION_KEY"))
    );
}
