//! The scored, tagged audit trail through the HTTP API: scores and tags recorded by real logins,
//! MFA changes, deposits and orders; every filter of `GET /api/v1/admin/audit`; cursor paging;
//! the NDJSON export; invalid filters and non-admins refused. SQLite always, PostgreSQL in `pg::`.

#[macro_use]
mod common;
mod audit_common;

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tradeplane_platform::state::AppState;

use audit_common::{
    ADMIN, admin_token, append, execute, login_from, page, raw, register, tags, urlencode,
};
use common::send;

/// Every test of this binary uses the same (process-wide) large-order threshold.
const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    ("AUDIT_LARGE_ORDER_NOTIONAL", "1000"),
    ("FORWARDED_FOR_HOPS", "1"),
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000"),
    ("RATE_LIMIT_PER_SECOND", "10000"),
    ("RATE_LIMIT_BURST", "10000"),
];

state_on_both_backends!(
    super::ENV;
    activity_is_scored_and_tagged_when_recorded,
    every_filter_and_cursor_paging,
    ndjson_export_streams_every_match,
    the_trail_stays_append_only_and_bounded,
    bad_filters_are_400_and_non_admins_403,
);

async fn activity_is_scored_and_tagged_when_recorded(state: AppState) {
    let admin = admin_token(&state).await;
    let high_before = tradeplane_platform::audit::runtime::high_risk_count("login.failed");

    // Five failed logins in a row climb 15, 30, 45, 60, 75.
    let (alice, alice_account) = register(&state, "alice").await;
    for _ in 0..5 {
        let (status, _) = login_from(&state, "alice", "wrong-password", "10.0.0.9").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (failed, _) = page(&state, &admin, "kind=login.failed&actor=anonymous").await;
    let scores: Vec<i64> = failed
        .iter()
        .rev()
        .map(|e| e["risk_score"].as_i64().expect("score"))
        .collect();
    assert_eq!(scores, vec![15, 30, 45, 60, 75]);
    assert_eq!(tags(&failed[0]), vec!["auth", "pii", "gdpr"]);
    assert_eq!(failed[0]["client_ip"], "10.0.0.9");
    assert_eq!(failed[0]["details"]["failed_logins"], 5);
    assert!(
        tradeplane_platform::audit::runtime::high_risk_count("login.failed") > high_before,
        "the fifth failure counts as high risk"
    );
    let (status, _, metrics) = raw(&state, "GET", "/metrics", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(metrics).expect("text");
    assert!(
        metrics.contains("audit_high_risk_events_total{action=\"login.failed\"}"),
        "the counter is exported"
    );

    // The first login with an address is not "new" (nothing to compare with); another address is.
    let (bob, bob_account) = register(&state, "bob").await;
    let bob_actor = format!("user:{bob}");
    let mut bob_token = String::new();
    for ip in ["192.0.2.1", "192.0.2.1", "2001:db8::7"] {
        let (status, body) = login_from(&state, "bob", "password-123", ip).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bob_token = body["access_token"].as_str().expect("token").to_owned();
    }
    let (logins, _) = page(&state, &admin, &format!("kind=login&actor={bob_actor}")).await;
    let seen: Vec<(i64, bool, &str)> = logins
        .iter()
        .rev()
        .map(|e| {
            (
                e["risk_score"].as_i64().expect("score"),
                e["details"]["new_ip"].as_bool().expect("new_ip"),
                e["client_ip"].as_str().expect("ip"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (5, false, "192.0.2.1"),
            (5, false, "192.0.2.1"),
            (45, true, "2001:db8::7")
        ]
    );
    // Alice's right password after her five failures: her first login, so no address is new.
    let (status, body) = login_from(&state, "alice", "password-123", "10.0.0.9").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (login, _) = page(&state, &admin, &format!("kind=login&actor=user:{alice}")).await;
    assert_eq!(
        (
            login[0]["risk_score"].as_i64(),
            login[0]["details"]["new_ip"].as_bool()
        ),
        (Some(5), Some(false))
    );
    let alice_token = body["access_token"].as_str().expect("token").to_owned();

    // MFA disabled (through the store's real path) is high risk by itself.
    assert!(
        state
            .store
            .mfa_enroll(bob, "k1", "sealed", None)
            .await
            .expect("enrol")
    );
    assert!(
        state
            .store
            .mfa_disable(bob, None, json!({"factor": "totp"}))
            .await
            .expect("disable")
    );
    let (mfa, _) = page(&state, &admin, "kind=mfa_disabled").await;
    assert_eq!(
        (mfa[0]["risk_score"].as_i64(), tags(&mfa[0])),
        (Some(70), vec!["auth", "pci", "sox"])
    );
    let (enrolled, _) = page(&state, &admin, "kind=mfa_enrolled").await;
    assert_eq!(enrolled[0]["risk_score"], 20);

    // Deposits: a large one (>= AUDIT_LARGE_ORDER_NOTIONAL = 1000) is high risk, a small one not.
    for amount in ["5000", "10"] {
        let (status, body) = send(
            &state,
            "POST",
            &format!("/api/v1/admin/accounts/{alice_account}/deposits"),
            Some(&admin),
            Some(json!({"amount": amount})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (deposits, _) = page(&state, &admin, "kind=account.deposit").await;
    let scores: Vec<i64> = deposits
        .iter()
        .map(|e| e["risk_score"].as_i64().expect("score"))
        .collect();
    assert_eq!(scores, vec![30, 80]);
    assert_eq!(tags(&deposits[0]), vec!["financial", "admin", "sox"]);

    // Orders go through the matcher's batch insert: a large one scores 70, a small one 20.
    for qty in ["10", "1"] {
        let (status, body) = send(
            &state,
            "POST",
            "/api/v1/orders",
            Some(&alice_token),
            Some(json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "150", "qty": qty})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (orders, _) = page(&state, &admin, "kind=order.placed").await;
    let scores: Vec<i64> = orders
        .iter()
        .map(|e| e["risk_score"].as_i64().expect("score"))
        .collect();
    assert_eq!(scores, vec![20, 70]);
    assert_eq!(tags(&orders[0]), vec!["financial", "sox"]);
    // A market order states no price: the value it traded (10 at 151 from Bob) makes it large.
    let (status, body) = send(
        &state,
        "POST",
        &format!("/api/v1/admin/accounts/{bob_account}/deposits"),
        Some(&admin),
        Some(json!({"amount": "10", "symbol": "AAPL"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let orders = [
        (
            &bob_token,
            json!({"symbol": "AAPL", "side": "sell", "type": "limit", "price": "151", "qty": "10"}),
        ),
        (
            &alice_token,
            json!({"symbol": "AAPL", "side": "buy", "type": "market", "qty": "10"}),
        ),
    ];
    for (token, order) in orders {
        let (status, body) = send(&state, "POST", "/api/v1/orders", Some(token), Some(order)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (orders, _) = page(&state, &admin, "kind=order.placed&limit=2").await;
    assert_eq!(
        (
            orders[0]["details"]["notional"].as_str(),
            orders[0]["risk_score"].as_i64()
        ),
        (Some("1510"), Some(70))
    );
    assert_eq!(orders[1]["risk_score"], 70, "Bob's resting sell of 1510");
    // Registrations are tagged as personal data.
    let (registered, _) = page(&state, &admin, "kind=user.registered").await;
    assert!(
        registered
            .iter()
            .all(|e| tags(e) == vec!["auth", "pii", "gdpr"])
    );
}

async fn every_filter_and_cursor_paging(state: AppState) {
    let admin = admin_token(&state).await;
    let start = chrono::Utc::now();
    let a = append(&state, "user:900", "market.halted", json!({})).await;
    let b = append(
        &state,
        "user:900",
        "login.failed",
        json!({"failed_logins": 1}),
    )
    .await;
    let c = append(
        &state,
        "user:901",
        "login.failed",
        json!({"failed_logins": 6}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let middle = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let d = append(
        &state,
        "user:901",
        "order.placed",
        json!({"price": "100", "qty": "10"}),
    )
    .await;
    let e = append(&state, "user:902", "mfa_enrolled", json!({})).await;
    let ids = |events: &[Value]| -> Vec<i64> {
        events
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect()
    };
    let since = format!("from={}", urlencode(&start.to_rfc3339()));

    let (got, _) = page(&state, &admin, &format!("{since}&kind=login.failed")).await;
    assert_eq!(ids(&got), vec![c, b]);
    let (got, _) = page(&state, &admin, &format!("{since}&actor=user:901")).await;
    assert_eq!(ids(&got), vec![d, c]);
    let (got, _) = page(&state, &admin, &format!("{since}&min_risk=70")).await;
    assert_eq!(
        ids(&got),
        vec![d, c, a],
        "halt 80, order of 1000 70, 6th failure 90"
    );
    let (got, _) = page(&state, &admin, &format!("{since}&tag=pci")).await;
    assert_eq!(ids(&got), vec![e]);
    let (got, _) = page(&state, &admin, &format!("{since}&tag=sox")).await;
    assert_eq!(ids(&got), vec![d, a]);
    let (got, _) = page(
        &state,
        &admin,
        &format!("{since}&to={}", urlencode(&middle.to_rfc3339())),
    )
    .await;
    assert_eq!(ids(&got), vec![c, b, a]);
    let (got, _) = page(
        &state,
        &admin,
        &format!("from={}", urlencode(&middle.to_rfc3339())),
    )
    .await;
    assert_eq!(ids(&got), vec![e, d]);
    let (got, _) = page(
        &state,
        &admin,
        &format!("{since}&kind=login.failed&actor=user:901&min_risk=90&tag=auth"),
    )
    .await;
    assert_eq!(ids(&got), vec![c], "filters combine");
    let (got, _) = page(&state, &admin, &format!("{since}&kind=no.such.kind")).await;
    assert!(got.is_empty());
    let (got, _) = page(&state, &admin, &format!("{since}&before={c}")).await;
    assert_eq!(ids(&got), vec![b, a], "before keeps working");

    // Cursor paging over the whole trail: every event once, newest first, no gap.
    let (all, none) = page(&state, &admin, "limit=500").await;
    assert!(none.is_none(), "one page holds everything");
    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (events, next) = page(&state, &admin, &query).await;
        assert!(events.len() <= 2);
        paged.extend(events);
        match next {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(ids(&paged), ids(&all));
    assert_eq!(
        ids(&paged).into_iter().collect::<HashSet<_>>().len(),
        all.len()
    );
    // Filtered paging: the three high-risk events two at a time.
    let (first, next) = page(&state, &admin, &format!("{since}&min_risk=70&limit=2")).await;
    assert_eq!(ids(&first), vec![d, c]);
    let cursor = next.expect("a second page");
    let (second, next) = page(
        &state,
        &admin,
        &format!("{since}&min_risk=70&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!((ids(&second), next), (vec![a], None));
}

async fn ndjson_export_streams_every_match(state: AppState) {
    let admin = admin_token(&state).await;
    // More than one export chunk (500 rows) of one kind, and others around them.
    for i in 0..520 {
        append(
            &state,
            &format!("user:{}", i % 3),
            "order.cancelled",
            json!({"i": i}),
        )
        .await;
    }
    append(&state, "user:1", "market.halted", json!({})).await;
    let auth = format!("Bearer {admin}");
    let lines = |body: &[u8]| -> Vec<Value> {
        let text = std::str::from_utf8(body).expect("utf-8");
        assert!(text.ends_with('\n'), "every line ends with a newline");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    let (status, headers, body) = raw(
        &state,
        "GET",
        "/api/v1/admin/audit?kind=order.cancelled&format=ndjson",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let exported = lines(&body);
    assert_eq!(exported.len(), 520);
    let ids: Vec<i64> = exported
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeat"
    );
    assert!(
        exported
            .iter()
            .all(|e| e["action"] == "order.cancelled" && e["risk_score"] == 5)
    );
    // The same export by Accept header, with more filters and a cap.
    let (status, _, body) = raw(
        &state,
        "GET",
        "/api/v1/admin/audit?kind=order.cancelled&actor=user:1&limit=100",
        &[("authorization", &auth), ("accept", "application/x-ndjson")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let capped = lines(&body);
    assert_eq!(capped.len(), 100);
    assert!(capped.iter().all(|e| e["actor"] == "user:1"));
    let (page1, _) = page(
        &state,
        &admin,
        "kind=order.cancelled&actor=user:1&limit=100",
    )
    .await;
    assert_eq!(capped, page1, "the export and the page agree");
    // An export matching nothing is an empty body.
    let (status, _, body) = raw(
        &state,
        "GET",
        "/api/v1/admin/audit?kind=nothing&format=ndjson",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
}

async fn bad_filters_are_400_and_non_admins_403(state: AppState) {
    let admin = admin_token(&state).await;
    let trader = common::register_and_login(&state, "carol").await;
    let (status, body) = send(&state, "GET", "/api/v1/admin/audit", Some(&trader), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?format=ndjson",
        Some(&trader),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(&state, "GET", "/api/v1/admin/audit", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (query, param) in [
        ("tag=banking", "tag"),
        ("tag=AUTH", "tag"),
        ("tag=%25", "tag"),
        ("min_risk=101", "min_risk"),
        ("kind=Login", "kind"),
        ("kind=login%27%20OR%201%3D1", "kind"),
        ("actor=a%00b", "actor"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=MQ&before=5", "cursor"),
    ] {
        let (status, body) = send(
            &state,
            "GET",
            &format!("/api/v1/admin/audit?{query}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "invalid_filter", "{query}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .starts_with(param),
            "{query}: {body}"
        );
    }
    let (status, body) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?min_risk=abc",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, body) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?unknown=1",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(
        &state,
        "GET",
        "/api/v1/admin/audit?limit=0&format=ndjson",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_page_size"))
    );
}

async fn the_trail_stays_append_only_and_bounded(state: AppState) {
    append(&state, "user:1", "market.halted", json!({})).await;
    // The append-only trigger covers the new columns: no score or tag is rewritten afterwards.
    assert!(!execute(&state, "UPDATE audit_events SET risk_score = 0").await);
    assert!(!execute(&state, "UPDATE audit_events SET tags = ','").await);
    assert!(!execute(&state, "DELETE FROM audit_events").await);
    let insert = |score: &str, tags: &str, ip: &str| {
        format!(
            "INSERT INTO audit_events (occurred_at, actor, action, details, risk_score, tags, client_ip) \
             VALUES ('2026-01-01T00:00:00Z', 'x', 'x', '{{}}', {score}, '{tags}', '{ip}')"
        )
    };
    assert!(
        execute(&state, &insert("100", ",auth,", "10.0.0.1")).await,
        "in bounds"
    );
    assert!(
        !execute(&state, &insert("101", ",auth,", "10.0.0.1")).await,
        "score above 100"
    );
    assert!(
        !execute(&state, &insert("-1", ",auth,", "10.0.0.1")).await,
        "negative score"
    );
    assert!(
        !execute(&state, &insert("5", &",a".repeat(33), "10.0.0.1")).await,
        "tags over 64"
    );
    assert!(
        !execute(&state, &insert("5", ",auth,", &"1".repeat(46))).await,
        "address over 45"
    );
    // Rows without a score (recorded before 0060) read as unscored and untagged.
    assert!(
        execute(
            &state,
            "INSERT INTO audit_events (occurred_at, actor, action, details) VALUES ('2026-01-01T00:00:00Z', 'old', 'login', '{}')"
        )
        .await
    );
    let admin = admin_token(&state).await;
    let (old, _) = page(&state, &admin, "actor=old").await;
    assert_eq!(
        (old[0]["risk_score"].clone(), old[0]["tags"].clone()),
        (Value::Null, json!([]))
    );
    let (scored, _) = page(&state, &admin, "actor=old&min_risk=0").await;
    assert!(scored.is_empty(), "min_risk never returns unscored rows");
}
